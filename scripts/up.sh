#!/usr/bin/env bash
# Quick start: install what is needed, build ferry and the example
# functions, and start an all-in-one node on :8080 (invocations) and :8002
# (uploads) with its data in ./data. Extra arguments go to `ferry up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash guests/build.sh guests/out
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-14/lib}
cargo build --release -p ferry-runtime --features rdma
exec ./target/release/ferry up --data ./data --functions ./guests/out/examples "$@"
