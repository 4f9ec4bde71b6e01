# p2prc — see README.md. Every target works on a fresh machine with Go 1.26.
GO      ?= go
BIN     ?= bin/p2prc
PKGS    := ./...

.PHONY: all build test demo bench microbench lint fuzz clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/p2prc

# The tests, with the race detector; fuzz targets run their seed corpus.
test:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

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
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
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
