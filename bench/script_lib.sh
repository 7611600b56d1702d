# shellcheck shell=bash disable=SC2154  # me and root come from the caller
# What the bench scripts share (sourced, not run): failing with the
# script's name, --help from the script's head comment, checking numbers
# and tools, and the workspace build scripts/test.sh does. The caller sets
# `me` (its name) and `root` (the repository) first.

# fail MESSAGE...: prints "ME: MESSAGE" on stderr and exits 1.
fail() {
  echo "$me: $*" >&2
  exit 1
}

# usage: prints the comment block at the top of the running script, then exits.
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
}

# unexpected ARG: refuses an argument the script does not know (exit 2).
unexpected() {
  echo "$me: unexpected argument '$1' (--help)" >&2
  exit 2
}

# number FLAG VALUE: VALUE is a number (digits, optionally a fraction).
number() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "$1 is a number, got '$2'"; }

# whole FLAG VALUE: VALUE is a whole number >= 1.
whole() { [[ $2 =~ ^[1-9][0-9]*$ ]] || fail "$1 is a whole number >= 1, got '$2'"; }

# cpu_number FLAG VALUE: VALUE is a CPU number.
cpu_number() { [[ $2 =~ ^[0-9]+$ ]] || fail "$1 is a CPU number, got '$2'"; }

# tools NAME...: every NAME is on the PATH.
tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || fail "$tool not found"
  done
}

# build_workspace: the release build scripts/test.sh does (rdma-sys
# generates its bindings with libclang 14), so that nothing is built twice.
build_workspace() {
  (cd "$root" && LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-14/lib} cargo build --quiet --release \
    --workspace --all-targets --features ferry-runtime/rdma) || fail "cargo build failed"
}
