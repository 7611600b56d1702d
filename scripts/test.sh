#!/usr/bin/env bash
# The whole test suite: installs what is needed, builds the guests from
# source, builds everything with warnings as errors, and runs every test
# (unit, end-to-end against real nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# A cold run needs ~5 GiB on this disk (target/ and fuzz/target peaked at
# 4.96 GiB); say so up front rather than fail midway with "No space left on
# device".
free_gib=$(df -Pk . | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
echo "test.sh: $free_gib GiB free on $(df -P . | awk 'NR == 2 { print $6 }')"
if [ "$free_gib" -lt 8 ]; then
  echo "test.sh: warning: under 8 GiB free; a cold build may run out of disk" >&2
fi
bash scripts/setup.sh
bash guests/build.sh guests/out
# rdma-sys generates its bindings with libclang 14.
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-14/lib}
# One feature set for everything, so nothing is built twice: the transport
# with its RDMA path compiled in (it falls back to TCP here, with no device).
features=(--features ferry-runtime/rdma)
# Style first, cheapest first: formatting, then no import circle in the
# runtime, then clippy with warnings as errors.
cargo fmt --all -- --check
python3 scripts/check-imports.py runtime/src
cargo build --release --workspace --all-targets "${features[@]}"
cargo clippy --release --workspace --all-targets "${features[@]}" -- -D warnings
cargo test --release --workspace --no-fail-fast "${features[@]}"
bash deploy/check.sh
bash bench/smoke.sh   # ferry-bench run/plot against a node, netns.sh up/down with an offload through it
bash fuzz/run.sh 20
echo "test.sh: done in $(( $(date +%s) - start )) s; target/ holds $(du -sh target | cut -f1)"
