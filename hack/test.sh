#!/usr/bin/env bash
# Runs the whole test suite: lint, unit and integration tests (the integration
# tests start a real etcd and kube-apiserver in-process), the race detector on
# every package that does not build Kubernetes, a short run of every fuzz
# target, and every benchmark once so that they keep compiling.
#
#   FUZZTIME=200000x hack/test.sh     longer fuzzing (default 20000 inputs per target)
#
# The fuzz budget is a count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure when
# the time runs out (golang/go#75804, fixed in Go 1.27).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20000x}
start=$(date +%s)

hack/ensure-tools.sh

echo "== lint"
hack/lint.sh

# Packages that link kube-apiserver or client-go are run without -race: the
# race build of Kubernetes alone would take most of CI's budget. Everything
# else (protocol, PKI, firmware, simulator) runs under the race detector.
heavy=()
light=()
while read -r pkg deps; do
	if [[ " $deps " == *" k8s.io/"* || " $deps " == *" sigs.k8s.io/"* || " $deps " == *"/internal/controlplane"* ]]; then
		heavy+=("$pkg")
	else
		light+=("$pkg")
	fi
done < <(go list -f '{{.ImportPath}} {{join .Deps " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./...)

echo "== go test -race (${#light[@]} packages)"
go test -race -timeout 20m "${light[@]}"

echo "== go test (${#heavy[@]} packages with Kubernetes)"
go test -timeout 20m "${heavy[@]}"

echo "== fuzz targets, ${fuzztime} each"
while IFS=: read -r file fn; do
	dir=$(dirname "$file")
	echo "-- $fn ($dir)"
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" "./$dir"
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' internal api cmd 2>/dev/null | sed -E 's/func //' | sort -u)

echo "== benchmarks, one iteration each"
go test -run '^$' -bench . -benchtime 1x "${light[@]}" "${heavy[@]}" >/dev/null

echo "== suite passed in $(( $(date +%s) - start ))s"
