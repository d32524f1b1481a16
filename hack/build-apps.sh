#!/usr/bin/env bash
# Rebuilds the sample WebAssembly apps of examples/apps deterministically:
# C sources with clang's wasm32 target and wasm-ld, WAT sources with wabt's
# wat2wasm. Usage: hack/build-apps.sh [output-dir] (default examples/apps).
#
# The checked-in modules were built with clang/lld 14.0.6 and wabt 1.0.32;
# other versions may produce different (equally valid) bytes, which the
# reproducibility test in examples/apps reports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/examples/apps"
out="${1:-$src}"
mkdir -p "$out"

CLANG="${CLANG:-clang}"
WAT2WASM="${WAT2WASM:-wat2wasm}"
for tool in "$CLANG" "$WAT2WASM"; do
	command -v "$tool" >/dev/null || { echo "build-apps: $tool not found (apt-get install clang lld wabt)" >&2; exit 1; }
done

# Small, reproducible C modules: no libc, no start function, 1 KiB shadow
# stack, exactly one 64 KiB page that never grows, __heap_base exported so
# the device can reserve only the used part, names and producers stripped.
cflags=(--target=wasm32 -nostdlib -O2 -ffreestanding -fno-builtin -I"$src/include"
	-Wl,--no-entry -Wl,--export=__heap_base -Wl,-z,stack-size=1024
	-Wl,--initial-memory=65536 -Wl,--max-memory=65536 -Wl,--strip-all)

# abi_section appends the "wasmbed.abi" custom section declaring app ABI 1:
# id 0, payload size 13, name length 11, "wasmbed.abi", version 1.
abi_section() { printf '\x00\x0d\x0bwasmbed.abi\x01' >>"$1"; }

for c in "$src"/c/*.c; do
	name="$(basename "$c" .c)"
	(cd "$src" && "$CLANG" "${cflags[@]}" -o "$out/$name.wasm" "c/$name.c")
	abi_section "$out/$name.wasm"
	chmod 644 "$out/$name.wasm"
done

for w in "$src"/wat/*.wat; do
	name="$(basename "$w" .wat)"
	"$WAT2WASM" "$w" -o "$out/$name.wasm"
done

# Without an output directory, also rebuild the runtime's test modules.
if [[ $# -eq 0 ]]; then
	for w in "$root"/internal/firmware/wasm/testdata/*.wat; do
		"$WAT2WASM" "$w" -o "${w%.wat}.wasm"
	done
fi
