# kvinject: make help lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
CACHE     ?= $(CURDIR)/.cache
export KVINJECT_CACHE := $(CACHE)
FUZZTIME  ?= 20s
# The version both programs report (--version, GetPluginInfo, logs, User-Agent).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -s -w -X github.com/kvinject/kvinject/internal/version.version=$(VERSION)
# Packages whose tests need nothing but Go (no API server, no root).
UNIT_PKGS := ./pkg/... ./internal/... ./cmd/... ./hack/... ./test/emulator/... ./test/cmd/azure-emulator/... ./test/load/fixture/... ./test/docs/...
# Packages the webhook must never link: the Azure SDK is the node plugin's alone.
AZURE_SDK := github.com/Azure/azure-sdk-for-go|github.com/AzureAD/microsoft-authentication-library-for-go|software.sslmate.com/src/go-pkcs12

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the programs into bin/, stamped with VERSION.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

REGISTRY  ?= ghcr.io/kvinject

.PHONY: images
images: ## Build the multi-arch (linux/amd64, linux/arm64) OCI images into dist/images, named REGISTRY/kvinject-*:VERSION.
	$(GO) run ./hack/release -images-only -out dist/images -version $(VERSION) -registry $(REGISTRY)

.PHONY: release
release: ## Write a release into dist/: images with digests, the chart .tgz pinned to them, deploy/, SBOMs, SHA256SUMS (VERSION=vX.Y.Z required).
	@if [[ ! "$(VERSION)" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then echo "make release needs VERSION=vX.Y.Z (got '$(VERSION)')"; exit 1; fi
	$(GO) run ./hack/release -out dist -version $(VERSION) -registry $(REGISTRY)

.PHONY: test
test: lint test-unit test-integration test-install e2e ## Everything CI runs: lint, unit, integration, install and end-to-end tests.

.PHONY: test-unit
test-unit: ## The fast tests: no API server, no cluster.
	$(GO) test -race -count=1 $(UNIT_PKGS)

.PHONY: tools
tools: ## Build (or reuse) etcd, kube-apiserver, ... into the version-keyed cache.
	test/tools/build.sh

.PHONY: test-integration
test-integration: tools ## Webhook and node plugin against a real kube-apiserver, the Azure emulator, csi-test sanity, the load generator (needs root).
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) test -count=1 -timeout 20m ./test/integration/... ./test/csi/... ./test/load/...

.PHONY: test-install
test-install: tools ## The Helm chart: render/lint/golden tests, and helm install with cert-manager on a local control plane.
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) test -count=1 -timeout 15m ./test/install/...

.PHONY: manifests
manifests: ## Regenerate deploy/webhook and deploy/csi from the Helm chart (never edit them by hand).
	$(GO) run ./hack/render-manifests

.PHONY: verify-manifests
verify-manifests: ## Fail if deploy/ is not what the chart renders (run by lint).
	$(GO) run ./hack/render-manifests -check

.PHONY: devtools
devtools: ## Build (or reuse) the linter and controller-gen from hack/tools into the version-keyed cache.
	hack/tools/build.sh

.PHONY: generate
generate: ## Regenerate the deepcopy functions and the KeyVaultAccessPolicy CRD from the Go types (controller-gen).
	hack/generate.sh

.PHONY: verify-generated
verify-generated: ## Fail if the generated files are not what the Go types generate (run by lint).
	hack/generate.sh -check

.PHONY: lint
lint: verify-manifests verify-generated devtools ## gofmt, go vet, staticcheck (staticcheck.conf), deploy/ and generated code current, the webhook free of the Azure SDK.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	"$$(hack/tools/build.sh)/staticcheck" ./...
	@sdk="$$($(GO) list -deps ./cmd/webhook | grep -E '^($(AZURE_SDK))' || true)"; \
	if [[ -n "$$sdk" ]]; then echo "cmd/webhook links the Azure SDK (keep it in pkg/keyvault, out of pkg/contract):"; echo "$$sdk"; exit 1; fi; \
	echo "cmd/webhook links no Azure SDK package"

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (seeds run in test-unit anyway).
	$(GO) test ./pkg/contract -run '^$$' -fuzz '^FuzzParseAliasList$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/webhook -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/contract -run '^$$' -fuzz '^FuzzObjectsAttribute$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/csi -run '^$$' -fuzz '^FuzzParseParameters$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/csi -run '^$$' -fuzz '^FuzzClassParameters$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/csi -run '^$$' -fuzz '^FuzzWriterNames$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/identity -run '^$$' -fuzz '^FuzzParseServiceAccountTokens$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/identity -run '^$$' -fuzz '^FuzzSelect$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/policy -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/render -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/migrate -run '^$$' -fuzz '^FuzzMigrate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./test/emulator -run '^$$' -fuzz '^FuzzParseSeed$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s

.PHONY: bench
bench: tools ## Webhook handler benchmark and HTTPS load run; the node plugin's benchmarks: publish latency, rotation cost, memory (root).
	$(GO) test ./pkg/webhook -run '^$$' -bench . -benchmem -count 5
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) run ./test/cmd/webhook-load -duration 10s
	$(GO) test ./test/csi -run '^$$' -bench 'BenchmarkPublish50Secrets|BenchmarkWarmPublish50Objects' -benchtime 20x
	$(GO) test ./test/csi -run '^$$' -bench 'BenchmarkRotationRound' -benchtime 10x
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) test ./test/csi -run '^$$' -bench 'BenchmarkResidentMemory100Volumes' -benchtime 1x -count 3

.PHONY: charts
charts: tools ## Run the benchmarks the docs chart and redraw docs/img/*.svg from their output (gonum/plot; needs root).
	mkdir -p $(CACHE)/bench
	$(GO) test ./test/csi -run '^$$' -bench '^BenchmarkPublishByObjects$$' -benchtime 5x | tee $(CACHE)/bench/publish.txt
	$(GO) test ./test/csi -run '^$$' -bench '^BenchmarkRotationRound$$/http1' -benchtime 10x | tee $(CACHE)/bench/rotation.txt
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh)" $(GO) run ./test/cmd/webhook-load -duration 5s | tee $(CACHE)/bench/load.txt
	$(GO) run ./hack/benchcharts -publish $(CACHE)/bench/publish.txt -rotation $(CACHE)/bench/rotation.txt -load $(CACHE)/bench/load.txt -out docs/img

.PHONY: soak
soak: e2e-deps tools ## The node plugin's soak (5 min, faults, 100 volumes; KVINJECT_SOAK_DURATION) and 50 replicas on the real node (needs root; not part of make test).
	$(GO) test -count=1 -timeout 30m ./test/csi -run '^$$' -bench '^BenchmarkSoak$$' -benchtime 1x -v
	KVINJECT_E2E=1 $(GO) test -count=1 -timeout 30m ./test/e2e -run '^$$' -bench '^BenchmarkNode50Replicas$$' -benchtime 1x -v || { $(E2E) down --dir $(E2E_DIR); exit 1; }

.PHONY: demo
demo: e2e-demo ## Bring up the local cluster, emulator and both programs, and show the tutorial pod's secrets.

.PHONY: clean
clean: ## Remove build outputs (not the tools cache).
	rm -rf $(BIN)

# --- e2e ---
# A real single-node cluster (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, containerd, runc, CNI bridge) with the Azure emulator and
# both programs, under $(CACHE)/e2e. Needs root. See test/e2e/README.md.
E2E_DIR   := $(CACHE)/e2e
E2E       := $(GO) run ./test/cmd/e2e

.PHONY: e2e-deps
e2e-deps: ## Install the Debian packages the e2e cluster needs (only those missing).
	test/e2e/install-deps.sh

.PHONY: e2e-up
e2e-up: e2e-deps tools ## Bring up the e2e cluster with the emulator, webhook and node plugin; leave it running.
	$(E2E) up --dir $(E2E_DIR)

.PHONY: e2e-down
e2e-down: ## Tear the e2e cluster down and leave the host as found.
	$(E2E) down --dir $(E2E_DIR)

.PHONY: e2e
e2e: e2e-deps tools ## End-to-end tests on a real node (brings a cluster up and tears it down).
	@# The tests tear the cluster down themselves; the fallback covers a killed run.
	KVINJECT_E2E=1 $(GO) test -count=1 -timeout 20m -v ./test/e2e/ || { $(E2E) down --dir $(E2E_DIR); exit 1; }

.PHONY: e2e-demo
e2e-demo: e2e-deps tools ## The demo: stack up, the tutorial's annotated pod, its secrets; leaves it running.
	$(E2E) demo --dir $(E2E_DIR)

.PHONY: demo-down
demo-down: e2e-down ## Tear down what make demo left running.
