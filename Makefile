# xdpipe. Every target that needs system packages installs them itself
# (hack/deps.sh, idempotent), so these work as root on a fresh Debian machine.

GO       ?= go
BIN      := bin/xdpipe
PKGS     := ./...
# Tests touch XDP, AF_XDP and network namespaces: they need root. -p 1 keeps
# packages that bind veth queues from fighting over the CPUs.
TESTFLAGS ?= -count=1 -p 1 -timeout 30m
# Modules of their own, so that their dependencies stay out of xdpipe's:
# deploy/k8s decodes the Kubernetes manifests with k8s.io/api;
# cmd/xdpipe-chart draws bench's charts with gonum/plot.
SUBMODULES := deploy/k8s cmd/xdpipe-chart

.PHONY: all build image generate generate-check unit test bench demo profile lint clean

all: build

# xdpipe is static (no cgo: the rdma stage's verbs are built with -tags
# rdma), the binary deploy/ installs. xdpipe-chart, which draws bench's
# charts, is built from its own module.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/xdpipe
	cd cmd/xdpipe-chart && $(GO) build -o $(CURDIR)/bin/xdpipe-chart .

# The container image xdpipe:latest (deploy/container), built with podman
# from the static binary, into podman's local storage: no registry.
image: build
	hack/deps.sh image
	mkdir -p bin/image && cp $(BIN) bin/image/xdpipe
	podman build -t localhost/xdpipe:latest -f deploy/container/Containerfile bin/image

# Regenerate the committed bpf2go output with the pinned clang (clang-14).
generate:
	hack/deps.sh generate
	$(GO) generate ./bpf/...

# Fail when the committed BPF objects differ from what the pinned clang makes.
generate-check: generate
	git diff --exit-code -- bpf/

# go.mod and go.sum must be what `go mod tidy` makes.
# vet and staticcheck also check the rdma package built with -tags rdma,
# where its cgo over rdma-core replaces its stub (the verbs headers and a
# C compiler: hack/deps.sh rdma-dev); no other package has a file behind
# that tag, so their checks would repeat the default build's.
# The submodules use the staticcheck xdpipe's go.mod pins, built once.
# hack/asavie-peer (a benchmark peer, built by xdpipe bench) is only
# checked for a go.sum that pins every module it builds with.
lint:
	hack/deps.sh rdma-dev
	$(GO) mod tidy -diff
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	CGO_ENABLED=1 $(GO) vet -tags rdma ./rdma/...
	$(GO) tool staticcheck $(PKGS)
	CGO_ENABLED=1 $(GO) tool staticcheck -tags rdma ./rdma/...
	$(GO) build -o bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	for m in $(SUBMODULES); do (cd $$m && $(GO) mod tidy -diff && $(GO) vet ./... && $(CURDIR)/bin/staticcheck ./...) || exit 1; done
	cd hack/asavie-peer && GOWORK=off $(GO) mod tidy -diff

# The fast loop for changing the code: the tests that need no root, no VM
# and nothing installed (-short; privileged ones skip, also as root), the
# submodules' too. Go's test cache keeps a second run to what changed.
unit:
	@GO=$(GO) hack/env.sh
	$(GO) test -short $(PKGS)
	for m in $(SUBMODULES); do (cd $$m && $(GO) test -short ./...) || exit 1; done

# The VM test bed (hack/vm) boots a cached guest kernel that `deps.sh vm`
# fetches once: virtio-net zero-copy and SoftRoCE tests run there.
# hack/env.sh first prints what the results depend on besides the code (Go,
# kernels, distribution, qemu, clang, the Debian packages' versions).
# hack/test.sh runs the packages that boot the VM beside the others, each
# lane one package at a time.
test: build
	hack/deps.sh test vm rdma image
	@GO=$(GO) hack/env.sh test vm rdma image
	$(GO) vet $(PKGS)
	hack/test.sh $(TESTFLAGS)
	for m in $(SUBMODULES); do (cd $$m && $(GO) vet ./... && $(GO) test $(TESTFLAGS) ./...) || exit 1; done

# The benchmark matrix on a veth testbed (bench-results/), then the Go
# micro-benchmarks (rings, stages, steering cost) with allocation counts.
bench: build
	hack/deps.sh run
	hack/bench.sh $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

demo: build
	hack/deps.sh run
	hack/demo.sh $(BIN)

# A CPU profile of the receive path under load, and its top functions.
profile: build
	hack/deps.sh run
	hack/profile.sh $(BIN)

clean:
	rm -rf bin
