# lockerhub. The two set-up commands are `make run` and `make test` (README.md).
#
# Slow suites sit behind build tags, so `go test ./...` (make test, CI) never
# compiles them:
#   //go:build bench   load benchmarks (Benchmark*), run by `make bench`
#   //go:build soak    long runs (Test*Soak*), run by `make soak`
#   //go:build faults  tests that stop PostgreSQL or cut the network (Test*Fault*),
#                      run one package at a time by `make test-faults`
# Plain Benchmark* functions without a tag run in `make bench` too.

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION)
CMDS     := hub hubctl lockersim

TEST_TIMEOUT ?= 14m
BENCH        ?= .
SOAK         ?= Soak
FAULTS       ?= Fault
FUZZTIME     ?= 10s

.PHONY: all build run test bench soak test-faults lint fuzz dist clean postgres tools help

all: build

help:
	@echo "make build        bin/hub, bin/hubctl, bin/lockersim (version $(VERSION))"
	@echo "make run          PostgreSQL + hub + 100 simulated lockers; Ctrl-C stops them"
	@echo "make test         go vet and go test -race ./... against a real PostgreSQL"
	@echo "make bench        benchmarks (build tag bench); figures go to docs/benchmarks.md"
	@echo "make soak         long runs (build tag soak)"
	@echo "make test-faults  PostgreSQL and network fault tests (build tag faults), serially"
	@echo "make lint         gofmt, go vet, govulncheck when its database answers"
	@echo "make fuzz         every Fuzz* target for $(FUZZTIME) each"
	@echo "make dist         static binaries (CGO off) in dist/"
	@echo "make clean        remove bin/ and dist/ (keeps ./var, the demo hub's data)"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ $(addprefix ./cmd/,$(CMDS))

run: build
	scripts/run-demo.sh

postgres:
	scripts/ensure-postgres.sh

tools:
	scripts/ensure-tools.sh mosquitto-clients chromium prometheus systemd

test: postgres tools
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: postgres build
	$(GO) test -tags bench -run '^$$' -bench '$(BENCH)' -benchmem -count=1 -timeout 60m ./...

soak: postgres tools build
	$(GO) test -tags soak -run '$(SOAK)' -count=1 -timeout 3h -v ./...

test-faults: postgres tools build
	$(GO) test -tags faults -run '$(FAULTS)' -p 1 -count=1 -timeout 30m -v ./...

lint:
	scripts/lint.sh

fuzz: postgres
	scripts/fuzz.sh $(FUZZTIME)

dist:
	rm -rf dist
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o dist/ $(addprefix ./cmd/,$(CMDS))
	cd dist && sha256sum $(CMDS) > SHA256SUMS
	@echo "dist/: $(CMDS) ($(VERSION), $$($(GO) env GOOS)/$$($(GO) env GOARCH), static)"

clean:
	rm -rf bin dist
