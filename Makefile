# mcp-oidc-proxy developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
# The release version: the chart's appVersion, so the binaries' --version, the
# image tags (`make images`) and the chart's default image tags agree.
# Override with VERSION=... for a build of your own (make images VERSION=1.2.3).
APP_VERSION := $(shell sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$$/\1/p' charts/mcp-oidc-proxy/Chart.yaml)
VERSION ?= $(APP_VERSION)
ifeq ($(VERSION),)
$(error VERSION is empty: charts/mcp-oidc-proxy/Chart.yaml has no appVersion; set VERSION=...)
endif
LDFLAGS := -s -w -X github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app.Version=$(VERSION)
# grpcnotrace leaves grpc's golang.org/x/net/trace out of the sidecar (grpc
# comes with the OTLP exporter and the gRPC probe replay). That package
# registers /debug/requests on http.DefaultServeMux and executes
# html/template, which makes the linker keep every exported method in the
# binary: with it the sidecar is 33 MB, without it 24 MB. The Dockerfile,
# hack/images and make bench build with the same tag.
SIDECAR_TAGS := grpcnotrace
# The race detector roughly doubles test time; CI on 2 cores has room for it.
TEST_FLAGS ?= -race -count=1 -timeout 20m
# The cluster suite (test/cluster) brings a one-node cluster up and walks the README on it.
CLUSTER_TEST_FLAGS ?= -race -count=1 -timeout 45m -v
# How long `make fuzz` runs each fuzz target; short by default, e.g. FUZZTIME=60s.
FUZZTIME ?= 10s

.PHONY: help print-version build images test test-cluster unit lint fuzz demo bench bench-go deps clean cluster-up cluster-down

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

print-version: ## print VERSION (default: the chart's appVersion)
	@echo '$(VERSION)'

build: ## build bin/mcp-oidc-proxy and bin/mcp-oidc-injector
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(SIDECAR_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/mcp-oidc-proxy ./cmd/mcp-oidc-proxy
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/mcp-oidc-injector ./cmd/mcp-oidc-injector

images: build ## build the test images as OCI tarballs in bin/images/ (no engine, no registry; tag VERSION)
	$(GO) run ./hack/images -version '$(VERSION)' -out $(BIN)/images

deps: ## install or check what the tests need (redis-server, chromium, containerd, ...; kube-apiserver, etcd, kubelet, ... and helm built into bin/)
	@hack/ensure-test-deps.sh
	@hack/envtest-bins.sh >/dev/null
	@hack/kube-bins.sh >/dev/null
	@hack/helm-bin.sh >/dev/null

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps lint ## every test, with the race detector, then test-cluster (root: installs redis-server, runs a cluster)
	KUBEBUILDER_ASSETS="$$(hack/envtest-bins.sh)" HELM="$$(hack/helm-bin.sh)" $(GO) test $(TEST_FLAGS) $$($(GO) list ./... | grep -v '/test/cluster$$')
	$(MAKE) test-cluster

test-cluster: images ## the end-to-end suite on a one-node cluster (root; brings it up and down unless one runs; MCP_CLUSTER_KEEP=1 keeps it)
	@hack/envtest-bins.sh >/dev/null
	@hack/kube-bins.sh >/dev/null
	KUBECTL="$(BIN)/kubectl" HELM="$$(hack/helm-bin.sh)" VERSION="$(VERSION)" $(GO) test $(CLUSTER_TEST_FLAGS) ./test/cluster/

fuzz: ## run every fuzz target for FUZZTIME (default 10s) one after another (targets: hack/fuzz.sh)
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

demo: ## local OIDC provider + example MCP server + the proxy, no Kubernetes
	$(GO) run ./hack/demo

bench: deps ## DESIGN.md's performance targets in one run (hack/bench), written to bench/results.md; BENCH_FLAGS=-smoke for a quick check
	@hack/bench/ensure-bench-deps.sh
	KUBEBUILDER_ASSETS="$$(hack/envtest-bins.sh)" OAUTH2_PROXY="$$(hack/oauth2-proxy-bin.sh)" $(GO) run ./hack/bench $(BENCH_FLAGS)

bench-go: deps ## the Go micro-benchmarks (go test -bench) of the proxy, the session stores and the suites
	KUBEBUILDER_ASSETS="$$(hack/envtest-bins.sh)" $(GO) test -run '^$$' -bench . -benchmem -count=1 ./pkg/proxy/ ./pkg/session/ ./test/...

cluster-up: images ## start the one-node cluster as root (hack/cluster; idempotent; imports bin/images); prints the KUBECONFIG path
	@hack/envtest-bins.sh >/dev/null
	@hack/kube-bins.sh >/dev/null
	@hack/cluster/up.sh

cluster-down: ## stop the one-node cluster and remove what it left (idempotent)
	@hack/cluster/down.sh

clean: ## remove build output (keeps the envtest kube-apiserver and etcd, which take minutes to rebuild)
	rm -f $(BIN)/mcp-oidc-proxy $(BIN)/mcp-oidc-injector
	rm -rf $(BIN)/images
