#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test in the Release build
# and again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
echo "== release build"
bash scripts/build.sh release
ctest --test-dir build --output-on-failure -j 1
echo "== sanitizer build (ASan + UBSan)"
bash scripts/build.sh asan
SN_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j 1
