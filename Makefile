# jumpless developer targets. `make test` is what CI runs (.ci/run).
GO        ?= go
# The Alibaba transport, the command and the examples are modules of their own
# (aliyun/go.mod, cmd/jumpless/go.mod, examples/go.mod, joined by go.work):
# ./... from the root does not reach them, so they are named too.
PKGS      ?= ./... ./aliyun/... ./cmd/jumpless/... ./examples/...
FUZZTIME  ?= 10s

.PHONY: all test test-env test-real real-peers demo bench bench-report fuzz lint

all: lint test

test-env:
	scripts/test-env.sh

# Tests against AWS's real peers (session-manager-plugin, amazon-ssm-agent
# from ../shared/peers/aws; Alibaba's agent from ../shared/peers/aliyun, in ./aliyun):
# named TestReal*. They need root and unshare for
# the agent; without the binaries they skip, and in CI (CI=true) a skip with
# the binaries present is a failure. Run verbosely so their figures print.
REAL_RUN  ?= ^TestReal(Agent|Plugin)

# Installs/starts sshd, MariaDB and PostgreSQL when absent, then runs every
# test: the real-peer tests once, verbosely, after the others.
test: test-env
	$(GO) test -race -count=1 -timeout 30m -skip '$(REAL_RUN)' $(PKGS)
	@$(MAKE) --no-print-directory real-peers

# Only the real-peer tests and the real agent's calibration benchmark.
test-real: test-env real-peers

real-peers:
	$(GO) test -race -count=1 -timeout 20m -v -run '$(REAL_RUN)' ./internal/realagent ./ssm/ssmtest ./aliyun
	$(GO) test -count=1 -run '^$$' -bench RealAgentCalibration -benchtime 2x ./internal/realagent

demo:
	$(GO) run ./examples/quickstart

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# The one-process comparison behind BENCHMARKS.md and README's chart (needs
# sshd, MariaDB and PostgreSQL like the tests): rewrites docs/bench/.
bench-report: test-env
	JUMPLESS_BENCH_REPORT=1 $(GO) test -run '^$$' -bench '^BenchmarkReport$$' -benchtime 1x -timeout 30m -v ./internal/bench

# Runs each fuzz target for $(FUZZTIME) (go test -fuzz takes one target per package).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# gofmt, go vet and staticcheck (installed at a pinned version when absent).
lint:
	scripts/lint.sh
