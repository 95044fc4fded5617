# Kiln. `make demo` shows the cluster at work; `make test` is what CI runs.
GO       ?= go
VERSION  ?= 0.1.0
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 20000x

.PHONY: all build test unit fuzz fuzz-short lint demo bench clean mutate hostile-figures hostile-peer-figures loadtest cluster-bench

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kiln ./cmd/kiln

## test: formatting, vet, a short fuzz run, every test with the race detector.
## It ends with a line counting the tests passed, skipped and failed; tests
## that need root, a kernel feature or a program are listed when skipped
## (with CI=true they fail instead: see internal/testenv).
test: lint build fuzz-short unit

unit:
	$(GO) build -o bin/testsum ./.ci/testsum
	bash -o pipefail -c '$(GO) test -race -count=1 -timeout 9m -json ./... | bin/testsum'

fuzz-short:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz

## fuzz: every fuzz target for longer (FUZZTIME=1m make fuzz).
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} bash .ci/fuzz

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## mutate: apply each security mutation of .ci/mutations.txt to a copy of
## the tree and check that a test catches it (slow; not part of test).
mutate:
	$(GO) run ./.ci/mutate

demo: build
	bash examples/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2x ./...

## hostile-figures: the job side's attacks (docs/performance.md, "Hostile key
## holders") against a master in a child process: its peak memory and an
## honest client's p99 latency, without and during each attack (about 1.5 min).
hostile-figures:
	KILN_HOSTILE_FIGURES=1 $(GO) test -count=1 -run TestHostileFigures -v ./master/ | grep -E 'FIGURE|FAIL|^ok'

## hostile-peer-figures: the peer side's attacks (docs/performance.md) against
## a master in a child process, the honest client in another (about 1 min).
hostile-peer-figures:
	KILN_MEASURE=1 $(GO) test -count=1 -run TestMeasurePeerAttacks -v ./master/ | grep -E 'hostile_measure|FAIL|^ok'

## cluster-bench: a master and one slave on loopback, the cluster against
## bare runs of examples/hello.c: latency, throughput at concurrency 1, 4, 16,
## CPU per job of each process, the file path against raw TLS (about 1 min;
## docs/performance.md, "The cluster path"). BENCH="200 examples/hello.py".
cluster-bench: build
	bash examples/bench.sh $(BENCH)

## loadtest: the master against 100 simulated slaves x 16 slots and 1,000
## client sessions, at rising rates (docs/performance.md, "The master under
## load"; about 1.5 min). LOADTEST="--rates 500,1000 --delay 5ms" to vary.
loadtest: build
	bin/kiln loadtest $(LOADTEST)

clean:
	rm -rf bin
