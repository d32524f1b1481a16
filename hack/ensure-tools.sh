#!/usr/bin/env bash
# Makes sure the system tools that one check of the suite needs are there:
# clang, wasm-ld (lld) and wat2wasm (wabt), with which examples/apps'
# TestReproducible rebuilds the sample WebAssembly modules from their C and
# WAT sources and compares them with the committed ones. Nothing else in the
# suite needs them, and building or running wasmbed never does.
#
# Missing tools are installed with apt-get (Debian, Ubuntu) when this runs as
# root or with passwordless sudo: clang-14 lld-14 wabt where the distribution
# has clang-14 (the versions the committed modules are reproducible with, see
# hack/build-apps.sh), else clang lld wabt. Otherwise — another user, no
# apt-get, or WASMBED_NO_INSTALL=1 — it prints what to install and exits 0:
# the suite runs, and TestReproducible skips, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "ensure-tools: $*" >&2; }

tools_ok() { hack/build-apps.sh --tools >/dev/null 2>"$1"; }

err=$(mktemp)
trap 'rm -f "$err"' EXIT
tools_ok "$err" && exit 0
missing=$(sed -n 's/^build-apps: missing: //p' "$err")
say "missing ${missing:-$(cat "$err")}"

skip_note() {
	say "skipping without them: examples/apps TestReproducible (rebuilds the sample WebAssembly"
	say "modules and compares them with the committed ones); the rest of the suite runs"
}

sudo=""
why=""
if [[ "${WASMBED_NO_INSTALL:-}" == 1 ]]; then
	why="WASMBED_NO_INSTALL=1"
elif ! command -v apt-get >/dev/null 2>&1; then
	why="no apt-get on this system"
elif [[ "$(id -u)" -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		why="not root, and no passwordless sudo"
	fi
fi
if [[ -n "$why" ]]; then
	say "not installing ($why); to install them: sudo apt-get install clang-14 lld-14 wabt"
	say "(or clang lld wabt where there is no clang-14; other systems: clang and lld 14, wabt)"
	skip_note
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
pkgs=(clang lld wabt)
if apt-cache policy clang-14 2>/dev/null | grep -q 'Candidate: [0-9]'; then
	pkgs=(clang-14 lld-14 wabt)
fi
say "installing ${pkgs[*]}"
if ! $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
	say "apt-get install ${pkgs[*]} failed"
	skip_note
	exit 0
fi
if ! tools_ok "$err"; then
	say "still $(cat "$err")"
	skip_note
fi
