#!/usr/bin/env bash
# Makes sure the system tools that a few checks of the suite need are there.
# Building or running wasmbed never needs them.
#
#   clang, wasm-ld (lld), wat2wasm (wabt)   examples/apps TestReproducible rebuilds
#                                           the sample WebAssembly modules from their
#                                           C and WAT sources and compares them with
#                                           the committed ones
#   promtool (Debian's prometheus package)  config/prometheus TestAlertRules checks
#                                           and unit-tests the alert rules
#   chromium (Debian's chromium package)    internal/gateway/dashboard/e2e TestDashboard
#                                           drives the dashboard in a headless browser
#
# Missing tools are installed with apt-get (Debian, Ubuntu) when this runs as
# root or with passwordless sudo: clang-14 lld-14 wabt where the distribution
# has clang-14 (the versions the committed modules are reproducible with, see
# hack/build-apps.sh), else clang lld wabt; prometheus; and chromium. Otherwise —
# another user, no apt-get, or WASMBED_NO_INSTALL=1 — it prints what to
# install and exits 0: the suite runs, and each check that needs a missing
# tool skips, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "ensure-tools: $*" >&2; }

wasm_ok() { hack/build-apps.sh --tools >/dev/null 2>"$1"; }
prom_ok() { command -v promtool >/dev/null 2>&1; }
chromium_ok() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [[ -n "${CHROMIUM:-}" ]]; }

err=$(mktemp)
trap 'rm -f "$err"' EXIT

need_wasm=0 need_prom=0 need_chromium=0
if ! wasm_ok "$err"; then
	need_wasm=1
	missing=$(sed -n 's/^build-apps: missing: //p' "$err")
	say "missing ${missing:-$(cat "$err")}"
fi
if ! prom_ok; then
	need_prom=1
	say "missing promtool"
fi
if ! chromium_ok; then
	need_chromium=1
	say "missing chromium"
fi
[[ $need_wasm == 0 && $need_prom == 0 && $need_chromium == 0 ]] && exit 0

skip_notes() {
	local skipped=0
	if [[ $need_wasm == 1 ]] && ! wasm_ok /dev/null; then
		say "skipping without clang, lld and wabt: examples/apps TestReproducible (rebuilds the sample"
		say "WebAssembly modules and compares them with the committed ones)"
		skipped=1
	fi
	if [[ $need_prom == 1 ]] && ! prom_ok; then
		say "skipping without promtool: config/prometheus TestAlertRules (checks the alert rules)"
		skipped=1
	fi
	if [[ $need_chromium == 1 ]] && ! chromium_ok; then
		say "skipping without chromium: internal/gateway/dashboard/e2e TestDashboard (drives the dashboard"
		say "in a headless browser)"
		skipped=1
	fi
	if [[ $skipped == 1 ]]; then
		say "the rest of the suite runs"
	fi
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
	say "not installing ($why); to install them: sudo apt-get install clang-14 lld-14 wabt prometheus chromium"
	say "(or clang lld wabt where there is no clang-14; other systems: clang and lld 14, wabt, promtool)"
	skip_notes
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
pkgs=()
if [[ $need_wasm == 1 ]]; then
	if apt-cache policy clang-14 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		pkgs+=(clang-14 lld-14 wabt)
	else
		pkgs+=(clang lld wabt)
	fi
fi
[[ $need_prom == 1 ]] && pkgs+=(prometheus)
[[ $need_chromium == 1 ]] && pkgs+=(chromium)
say "installing ${pkgs[*]}"
# The prometheus package would start its server where an init system runs;
# the suite only needs promtool, so keep services from starting.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]] && { [[ -z "$sudo" ]] || $sudo true; }; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && added_policy=1
fi
status=0
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || status=$?
[[ $added_policy == 1 ]] && $sudo rm -f "$policy"
if [[ $status != 0 ]]; then
	say "apt-get install ${pkgs[*]} failed"
fi
skip_notes
