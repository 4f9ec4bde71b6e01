# p2prc — see README.md. Every target works on a fresh machine with Go 1.26.
GO      ?= go
BIN     ?= bin/p2prc
PKGS    := ./...
# gofmt beside the go in use, so GO=/path/to/go needs nothing in PATH.
GOFMT   ?= $(shell $(GO) env GOROOT)/bin/gofmt
# The race detector needs cgo, so a C compiler; 'make test RACE=' runs without it.
RACE    ?= -race

.PHONY: all build static docker test demo bench microbench lint fuzz clean

all: build

# -buildvcs=auto: `p2prc version` names the commit when built from a git tree.
build:
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/p2prc

# A static binary (no cgo, no libc) for containers and other Linux machines,
# beside the empty state dir the image starts from: the image's build context.
STATIC_DIR ?= bin/static
static:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags='-s -w' -o $(STATIC_DIR)/p2prc ./cmd/p2prc
	mkdir -p $(STATIC_DIR)/state

# The container image, FROM scratch over the static binary: nothing is pulled.
# Needs a docker daemon.
IMAGE ?= p2prc
docker: static
	docker build -f cmd/p2prc/Dockerfile -t $(IMAGE) $(STATIC_DIR)

# The tests, with the race detector; fuzz targets run their seed corpus.
# Benchmarks run once too (-benchtime 1x, about 15 s), so one that breaks
# fails the tests instead of waiting for the next person who measures.
test: lint
	@if [ -n "$(RACE)" ] && [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then \
	  echo "make test: the race detector needs a C compiler (cgo is off): install gcc (Debian: apt-get install gcc), or run 'make test RACE='"; exit 1; fi
	$(GO) test $(RACE) -count=1 -timeout 8m $(PKGS)
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./mux ./tunnel

# The whole path on this machine: relay, node, a web page fetched through the relay.
demo:
	$(GO) run ./cmd/p2prc demo

# Direct against relayed, side by side: relay and node as separate processes.
# BENCHFLAGS passes flags, e.g. BENCHFLAGS="--duration 1s --workloads tcp-1,rr".
bench: build
	$(BIN) bench $(BENCHFLAGS)

# The hot paths (frame writes, stream copy, headers), with allocations.
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./mux ./tunnel

lint:
	@out=$$($(GOFMT) -l .) || exit 1; test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) vet $(PKGS)

# Each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
