# kvinject: make help lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
CACHE     ?= $(CURDIR)/.cache
export KVINJECT_CACHE := $(CACHE)
FUZZTIME  ?= 20s
# Packages whose tests need nothing but Go (no API server, no root).
UNIT_PKGS := ./pkg/... ./internal/... ./cmd/... ./test/emulator/... ./test/cmd/azure-emulator/...

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the programs into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: test
test: lint test-unit test-integration ## Everything CI runs: lint, unit and integration tests.

.PHONY: test-unit
test-unit: ## The fast tests: no API server, no cluster.
	$(GO) test -race -count=1 $(UNIT_PKGS)

.PHONY: tools
tools: ## Build (or reuse) etcd, kube-apiserver, ... into the version-keyed cache.
	test/tools/build.sh

.PHONY: test-integration
test-integration: tools ## Tests against a real kube-apiserver and etcd (envtest).
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) test -count=1 -timeout 20m ./test/integration/...

.PHONY: lint
lint: ## gofmt, go vet.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (seeds run in test-unit anyway).
	$(GO) test ./pkg/mutate -run '^$$' -fuzz '^FuzzParseSecrets$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/webhook -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: ## Handler benchmark and HTTPS load run of the webhook.
	$(GO) test ./pkg/webhook -run '^$$' -bench . -benchmem -count 5
	$(GO) run ./test/cmd/webhook-load -duration 10s

.PHONY: demo
demo: ## Bring up the local cluster, emulator and both programs, and show the tutorial pod's secrets.
	@echo "make demo: not yet; it lands with the end-to-end issue. Run 'make test' meanwhile."

.PHONY: clean
clean: ## Remove build outputs (not the tools cache).
	rm -rf $(BIN)
