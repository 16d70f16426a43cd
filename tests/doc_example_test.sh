#!/usr/bin/env bash
# The ```c block after the line "<!-- docs/example.c -->" in docs/guide.md must be docs/example.c,
# byte for byte. Usage: doc_example_test.sh SOURCE_DIR
set -euo pipefail
src=${1:-$(dirname "$0")/..}
guide=$src/docs/guide.md
example=$src/docs/example.c
block=$(mktemp)
trap 'rm -f "$block"' EXIT
# After the marker: the next line must open a ```c block; copy lines up to the closing ```.
awk '
  state == 0 && $0 == "<!-- docs/example.c -->" { state = 1; next }
  state == 1 { if ($0 != "```c") { print "line after the marker is not ```c" > "/dev/stderr"; exit 2 }
               state = 2; next }
  state == 2 && $0 == "```" { state = 3; exit }
  state == 2 { print }
  END { if (state != 3) { print "no complete ```c block after <!-- docs/example.c -->" > "/dev/stderr"; exit 2 } }
' "$guide" >"$block"
if ! diff -u "$example" "$block"; then
  echo "docs/guide.md: the code block differs from docs/example.c (diff above: - file, + guide)" >&2
  exit 1
fi
echo "docs/guide.md shows docs/example.c exactly"
