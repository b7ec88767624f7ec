#!/usr/bin/env bash
# Builds the C hello workflow into a component, from the raw WIT:
# 1. `wit-bindgen c` generates the `workflow` world's bindings from
#    wit/reprise.wit: workflow.h (types, imports, the `run` export),
#    workflow.c (the canonical ABI glue) and workflow_component_type.o (the
#    world, as a custom section the linker turns into the component's type);
# 2. Debian's clang compiles for wasm32-wasi (WASI preview 1) against
#    Debian's wasi-libc, as a reactor (no `main`: the host calls `run`);
# 3. wasm-component-ld, the linker Rust's wasm32-wasip2 target ships, links
#    with wasm-ld (Rust's rust-lld) and turns the core module into a
#    component, adapting preview 1 calls to WASI 0.2 with the reactor
#    adapter it embeds.
# scripts/setup installs wit-bindgen-cli, clang-14, wasi-libc and the
# wasm32-wasip2 target. Usage: examples/hello-c/build.sh [OUTPUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
output=${1:-$root/build/guests/hello-c.wasm}
rust_bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT

# wit-bindgen names each file it writes on stderr: shown only if it fails.
if ! log=$(wit-bindgen c "$root/wit" --world workflow --out-dir "$generated" 2>&1); then
  echo "$log" >&2
  exit 1
fi
clang-14 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
  -I "$generated" \
  -fuse-ld="$rust_bin/wasm-component-ld" \
  -Wl,--wasm-ld-path="$rust_bin/gcc-ld/wasm-ld" -Wl,--wasi-adapter=reactor \
  -o "$output" \
  "$here/hello.c" "$generated/workflow.c" "$generated/workflow_component_type.o"
