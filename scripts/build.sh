#!/usr/bin/env bash
# Configure and build into build/ (Release) or, with "asan", build-asan/ (ASan + UBSan), with
# warnings as errors (SN_WERROR, off by default for a user's own cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc 2>/dev/null || echo 2)
if [ "$kind" = asan ]; then
  cmake -S . -B build-asan -G Ninja -DSN_SANITIZE=ON -DSN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C build-asan -j "$jobs"
else
  cmake -S . -B build -G Ninja -DSN_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C build -j "$jobs"
fi
