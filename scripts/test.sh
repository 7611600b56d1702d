#!/usr/bin/env bash
# The whole test suite: installs what is needed, builds the guests from
# source, builds everything with warnings as errors, and runs every test
# (unit, end-to-end against real nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
bash guests/build.sh guests/out
cargo build --release --workspace --all-targets
cargo test --release --workspace --no-fail-fast
echo "test.sh: done in $(( $(date +%s) - start )) s"
