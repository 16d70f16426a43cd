#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds docs/example.c against the installed
# tree only, three ways, running each: pkg-config (the shared library), pkg-config --static
# (libspinenet.a with the dependencies spinenet.pc lists), and a CMake project using
# find_package(spinenet) and spinenet::spinenet.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR [CC]; $SN_INSTALL_CFLAGS (the sanitizer builds'
# -fsanitize=...) is added to every compile and link.
set -euo pipefail
build=$1
src=$2
cc=${3:-cc}
read -r -a extra <<<"${SN_INSTALL_CFLAGS:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(dirname "$(find "$prefix" -name spinenet.pc)")
cfg=$(dirname "$(find "$prefix" -name spinenetConfig.cmake)")
for f in "$prefix/include/spinenet.h" "$pc/spinenet.pc" "$cfg/spinenetTargets.cmake"; do
  [ -f "$f" ] || { echo "install: $f is missing" >&2; exit 1; }
done
libdir=$(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir spinenet)
# The example's output ends with the last of its 15 lines.
check() {
  local out
  out=$("$@")
  grep -q '^box.7 *1 x 3 x 3 x 36$' <<<"$out" || { echo "install: $* printed:" >&2; echo "$out" >&2; exit 1; }
}

export PKG_CONFIG_PATH=$pc
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
"$cc" -O2 ${extra[@]+"${extra[@]}"} "$src/docs/example.c" $(pkg-config --cflags --libs spinenet) -Wl,-rpath,"$libdir" \
  -o "$tmp/example_pc"
check "$tmp/example_pc"
echo "install: pkg-config (shared) ok"
# shellcheck disable=SC2046
"$cc" -O2 ${extra[@]+"${extra[@]}"} "$src/docs/example.c" $(pkg-config --cflags spinenet) \
  $(pkg-config --static --libs spinenet | sed 's/-lspinenet\b/-l:libspinenet.a/') \
  -o "$tmp/example_static"
check "$tmp/example_static"
echo "install: pkg-config --static ok"

mkdir -p "$tmp/proj"
cp "$src/docs/example.c" "$tmp/proj/"
cat >"$tmp/proj/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(uses_spinenet C)
find_package(spinenet 0.1 REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE spinenet::spinenet)
CMAKE
unset PKG_CONFIG_PATH
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="${SN_INSTALL_CFLAGS:-}" >/dev/null
cmake --build "$tmp/proj/build" >/dev/null
check "$tmp/proj/build/example"
echo "install: find_package(spinenet) ok"
