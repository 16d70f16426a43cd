#!/usr/bin/env python3
"""Projected data-parallel training throughput over N machines, from measured inputs and a
stated model of ring all-reduce (docs/performance.md, "Training over MPI").

Model (per step, every machine runs the same local batch b: weak scaling):
  gradient bytes        S = 4 * params
  ring all-reduce       T_ar(N) = 2 (N-1)/N * S / (efficiency * link) + 2 (N-1) * alpha
                        (reduce-scatter then all-gather, each N-1 rounds of S/N bytes; alpha the
                        per-round latency of a TCP message between two hosts)
  sync batch-norm       per BN layer one small all-reduce forward and one backward, latency
                        bound: 2 * n_bn * 2 log2(N) * alpha (recursive doubling for small sizes)
  step                  T(N) = T_compute + T_bn(N) + (1 - hidden) * T_ar(N)
                        (the gradient buckets overlap the backward; `hidden` is the fraction of
                        the all-reduce hidden behind it, as tests/mpi_dist_test.sh measures it)
  images/s              N * b / T(N); scaling efficiency T(1) / T(N).
Usage: bench/scaling_model.py --name M --params P --step-s T --batch b --hidden H
                              --bn-layers K [--alpha-us A] [--link-eff E]
Prints one markdown table (rows: machines; columns: links).
"""
import argparse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--params", type=float, required=True, help="trainable parameters")
    ap.add_argument("--step-s", type=float, required=True, help="measured seconds per step, one machine")
    ap.add_argument("--batch", type=int, required=True, help="images per machine per step")
    ap.add_argument("--hidden", type=float, default=0.0, help="fraction of the all-reduce hidden")
    ap.add_argument("--bn-layers", type=int, required=True)
    ap.add_argument("--alpha-us", type=float, default=50.0, help="per-message latency, microseconds")
    ap.add_argument("--link-eff", type=float, default=0.8, help="achieved fraction of the link rate")
    ap.add_argument("--machines", default="2,8,32,128")
    ap.add_argument("--links", default="10,25,100", help="Gbit/s")
    a = ap.parse_args()
    S = 4.0 * a.params
    alpha = a.alpha_us * 1e-6
    links = [float(x) for x in a.links.split(",")]
    print(f"{a.name}: {a.params / 1e6:.2f} M parameters ({S / 1e6:.0f} MB of gradients), "
          f"{a.step_s:.3f} s per step of {a.batch} images on one machine "
          f"({a.batch / a.step_s:.1f} images/s)")
    print()
    print("| machines | " + " | ".join(f"{l:g} Gbit/s: images/s (efficiency, all-reduce ms)" for l in links) + " |")
    print("|---|" + "---|" * len(links))
    for n in [int(x) for x in a.machines.split(",")]:
        cells = []
        for l in links:
            bw = a.link_eff * l * 1e9 / 8.0
            t_ar = 2.0 * (n - 1) / n * S / bw + 2.0 * (n - 1) * alpha
            lg = max(1, (n - 1).bit_length())
            t_bn = 2.0 * a.bn_layers * 2.0 * lg * alpha
            t = a.step_s + t_bn + (1.0 - a.hidden) * t_ar
            ips = n * a.batch / t
            cells.append(f"{ips:.{1 if ips < 100 else 0}f} ({a.step_s / t * 100:.1f} %, "
                         f"{t_ar * 1e3:.1f})")
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
