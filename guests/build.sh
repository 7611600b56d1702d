#!/usr/bin/env bash
# Builds every guest function into OUTDIR (default guests/out), as trees of
# <user>/<name>.wasm that `ferry up --functions DIR` loads:
#   OUTDIR/examples/ndp/<name>.wasm  the NDP examples, C (c/ndp) and Rust (<name>_rs)
#   OUTDIR/tests/test/<name>.wasm    the ABI test functions (c/test)
#   OUTDIR/invalid/<name>.wasm       modules an upload must refuse (c/invalid)
# C goes through clang + wasi-libc, Rust through cargo for wasm32-wasip1
# with its own target dir (guests/target). Plain toolchain output: no table
# or globals are exported, the runtime reaches them itself.
#
# Environment: CC_WASM (default clang-16), WASI_SYSROOT (default: clang's
# own, /usr on Debian).
set -euo pipefail

guests="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$guests/out}" && cd "${1:-$guests/out}" && pwd)"
cc="${CC_WASM:-clang-16}"
cflags=(--target=wasm32-wasi -O2 -Wall -Wextra -Werror -I"$guests/include" -Wl,--strip-debug)
if [ -n "${WASI_SYSROOT:-}" ]; then
  cflags+=(--sysroot="$WASI_SYSROOT")
fi

# C: one source file per function. All of them take a few seconds, so they
# are rebuilt every time.
for pair in ndp:examples/ndp test:tests/test invalid:invalid; do
  dir=${pair%%:*}
  dest=$out/${pair#*:}
  mkdir -p "$dest"
  for src in "$guests/c/$dir"/*.c; do
    name="$(basename "$src" .c)"
    "$cc" "${cflags[@]}" "$src" -o "$dest/$name.wasm"
  done
done

# Test functions also built as a Faasm user builds them: Faasm's link flags
# for executables (faasm/cpp faasmtools/build.py, WASM_EXE_LDFLAGS), which
# export __wasm_call_ctors and so change what the linker puts in _start.
faasm_ldflags=(-Wl,--stack-first -Wl,--export=__heap_base -Wl,--export=__data_end
  -Wl,--export=free -Wl,--export=malloc -Wl,--export=__wasm_call_ctors
  -Wl,--max-memory=4294901760 -Wl,-z,stack-size=4194304)
for name in atexit faasm_env bigmem diskhog files state; do
  "$cc" "${cflags[@]}" "${faasm_ldflags[@]}" "$guests/c/test/$name.c" \
    -o "$out/tests/test/${name}_faasm.wasm"
done

# Rust: the examples crate's binaries, incrementally.
(cd "$guests" && cargo build --quiet --release --locked --target wasm32-wasip1 --target-dir "$guests/target")
for bin in put_rs get_rs wordcount_rs grep_rs; do
  cp "$guests/target/wasm32-wasip1/release/$bin.wasm" "$out/examples/ndp/$bin.wasm"
done

echo "build.sh: guest functions in $out"
