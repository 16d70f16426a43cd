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
    peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1), ort_version: version,
  }));
}

main().catch((e) => { console.error("infer_ort: " + (e && e.message ? e.message : e)); process.exit(1); });
