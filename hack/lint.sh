#!/usr/bin/env bash
# Static checks: formatting, go vet, tidy modules, and a clean tree after
# regenerating everything generated.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
go mod tidy -diff
make --no-print-directory generate >/dev/null
if ! git diff --quiet -- api config examples; then
	echo "generated files are stale; commit the result of make generate:"
	git diff --stat -- api config examples
	exit 1
fi
