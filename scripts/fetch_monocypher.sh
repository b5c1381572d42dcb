#!/usr/bin/env bash
# Put Monocypher 4.0.3's C source (monocypher.c, monocypher.h, its licence) into DIR for the firmware's
# Ed25519 check on targets without libsodium (e.g. Cortex-M4F): cmake ... -DMONOCYPHER_DIR=DIR.
# The source comes from the pinned sdist of the pymonocypher package (which bundles it), checked by sha256;
# nothing of it is kept in this repository.
set -euo pipefail
dir="${1:?usage: scripts/fetch_monocypher.sh DIR (e.g. firmware_stubs/build/monocypher)}"
python="${PYTHON:-python3}"
version=4.0.3.4
sha256=5e56e3d3eb770a53e0b9f6274146663c11a11f3d0de5cd48e3be0428d1b07a4a
if [ -f "$dir/monocypher.c" ] && [ -f "$dir/.sdist-$sha256" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-binary :all: --no-deps --no-build-isolation "pymonocypher==$version" -d "$work" \
  || { echo "error: cannot download pymonocypher==$version (the sdist that carries Monocypher's C source); check the \
package index is reachable, or pass -DMONOCYPHER_DIR to a folder holding monocypher.c and monocypher.h" >&2; exit 1; }
archive="$work/pymonocypher-$version.tar.gz"
echo "$sha256  $archive" | sha256sum --check --quiet \
  || { echo "error: $archive does not have the pinned sha256 $sha256; refusing to build with it" >&2; exit 1; }
mkdir -p "$dir"
tar -xzf "$archive" -C "$work"
cp "$work/pymonocypher-$version/monocypher.c" "$work/pymonocypher-$version/monocypher.h" "$dir/"
cp "$work/pymonocypher-$version/LICENSE.txt" "$dir/LICENSE-monocypher.txt"
touch "$dir/.sdist-$sha256"
echo "Monocypher source in $dir (pymonocypher $version, sha256 $sha256)"
