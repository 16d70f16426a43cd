// The ONNX Runtime side of tests/onnx_test.sh: runs MODEL.onnx (onnxruntime-node, CPU) on
// DIR/input.bin and compares every output with spinenet's (DIR/outputs.txt, DIR/<name>.bin, both
// written by tests/onnx_ref.c): the same names in the same order, the same shapes, and
//   max |onnx - spinenet| / max |spinenet| <= TOL   per output (TOL 1e-4).
// Usage: node tests/onnx_check.js NODE_MODULES MODEL.onnx DIR HEIGHT WIDTH LABEL
// Prints one line per output and "LABEL: max relative error E over K outputs"; exits 1 on a
// mismatch.
"use strict";
const fs = require("fs");
const path = require("path");

const TOL = 1e-4;

function floats(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

async function main() {
  const [modules, model, dir, hS, wS, label] = process.argv.slice(2);
  const h = Number(hS), w = Number(wS);
  const ort = require(path.join(modules, "onnxruntime-node"));
  const want = fs.readFileSync(path.join(dir, "outputs.txt"), "utf8").trim().split("\n")
    .map((l) => { const f = l.split(" "); return { name: f[0], dims: f.slice(1).map(Number) }; });
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ["cpu"], intraOpNumThreads: 1, interOpNumThreads: 1,
  });
  if (session.inputNames.length !== 1 || session.inputNames[0] !== "input")
    throw new Error("inputs " + JSON.stringify(session.inputNames) + ", want [\"input\"]");
  const n = want[0].dims[0];
  const x = floats(path.join(dir, "input.bin"));
  if (x.length !== n * 3 * h * w) throw new Error("input.bin has " + x.length + " floats");
  const out = await session.run({ input: new ort.Tensor("float32", x, [n, 3, h, w]) });
  const names = session.outputNames;
  if (names.join(",") !== want.map((o) => o.name).join(","))
    throw new Error("outputs " + names.join(",") + ", want " + want.map((o) => o.name).join(","));
  let worst = 0, failed = 0;
  for (const o of want) {
    const t = out[o.name];
    // spinenet's [n][c][1][1] logits are [n][c] in the file.
    const dims = t.dims.length === 2 ? [t.dims[0], t.dims[1], 1, 1] : Array.from(t.dims);
    if (dims.join("x") !== o.dims.join("x"))
      throw new Error(o.name + ": shape " + t.dims.join("x") + ", want " + o.dims.join("x"));
    const ref = floats(path.join(dir, o.name + ".bin"));
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(t.data[i] - ref[i]);
      if (!(d <= maxDiff)) maxDiff = d; // NaN counts as the worst
      if (Math.abs(ref[i]) > maxRef) maxRef = Math.abs(ref[i]);
    }
    const rel = maxRef > 0 ? maxDiff / maxRef : maxDiff;
    const ok = rel <= TOL;
    if (!ok) failed++;
    if (!(rel <= worst)) worst = rel;
    console.log(`  ${label} ${o.name} ${o.dims.join("x")}: max|a-b| ${maxDiff.toExponential(2)}, ` +
                `max|b| ${maxRef.toExponential(2)}, relative ${rel.toExponential(2)}${ok ? "" : " FAILED"}`);
  }
  console.log(`${label}: max relative error ${worst.toExponential(2)} over ${want.length} outputs ` +
              `(tolerance ${TOL})`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error("onnx_check: " + e.message); process.exit(1); });
