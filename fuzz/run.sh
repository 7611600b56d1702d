#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each and fails on the first crash
# (a panic, a sanitizer report, a timeout or running out of memory).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 20 s each for frame and rewrite, the targets that build without
# ferry-runtime (a few minutes cold). FUZZ_RUNTIME=1 adds invoke and host,
# which link ferry-runtime and so wasmtime: ~35 more CPU-minutes to build
# with the fuzzing flags, too slow for every CI run.
#
# Each target starts from its checked-in seeds (fuzz/corpus/TARGET, only
# read) and writes what it finds to a scratch directory; a crashing input
# is left in fuzz/artifacts/TARGET/. Needs the nightly toolchain and
# cargo-fuzz (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
if [ "${FUZZ_RUNTIME:-0}" = 1 ]; then
  features=()
  targets=(frame rewrite invoke host)
else
  features=(--no-default-features)
  targets=(frame rewrite)
fi
[ $# -gt 0 ] && targets=("$@")
for target in "${targets[@]}"; do
  case $target in invoke | host) features=() ;; esac
done

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: needs cargo-fuzz on the nightly toolchain (bash scripts/setup.sh)" >&2
  exit 1
fi

# -a: debug assertions, so an integer overflow is a crash, not a wrap.
# Built once; the binaries then run directly, so a source edited meanwhile
# cannot start a rebuild inside a target's time.
cargo +nightly fuzz build -a "${features[@]}"
bin="fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0 # as cargo fuzz run sets

# CPU seconds (user + system) of this shell's children between two
# `times` outputs (taken in this shell: a subshell counts only its own).
cpu_between() {
  awk 'FNR == 2 { for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t[FILENAME] += p[1] * 60 + p[2] } }
       END { printf "%.0f", t[ARGV[2]] - t[ARGV[1]] }' "$1" "$2"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target" "fuzz/corpus/$target" "fuzz/artifacts/$target"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "fuzz/dicts/$target.dict" ] && options+=(-dict="fuzz/dicts/$target.dict")
  echo "fuzz/run.sh: $target for $seconds s"
  start=$(date +%s)
  times >"$scratch/times.before"
  if ! "$bin/$target" -artifact_prefix="fuzz/artifacts/$target/" "${options[@]}" \
      "$scratch/$target" "fuzz/corpus/$target" >"$scratch/$target.log" 2>&1; then
    tail -n 60 "$scratch/$target.log" >&2
    echo "fuzz/run.sh: $target crashed; the input is in fuzz/artifacts/$target/;" \
      "replay it with: cargo +nightly fuzz run -a $target fuzz/artifacts/$target/<file>" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo "?")
  times >"$scratch/times.after"
  cpu=$(cpu_between "$scratch/times.before" "$scratch/times.after")
  echo "fuzz/run.sh: $target: $runs inputs in $(( $(date +%s) - start )) s ($cpu CPU-s), no crash"
done
