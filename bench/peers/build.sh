#!/usr/bin/env bash
# Builds the peers of ferry's benchmarks from the sources beside this file
# and prints the path of each artefact, one a line:
#   noop-http: a no-op wasi-http component (wasm32-wasip2) for `wasmtime serve`.
# With the versions pinned by noop-http/Cargo.lock (--locked); cargo reaches
# the registry only for crates not yet in its cache.
#
#   bench/peers/build.sh [TARGET_DIR]   (default: the workspace's target/peers)
# Needs the wasm32-wasip2 Rust target (scripts/setup.sh adds it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${1:-$root/target/peers}
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "peers/build.sh: the wasm32-wasip2 Rust target is not installed (rustup target add wasm32-wasip2)" >&2
  exit 1
fi
CARGO_TARGET_DIR=$target cargo build --quiet --release --locked --target wasm32-wasip2 \
  --manifest-path "$here/noop-http/Cargo.toml"
component=$target/wasm32-wasip2/release/noop_http.wasm
[ -s "$component" ] || { echo "peers/build.sh: cargo built no $component" >&2; exit 1; }
echo "$component"
