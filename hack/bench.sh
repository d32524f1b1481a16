#!/usr/bin/env bash
# Runs every benchmark and prints its figures. BENCHTIME and COUNT tune it;
# pass package patterns to narrow it: hack/bench.sh ./internal/protocol/...
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && pkgs=(./...)
go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-1}" "${pkgs[@]}"
