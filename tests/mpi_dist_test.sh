#!/usr/bin/env bash
# The job's processes over MPI: tests/mpi_dist.c under mpirun -np 2 (collectives, grad_sync
# against the blocking sum; with --bench also the all-reduce times of Mobile-49XS and 49S
# RetinaNet gradients and the fraction of it hidden behind the backward).
# Usage: mpi_dist_test.sh PROGRAM|none MPIRUN [--bench]. Exit 77 (SKIP) when built without MPI.
set -euo pipefail
prog=${1:-none}
mpirun=${2:-mpirun}
shift 2 || true
if [ "$prog" = none ] || [ -z "$prog" ]; then
  echo "SKIP: spinenet was built without MPI (install libopenmpi-dev, or SN_MPI is OFF)"
  exit 77
fi
command -v "$mpirun" >/dev/null || { echo "mpi_dist: $mpirun not found (openmpi-bin)" >&2; exit 1; }
# Under ASan: Open MPI's own allocations kept until exit are suppressed (tests/lsan_mpi.supp);
# the slow unwinder sees through Open MPI's frames, which have no frame pointers. No effect on
# a build without ASan.
here=$(cd "$(dirname "$0")" && pwd)
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/lsan_mpi.supp:fast_unwind_on_malloc=0"
args=(-np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LSAN_OPTIONS)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
exec "$mpirun" "${args[@]}" "$prog" "$@"
