#!/usr/bin/env bash
# Installs the system tools the test suite needs and a fresh Debian machine
# lacks: clang and lld (C to wasm32) and wabt (wat2wasm), used to rebuild the
# sample WebAssembly applications and check them against the committed ones.
set -euo pipefail

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v wasm-ld >/dev/null 2>&1 || command -v wasm-ld-14 >/dev/null 2>&1 || missing+=(lld)
command -v wat2wasm >/dev/null 2>&1 || missing+=(wabt)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	else
		echo "ensure-tools: need ${missing[*]}: install them with apt-get (as root)" >&2
		exit 1
	fi
fi
echo "ensure-tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
