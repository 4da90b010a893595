# funnel-operator — run `make help` for the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

# The test control plane, built from source by `make envtest-assets`, in two versions: the
# newest and the oldest supported Kubernetes (README: Supported Kubernetes versions). Each
# version is the k8s.io/kubernetes its module under hack/envtest requires.
k8s_module_version = $(shell awk '{ for (i = 1; i < NF; i++) if ($$i == "k8s.io/kubernetes" && $$(i+1) ~ /^v1\./) v = substr($$(i+1), 2) } END { print v }' hack/envtest/$(1)/go.mod)
K8S_VERSION := $(call k8s_module_version,kubernetes)
K8S_OLDEST_VERSION := $(call k8s_module_version,kubernetes-oldest)
# Built binaries live outside the clone so every fresh clone (and CI) reuses them.
K8S_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/funnel-operator/k8s
ENVTEST_ASSETS_DIR := $(K8S_CACHE_DIR)/$(K8S_VERSION)
ENVTEST_OLDEST_ASSETS_DIR := $(K8S_CACHE_DIR)/$(K8S_OLDEST_VERSION)
# Every test and `make run` use the newest; `make run KUBEBUILDER_ASSETS=<oldest dir>` the oldest.
export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS_DIR)
ENVTEST_BINARIES := $(addprefix $(ENVTEST_ASSETS_DIR)/,etcd kube-apiserver kubectl)
ENVTEST_OLDEST_BINARIES := $(addprefix $(ENVTEST_OLDEST_ASSETS_DIR)/,etcd kube-apiserver kubectl)
# Suites that also run against the oldest supported kube-apiserver in `make test`: they
# install the CRDs and config/'s manifests (schemas, CEL rules, selectable fields, admission
# policies), drive the controllers and try the tenancy attacks against RBAC and the
# policies, which is where a newer-only feature would show.
OLDEST_K8S_TEST_PACKAGES ?= ./api/v1alpha1/... ./controllers/ ./test/deploy/... ./test/tenancy/...

# Tools built from the Go module proxy by `make tools` (hack/tools/*: one Go module each),
# cached outside the clone like the control plane; the version is in the file name.
TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/funnel-operator/tools
PROMETHEUS_VERSION := $(shell awk '$$1 == "github.com/prometheus/prometheus" {print $$2}' hack/tools/prometheus/go.mod)
PROMTOOL := $(TOOLS_DIR)/promtool-$(PROMETHEUS_VERSION)
PROMETHEUS := $(TOOLS_DIR)/prometheus-$(PROMETHEUS_VERSION)
HELM_VERSION := $(shell awk '$$1 == "helm.sh/helm/v4" {print $$2}' hack/tools/helm/go.mod)
# test/chart finds helm here too (or in $$HELM).
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)
# promq reads the PromQL of config/prometheus and config/grafana (hack/tools/prometheus/promq).
PROMQ := GOWORK=off go -C hack/tools/prometheus run ./promq

CONTROLLER_GEN := go tool controller-gen
# hack/bench is a Go module of its own, so that its plotting libraries stay out of the
# operator's go.mod; `./...` does not reach it.
BENCH_MODULE := hack/bench
GO_TEST_FLAGS ?= -race
BIN := bin

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(ENVTEST_BINARIES) ## Generate CRDs and RBAC from the API types and kubebuilder markers, and copy what config/ builds into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=funnel-operator crd paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go test ./test/chart -count=1 -run TestChartFilesAreCurrent -update >/dev/null

.PHONY: generate
generate: ## Generate deepcopy functions for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## gofmt every Go file.
	gofmt -w $$(go list -f '{{.Dir}}' ./...) $(BENCH_MODULE)

.PHONY: verify
verify: ## Fail when generated files are stale, code is not gofmt'ed, or go vet complains.
	hack/verify-generated.sh
	@unformatted=$$(gofmt -l $$(go list -f '{{.Dir}}' ./...) $(BENCH_MODULE)); if [ -n "$$unformatted" ]; then \
		echo "Not gofmt'ed (run 'make fmt'):"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@unformatted=$$(gofmt -l hack/tools); if [ -n "$$unformatted" ]; then \
		echo "Not gofmt'ed (run 'gofmt -w hack/tools'):"; echo "$$unformatted"; exit 1; fi
	GOWORK=off go -C hack/tools/prometheus vet ./...
	GOWORK=off go -C $(BENCH_MODULE) vet ./...

##@ Test

.PHONY: envtest-assets
envtest-assets: $(ENVTEST_BINARIES) $(ENVTEST_OLDEST_BINARIES) ## Build etcd, kubectl and the newest and oldest supported kube-apiserver from source (once; cached outside the clone).

$(ENVTEST_BINARIES) &:
	hack/envtest/build.sh newest $(ENVTEST_ASSETS_DIR)

# etcd and kubectl there are links to the newest ones (a dangling link is rebuilt).
$(ENVTEST_OLDEST_BINARIES) &: | $(ENVTEST_BINARIES)
	hack/envtest/build.sh oldest $(ENVTEST_OLDEST_ASSETS_DIR) $(ENVTEST_ASSETS_DIR)

.PHONY: tools
tools: $(PROMTOOL) $(HELM) ## Build promtool and helm from the Go module proxy (once; cached outside the clone).

$(PROMTOOL):
	hack/tools/build.sh prometheus github.com/prometheus/prometheus/cmd/promtool $@ \
		"-X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION)"

$(HELM):
	hack/tools/build.sh helm helm.sh/helm/v4/cmd/helm $@ "-X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)"

$(PROMETHEUS):
	hack/tools/build.sh prometheus github.com/prometheus/prometheus/cmd/prometheus $@ \
		"-X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION)"

.PHONY: test
test: verify envtest-assets test-rules $(HELM) ## Everything CI runs: verify, unit tests, envtest suites (newest and oldest supported Kubernetes), fuzz seed corpora, alert rule tests, the Helm chart against config/.
	@echo "test: every package against $$($(ENVTEST_ASSETS_DIR)/kube-apiserver --version), the newest supported"
	go test $(GO_TEST_FLAGS) ./...
	GOWORK=off go -C $(BENCH_MODULE) test $(GO_TEST_FLAGS) ./...
	GOWORK=off go -C hack/tools/prometheus test ./...
	@$(MAKE) --no-print-directory test-oldest-k8s

.PHONY: test-oldest-k8s
test-oldest-k8s: envtest-assets ## The suites of OLDEST_K8S_TEST_PACKAGES against the oldest supported kube-apiserver (part of make test).
	@echo "test: $(OLDEST_K8S_TEST_PACKAGES) against $$($(ENVTEST_OLDEST_ASSETS_DIR)/kube-apiserver --version), the oldest supported"
	KUBEBUILDER_ASSETS=$(ENVTEST_OLDEST_ASSETS_DIR) go test $(GO_TEST_FLAGS) $(OLDEST_K8S_TEST_PACKAGES)

.PHONY: test-rules
test-rules: $(PROMTOOL) ## promtool check and test the alert rules (config/prometheus/rules.yaml, rules_test.yaml).
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PROMQ) rules $(CURDIR)/config/prometheus/rules.yaml > $$tmp/rules.yaml; \
	cp config/prometheus/rules_test.yaml $$tmp/; \
	$(PROMTOOL) check rules $$tmp/rules.yaml && $(PROMTOOL) test rules $$tmp/rules_test.yaml

FUZZTIME ?= 1m
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 1m); crashers land in testdata/fuzz and become regression cases.
	@for pkg in $$(go list ./...); do \
		for target in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
			go test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

# The reliability scenarios that depend on what the API server admits (RBAC, admission
# plugins and policies) also run against the oldest supported kube-apiserver.
OLDEST_K8S_RELIABILITY_FOCUS ?= exactly config/rbac

.PHONY: test-reliability
test-reliability: envtest-assets ## Every reliability scenario, long ones included (faults, hostile clients, RBAC; ~3 min on 2 cores), the RBAC one on the oldest supported kube-apiserver too; writes the results to docs/reliability.md.
	RELIABILITY_LONG=1 RELIABILITY_DOCS=$(CURDIR)/docs/reliability.md go test -count=1 -timeout 40m -v ./test/reliability/...
	@echo "test-reliability: scenarios matching '$(OLDEST_K8S_RELIABILITY_FOCUS)' against $$($(ENVTEST_OLDEST_ASSETS_DIR)/kube-apiserver --version), the oldest supported"
	KUBEBUILDER_ASSETS=$(ENVTEST_OLDEST_ASSETS_DIR) RELIABILITY_LONG=1 go test -count=1 -timeout 10m ./test/reliability/... -ginkgo.focus='$(OLDEST_K8S_RELIABILITY_FOCUS)'
	HISTORY_E2E=1 go test -count=1 -timeout 15m -v ./test/history/...

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

.PHONY: dashboard-picture
dashboard-picture: envtest-assets build $(PROMETHEUS) ## Draw docs/dashboard.png: the Grafana dashboard's own queries over ~11 min of make run with traffic, evaluated by a real Prometheus.
	go build -o $(BIN)/devenv ./hack/devenv
	GOWORK=off go -C hack/tools/prometheus run ./dashpic --repo $(CURDIR) --bin $(CURDIR)/$(BIN) \
		--prometheus $(PROMETHEUS) --kubectl $(ENVTEST_ASSETS_DIR)/kubectl --out docs/dashboard.png

.PHONY: clean-local
clean-local: ## Delete the local control plane's data (.local/).
	rm -rf .local

##@ Benchmarks

BENCH_FLAGS ?=

.PHONY: bench-history
bench-history: ## History queries on 1 M archived rows (a throwaway PostgreSQL; ~2 min): p50/p99 and bytes per event, beside a get by name.
	ARCHIVE_SCALE=1 go test -count=1 -timeout 20m -v -run TestHistoryQueryScale ./controllers/archive/

.PHONY: bench
bench: envtest-assets ## Receiver and end to end against raw creates in the same run, API costs, etcd bytes, the archive under load, scaling, memory (~15 min on 2 cores); writes bench/. BENCH_FLAGS=--quick: smoke run.
	go build -o $(BIN)/manager ./cmd/manager
	GOWORK=off go -C $(BENCH_MODULE) build -o $(CURDIR)/$(BIN)/bench .
	$(BIN)/bench --manager $(BIN)/manager $(BENCH_FLAGS)
