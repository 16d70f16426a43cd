#!/usr/bin/env bash
# The folder map of docs/architecture.md, checked: every #include "..." in src/ names a header
# of its own folder or of a folder it may use. The kernels know no graph, the graph knows no
# SpineNet, data knows no model. Prints each include that breaks the map and fails.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# The folders each folder may include from, besides its own and include/ (the public header).
declare -A may=(
  [core]=""
  [kernels]="core"
  [nn]="kernels core"
  [io]="core"
  [data]="core"
  [viz]="data core"
  [post]="core"
  [eval]="data core"
  [models]="nn kernels io core"
  [dist]="core"
  [train]="models nn kernels io data eval post dist core"
  [api]="train models nn kernels io data eval post dist core"
)

# Which folder owns each header name (headers in a folder's subfolders belong to it).
declare -A owner=([spinenet.h]=include)
while IFS= read -r h; do
  rel=${h#src/}
  owner[$(basename "$h")]=${rel%%/*}
done < <(find src -name '*.h')

bad=0
checked=0
for dir in src/*/; do
  mod=$(basename "$dir")
  if [ -z "${may[$mod]+set}" ]; then
    echo "layering: src/$mod/ is not in the map (add it here and to docs/architecture.md)"
    bad=1
    continue
  fi
  # Files below src/<mod>/ (the per-ISA folders of the kernels included).
  while IFS= read -r -d '' f; do
    while IFS= read -r inc; do
      name=$(basename "$inc")
      checked=$((checked + 1))
      # A path relative to the including file (a kernel build including its portable sources)
      # stays inside the folder.
      if [ -e "$(dirname "$f")/$inc" ]; then
        case $(cd "$(dirname "$f")" && realpath -m --relative-to="$root/src" "$inc") in
          "$mod"/*) continue ;;
        esac
      fi
      to=${owner[$name]:-}
      if [ -z "$to" ]; then
        echo "layering: $f includes \"$inc\", a header no folder of src/ owns"
        bad=1
      elif [ "$to" != "$mod" ] && [ "$to" != include ] && ! [[ " ${may[$mod]} " == *" $to "* ]]; then
        echo "layering: $f includes \"$inc\" from src/$to/: src/$mod/ may use only: ${may[$mod]:-nothing}"
        bad=1
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done < <(find "$dir" -name '*.[ch]' -print0)
done
echo "layering: $checked includes checked"
exit $bad
