#!/usr/bin/env bash
# Install what the build needs (Debian 12, as root) and skip what is already there.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists jansson 2>/dev/null || need+=(libjansson-dev)
pkg-config --exists libjpeg 2>/dev/null || need+=(libjpeg62-turbo-dev)
pkg-config --exists spng 2>/dev/null || need+=(libspng-dev)
pkg-config --exists zlib 2>/dev/null || need+=(zlib1g-dev)
pkg-config --exists snappy 2>/dev/null || need+=(libsnappy-dev)
# Training over processes (src/dist): Open MPI's headers and library, and mpirun.
command -v mpicc >/dev/null || need+=(libopenmpi-dev)
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || need+=(dataset-fashion-mnist)
# The ONNX export's test (tests/onnx_test.sh): the onnx checker, and node + npm for onnxruntime-node.
/usr/bin/python3 -c 'import onnx' 2>/dev/null || need+=(python3-onnx)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to apt-get install ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
