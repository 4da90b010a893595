# funnel-operator — run `make help` for the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

# Versions of the test control plane, built from source by `make envtest-assets`.
K8S_VERSION ?= 1.37.2
# Built binaries live outside the clone so every fresh clone (and CI) reuses them.
ENVTEST_ASSETS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/funnel-operator/k8s/$(K8S_VERSION)
export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS_DIR)
ENVTEST_BINARIES := $(ENVTEST_ASSETS_DIR)/etcd $(ENVTEST_ASSETS_DIR)/kube-apiserver $(ENVTEST_ASSETS_DIR)/kubectl

CONTROLLER_GEN := go tool controller-gen
GO_TEST_FLAGS ?= -race
BIN := bin

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the API types and kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=funnel-operator crd paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate deepcopy functions for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## gofmt every Go file.
	gofmt -w $$(go list -f '{{.Dir}}' ./...)

.PHONY: verify
verify: ## Fail when generated files are stale, code is not gofmt'ed, or go vet complains.
	hack/verify-generated.sh
	@unformatted=$$(gofmt -l $$(go list -f '{{.Dir}}' ./...)); if [ -n "$$unformatted" ]; then \
		echo "Not gofmt'ed (run 'make fmt'):"; echo "$$unformatted"; exit 1; fi
	go vet ./...

##@ Test

.PHONY: envtest-assets
envtest-assets: $(ENVTEST_BINARIES) ## Build etcd, kube-apiserver and kubectl from source (once; cached outside the clone).

$(ENVTEST_BINARIES) &:
	hack/envtest/build.sh $(ENVTEST_ASSETS_DIR)

.PHONY: test
test: verify envtest-assets ## Everything CI runs: verify, unit tests, envtest suites, fuzz seed corpora.
	go test $(GO_TEST_FLAGS) ./...

FUZZTIME ?= 1m
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 1m); crashers land in testdata/fuzz and become regression cases.
	@for pkg in $$(go list ./...); do \
		for target in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
			go test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

.PHONY: test-reliability
test-reliability: envtest-assets ## Every reliability scenario, long ones included (faults, hostile clients, RBAC; ~3 min on 2 cores); writes the results to docs/reliability.md.
	RELIABILITY_LONG=1 RELIABILITY_DOCS=$(CURDIR)/docs/reliability.md go test -count=1 -timeout 40m -v ./test/reliability/...

.PHONY: deploy-check
deploy-check: envtest-assets ## Dry-run config/default against a real API server, and run the operator with exactly config/rbac.
	go test -count=1 ./test/deploy/...

##@ Build and run

.PHONY: build
build: ## Build the manager and the kubectl-funnel plugin into bin/.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/kubectl-funnel ./cmd/kubectl-funnel

.PHONY: run
run: envtest-assets build ## Run the operator: against a local control plane (none reachable, or LOCAL=1), else against $$KUBECONFIG.
	go build -o $(BIN)/devenv ./hack/devenv
	$(BIN)/devenv $(if $(filter 1 true yes,$(LOCAL)),--local) --manager $(BIN)/manager

.PHONY: clean-local
clean-local: ## Delete the local control plane's data (.local/).
	rm -rf .local

##@ Benchmarks

BENCH_FLAGS ?=

.PHONY: bench
bench: envtest-assets ## Raw API server vs. receiver vs. end to end, scaling, memory (~10 min on 2 cores); writes bench/. BENCH_FLAGS=--quick: smoke run.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/bench ./hack/bench
	$(BIN)/bench --manager $(BIN)/manager $(BENCH_FLAGS)
