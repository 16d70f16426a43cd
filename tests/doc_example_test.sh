#!/usr/bin/env bash
# The ```c block after the line "<!-- docs/NAME.c -->" in docs/guide.md must be docs/NAME.c, byte
# for byte, for each example program (docs/example.c, docs/detect_example.c).
# Usage: doc_example_test.sh SOURCE_DIR
set -euo pipefail
src=${1:-$(dirname "$0")/..}
guide=$src/docs/guide.md
block=$(mktemp)
trap 'rm -f "$block"' EXIT
for name in example.c detect_example.c; do
  example=$src/docs/$name
  # After the marker: the next line must open a ```c block; copy lines up to the closing ```.
  awk -v marker="<!-- docs/$name -->" '
    state == 0 && $0 == marker { state = 1; next }
    state == 1 { if ($0 != "```c") { print "line after " marker " is not ```c" > "/dev/stderr"; exit 2 }
                 state = 2; next }
    state == 2 && $0 == "```" { state = 3; exit }
    state == 2 { print }
    END { if (state != 3) { print "no complete ```c block after " marker > "/dev/stderr"; exit 2 } }
  ' "$guide" >"$block"
  if ! diff -u "$example" "$block"; then
    echo "docs/guide.md: the code block differs from docs/$name (diff above: - file, + guide)" >&2
    exit 1
  fi
  echo "docs/guide.md shows docs/$name exactly"
done
