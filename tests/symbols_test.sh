#!/usr/bin/env bash
# The shared library exports exactly the functions include/spinenet.h declares with SN_API: no
# internal symbol leaks (the objects are built with -fvisibility=hidden) and none is missing.
# Usage: symbols_test.sh LIBSPINENET_SO SPINENET_H
set -euo pipefail
lib=$1
header=$2
declared=$(mktemp)
exported=$(mktemp)
trap 'rm -f "$declared" "$exported"' EXIT
# Declarations start with "SN_API"; the name is the identifier just before the first '('.
grep -E '^SN_API ' "$header" | sed -E 's/^([^(]*[^A-Za-z0-9_(])([A-Za-z_][A-Za-z0-9_]*)\(.*/\2/' \
  | sort -u >"$declared"
nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u >"$exported"
if [ "$(wc -l <"$declared")" -lt 30 ]; then
  echo "symbols: found only $(wc -l <"$declared") SN_API declarations in $header" >&2
  exit 1
fi
if ! diff -u "$declared" "$exported"; then
  echo "symbols: $lib exports (+) or lacks (-) functions against $header's SN_API list" >&2
  exit 1
fi
echo "symbols: $(wc -l <"$exported") exported, all declared in spinenet.h"
