#!/usr/bin/env bash
# Rebuilds the sample WebAssembly apps of examples/apps deterministically:
# C sources with clang's wasm32 target and wasm-ld, WAT sources with wabt's
# wat2wasm.
#
#   hack/build-apps.sh [output-dir]   build (default output: examples/apps)
#   hack/build-apps.sh --tools        print the tools it would use and their
#                                     versions; exit 3 naming the missing ones
#
# Tools are found under the names Debian and Ubuntu give them: clang-14 or
# clang (CLANG overrides), wat2wasm (WAT2WASM overrides), and wasm-ld (package
# lld) or wasm-ld-14 (package lld-14), passed to clang with -fuse-ld
# (Debian's clang-14 otherwise runs wasm-ld-14 and only that).
#
# The checked-in modules are reproducible with clang and lld 14.0.6 and wabt
# 1.0.32 (Debian 12's clang-14, lld-14 and wabt packages). Other versions may
# produce different, equally valid bytes: the reproducibility test in
# examples/apps then skips, naming the versions, instead of failing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/examples/apps"

# Known-reproducible versions, read by examples/apps/apps_test.go.
REPRO_CLANG=14.0.6
REPRO_WABT=1.0.32

# join prints its arguments separated by ", ".
join() {
	local IFS=$'\x1f'
	local s="$*"
	echo "${s//$'\x1f'/, }"
}

missing=()
CLANG="${CLANG:-}"
if [[ -z "$CLANG" ]]; then
	for c in clang-14 clang; do
		if command -v "$c" >/dev/null 2>&1; then CLANG="$c"; break; fi
	done
fi
if [[ -z "$CLANG" ]] || ! command -v "$CLANG" >/dev/null 2>&1; then
	missing+=("clang (package clang-14 or clang)")
	CLANG=""
fi
WASMLD=""
if [[ -z "$CLANG" ]] && ! command -v wasm-ld >/dev/null 2>&1 && ! command -v wasm-ld-14 >/dev/null 2>&1; then
	missing+=("wasm-ld (package lld-14 or lld)")
fi
if [[ -n "$CLANG" ]]; then
	# The wasm-ld clang would run (its directory, then PATH); else
	# Debian's versioned name, or the one beside clang's real binary
	# (/usr/lib/llvm-14/bin), which clang itself does not look in.
	WASMLD="$("$CLANG" --target=wasm32 -print-prog-name=wasm-ld 2>/dev/null || true)"
	if [[ "$WASMLD" != /* ]]; then
		WASMLD="$(command -v wasm-ld-14 2>/dev/null || true)"
	fi
	if [[ -z "$WASMLD" ]]; then
		WASMLD="$(dirname "$(readlink -f "$(command -v "$CLANG")")")/wasm-ld"
	fi
	if [[ ! -x "$WASMLD" ]]; then
		missing+=("wasm-ld (package lld-14 or lld)")
		WASMLD=""
	fi
fi
WAT2WASM="${WAT2WASM:-wat2wasm}"
if ! command -v "$WAT2WASM" >/dev/null 2>&1; then
	missing+=("wat2wasm (package wabt)")
fi

if [[ "${1:-}" == "--tools" ]]; then
	echo "repro_clang=$REPRO_CLANG"
	echo "repro_wabt=$REPRO_WABT"
	if [[ ${#missing[@]} -gt 0 ]]; then
		printf 'build-apps: missing: %s\n' "$(join "${missing[@]}")" >&2
		exit 3
	fi
	echo "clang=$(command -v "$CLANG")"
	echo "clang_version=$("$CLANG" --version | sed -n 's/.*clang version \([0-9.]*\).*/\1/p' | head -1)"
	echo "wasm_ld=$WASMLD"
	echo "wat2wasm=$(command -v "$WAT2WASM")"
	echo "wabt_version=$("$WAT2WASM" --version | head -1)"
	exit 0
fi
if [[ ${#missing[@]} -gt 0 ]]; then
	printf 'build-apps: missing: %s; hack/ensure-tools.sh installs them\n' "$(join "${missing[@]}")" >&2
	exit 3
fi

out="${1:-$src}"
mkdir -p "$out"

# Small, reproducible C modules: no libc, no start function, 1 KiB shadow
# stack, exactly one 64 KiB page that never grows, __heap_base exported so
# the device can reserve only the used part, names and producers stripped.
cflags=(--target=wasm32 -fuse-ld="$WASMLD" -nostdlib -O2 -ffreestanding -fno-builtin -I"$src/include"
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
