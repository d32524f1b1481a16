# Wasmbed build and test entry points. `make help` lists them.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
K8S_VERSION := v1.37.2
LDFLAGS := -X github.com/wasmbed/wasmbed/internal/cli.version=$(VERSION) \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION)

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## Regenerate deepcopy code, CRD manifests and the sample WebAssembly modules.
	$(GO) tool controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/... \
		crd output:crd:artifacts:config=config/crd
	@if [ -x hack/build-apps.sh ]; then hack/build-apps.sh; fi

.PHONY: build
build: ## Build the wasmbed binary into bin/.
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/wasmbed ./cmd/wasmbed

.PHONY: up
up: build ## Build and run `wasmbed up`.
	$(BIN)/wasmbed up

.PHONY: test
test: ## Run the whole test suite, as CI does.
	hack/test.sh

.PHONY: bench
bench: ## Run every benchmark once with its figures printed.
	hack/bench.sh

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint and go mod tidy.
	hack/lint.sh
