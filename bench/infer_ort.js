// SpineNet inference (batch 1) in ONNX Runtime (onnxruntime-node, its bundled CPU library).
// Usage: node bench/infer_ort.js MODEL.onnx SIZE THREADS RUNS [WARMUP]
// Prints one JSON line: {"median_ms", "min_ms", "threads", "runs", "peak_rss_mb", "ort_version"}.
// Session: all graph optimisations (constant folding, Conv+BN/activation fusion, layout
// transformation to NCHWc), intra-op threads = THREADS, inter-op 1, sequential execution.
"use strict";
const path = require("path");
const ort = require(path.join(__dirname, "node_modules", "onnxruntime-node"));

async function main() {
  const [file, sizeS, threadsS, runsS, warmupS] = process.argv.slice(2);
  if (!file) {
    console.error("usage: node bench/infer_ort.js MODEL.onnx SIZE THREADS RUNS [WARMUP]");
    process.exit(2);
  }
  const size = parseInt(sizeS || "384", 10);
  const threads = parseInt(threadsS || "1", 10);
  const runs = parseInt(runsS || "10", 10);
  const warmup = parseInt(warmupS || "2", 10);
  const session = await ort.InferenceSession.create(file, {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
  });
  const n = 3 * size * size;
  const data = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) { // small LCG: values in [-1, 1)
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = (s / 2147483648) - 1;
  }
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor("float32", data, [1, 3, size, size]);
  // Same numbers as PyTorch? (MODEL.onnx.ref.json, written by infer_torch.py export)
  let check = "no reference";
  const fs = require("fs");
  if (fs.existsSync(file + ".ref.json")) {
    const ref = JSON.parse(fs.readFileSync(file + ".ref.json", "utf8"));
    const out = await session.run(feeds);
    const names = session.outputNames;
    if (names.length !== ref.length) throw new Error("output count " + names.length + " != " + ref.length);
    let worst = 0;
    names.forEach((nm, k) => {
      const d = out[nm].data;
      for (let i = 0; i < ref[k].head.length; i++) {
        const e = Math.abs(d[i] - ref[k].head[i]) / Math.max(1, ref[k].absmax);
        if (e > worst) worst = e;
      }
    });
    if (worst > 1e-3) throw new Error("outputs differ from PyTorch: " + worst);
    check = "ok (max rel. error " + worst.toExponential(1) + " vs PyTorch)";
  }
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const ts = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ts.sort((a, b) => a - b);
  const mid = ts.length >> 1;
  const median = ts.length % 2 ? ts[mid] : (ts[mid - 1] + ts[mid]) / 2;
  let version = "";
  try {
    version = require(path.join(__dirname, "node_modules", "onnxruntime-node", "package.json")).version;
  } catch (e) { /* unknown */ }
  console.log(JSON.stringify({
    median_ms: +median.toFixed(3), min_ms: +ts[0].toFixed(3), threads, runs, size,
    peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1), ort_version: version, check,
  }));
}

main().catch((e) => { console.error("infer_ort: " + (e && e.message ? e.message : e)); process.exit(1); });
