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
args=(-np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
exec "$mpirun" "${args[@]}" "$prog" "$@"
