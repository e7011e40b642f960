# Portico developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
TOOLS    := $(CURDIR)/.cache/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# What `make build` puts in bin/, as name=package; `make up` runs them from
# there. Add a command here when it joins the local stack.
BINARIES := users=./services/cmd/users products=./services/cmd/products edge=./edge/cmd/edge \
            controlplane=./edge/cmd/controlplane devstack=./mesh/cmd/devstack
# Whole-suite bound: the servers each package starts are stopped even when a
# test hangs, because the test binary is then killed and they die with it.
TEST_TIMEOUT ?= 20m
TEST_FLAGS   ?=

export PATH := $(TOOLS):$(PATH)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install pinned servers and tools (idempotent)
	@.ci/deps.sh
	@.ci/install-schemathesis.sh | sed 's/^/deps: schemathesis: /'

.PHONY: build
build: ## Build every binary of BINARIES into bin/
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$${b%%=*} $${b#*=}; done

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint and actionlint
	@.ci/lint.sh

.PHONY: test
test: ## Run every test against real servers it starts itself; prints the fault matrix (e2e/faults)
	@matrix=$$(mktemp); \
	PORTICO_FAULT_MATRIX_FILE=$$matrix $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...; status=$$?; \
	cat $$matrix; rm -f $$matrix; exit $$status

# The fuzz targets, as package:Target; each runs for FUZZTIME in turn (go
# test fuzzes one target per invocation). Their seed corpora
# (testdata/fuzz/<Target>) also run as ordinary tests in `make test`.
FUZZ_TARGETS := ./edge/controlplane/edgeconfig:FuzzParse \
                ./edge/httpcache:FuzzCacheControl ./edge/httpcache:FuzzCacheKey \
                ./services/platform/page:FuzzCursor \
                ./services/products/productsbus:FuzzParsePrice \
                ./services/platform/identity:FuzzFromHeaders \
                ./services/platform/jsonbody:FuzzDecodeObject
FUZZTIME ?= 10s
# Go spends up to 60s shrinking each input that finds new code, and that
# time counts against FUZZTIME: bounded, the runs fuzz rather than shrink.
FUZZMINIMIZETIME ?= 1s

.PHONY: fuzz
fuzz: ## Fuzz each parser for FUZZTIME (default 10s); a failing input lands in its testdata/fuzz
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*} name=$${t##*:} start=$$(date +%s); \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg \
			|| { echo "FAIL $$name ($$pkg): the failing input is in $$pkg/testdata/fuzz/$$name"; exit 1; }; \
		echo "fuzz $$name: $$(( $$(date +%s) - start ))s"; \
	done

.PHONY: bench-xds
bench-xds: ## Time catalog change -> ingress Envoy ACK -> first request (median, p99)
	$(GO) test -count=1 -run '^$$' -bench BenchmarkXDSPropagation -benchtime 1x ./e2e/ingress/

.PHONY: bench-cache
bench-cache: ## Edge cache hit vs miss latency through an ingress (median, p99, ratio)
	$(GO) test -count=1 -run '^$$' -bench BenchmarkCacheThroughIngress -benchtime 1x ./e2e/system/

.PHONY: bench-tracing
bench-tracing: ## The ingress path at sampling 0, 1 and 100 %, side by side in one run (median, p99)
	$(GO) test -count=1 -run '^$$' -bench BenchmarkTracingSampling -benchtime 1x ./e2e/system/

# Flags of mesh/cmd/bench, e.g. BENCH_FLAGS='-rates 100,200 -duration 3s',
# -reuse to measure a running `make up`, -compare .run/bench/<old>.json.
BENCH_FLAGS ?=

.PHONY: bench
bench: deps build ## Request path hop by hop: p50/p90/p99, capacity, CPU and RSS per process (BENCH_FLAGS)
	@$(GO) build -trimpath -o $(BIN)/bench ./mesh/cmd/bench
	@$(BIN)/bench $(BENCH_FLAGS)

.PHONY: up
up: deps build ## Run the whole system locally in the background (Consul mesh, servers, services)
	@$(BIN)/devstack up

.PHONY: down
down: $(BIN)/devstack ## Stop everything `make up` started
	@$(BIN)/devstack down

.PHONY: status
status: $(BIN)/devstack ## Show what `make up` runs and whether it is healthy
	@$(BIN)/devstack status

.PHONY: logs
logs: $(BIN)/devstack ## Follow the logs of every process `make up` started
	@$(BIN)/devstack logs

# --- Docker Compose (docker-compose.yml) on this machine's engine -----------
# The upstream image the local images cannot stand in for; compose-up runs
# without it when it is absent (mesh/images/README.md).
GRAFANA_IMAGE := $(shell awk '$$1 ~ /^grafana\// { print $$1 }' mesh/images/images.txt)

.PHONY: images
images: ## Pull, or build locally (mesh/images), each upstream image of docker-compose.yml, the Dockerfile and nomad/agent.dev.hcl
	@.ci/dockerd.sh start
	@mesh/images/build.sh

# Without Grafana's image, every other service is named (--scale grafana=0
# would still pull it).
.PHONY: compose-up
compose-up: images ## docker compose up -d --build --wait (without Grafana if its image is absent)
	docker compose up -d --build --wait $$(docker image inspect $(GRAFANA_IMAGE) >/dev/null 2>&1 || docker compose config --services | grep -vx grafana)

.PHONY: compose-down
compose-down: ## docker compose down -v; stops the dockerd that `make images` started
	docker compose down -v --remove-orphans
	@.ci/dockerd.sh stop

.PHONY: test-compose
test-compose: ## Run docker-compose.yml for real and drive it (e2e/compose, tag composerun; slow)
	$(GO) test -tags composerun -count=1 -timeout 60m -run '^TestComposeRun$$' -v ./e2e/compose/

# --- Nomad (nomad/portico.nomad.hcl) on this machine's engine ---------------
.PHONY: test-nomad
test-nomad: ## Run the Nomad job for real on a dev agent and drive it (e2e/nomad, tag nomadrun; slow)
	$(GO) test -tags nomadrun -count=1 -timeout 60m -run '^TestNomadRun$$' -v ./e2e/nomad/

.PHONY: clean
clean: down ## Stop everything and delete local data and binaries
	rm -rf $(BIN) .run

# Always handed to go build, which knows every package and embedded file the
# command depends on (a hand-kept list once missed envoy/) and does nothing
# when none changed.
.PHONY: $(BIN)/devstack
$(BIN)/devstack:
	@mkdir -p $(BIN)
	@$(GO) build -trimpath -o $@ ./mesh/cmd/devstack
