# Switchyard. `make run` starts one gateway with the embedded echo backend;
# `make test` runs the whole suite (race detector on). Everything the tests
# need is installed by the targets themselves.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 10s
# Two make runs on one fresh machine both install packages: the second
# waits for dpkg's lock instead of failing at once.
APT_GET  := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

.PHONY: all build run demo test test-deps test-race test-ansible test-alloc test-c test-c-deps fuzz fuzz-smoke bench bench-deps scale million storm chaos lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/switchyard ./cmd/switchyard

## run: one gateway, devices on 127.0.0.1:7400, admin on 127.0.0.1:7480
run: build
	./$(BIN)/switchyard gateway

## demo: 2 gateways + 3 counter shards on loopback, a few devices through
## both gateways, then everything is stopped
demo: build
	tools/demo/demo.sh

## test: lint, the whole suite under -race (with the one-minute chaos run,
## tools/chaos TestChaosMinute), the playbooks against throwaway hosts
## (test-ansible), the allocation checks, a short run of every fuzz
## target, and the C client's tests (test-c)
test: test-deps lint test-c test-race test-ansible test-alloc fuzz-smoke

# deploy/ansible's test runs the playbooks over SSH against throwaway hosts
# (network namespaces, overlays of /, sshd) and applies nftables rules
# inside them: Debian's ansible, ansible-lint, openssh-server and nftables.
# apt-get needs root, which the test needs anyway. deploy/prometheus's test
# runs Debian's prometheus and promtool (the binary only, on loopback: the
# package's own service is not used); anyone else is told what to install.
# server's PROXY protocol test runs Debian's haproxy in front of a gateway
# (the binary only, on loopback, its config in a temporary directory).
ANSIBLE_PKGS := ansible ansible-lint openssh-server nftables
TEST_PKGS    := $(ANSIBLE_PKGS) haproxy
test-deps:
	@missing=$$(for p in $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make: the tests of deploy/ansible (and server, haproxy) need the Debian packages:" $$missing >&2; \
			echo "make: run as root (make installs them) or: sudo apt-get install" $$missing >&2; exit 1; fi; \
		echo "make: installing" $$missing; \
		$(APT_GET) install -y --no-install-recommends $$missing > /dev/null || \
		{ $(APT_GET) update > /dev/null && $(APT_GET) install -y --no-install-recommends $$missing > /dev/null; }; \
	fi
	@command -v prometheus > /dev/null && command -v promtool > /dev/null || [ "$$(id -u)" = 0 ] || { \
		echo "make: prometheus or promtool not found; the deploy/prometheus test needs them." >&2; \
		echo "make: install Debian's prometheus package (sudo apt-get install prometheus), or run make test as root to have it installed." >&2; \
		exit 1; }
	@command -v prometheus > /dev/null && command -v promtool > /dev/null || { echo "make: installing prometheus"; \
		$(APT_GET) install -y --no-install-recommends prometheus > /dev/null || \
		{ $(APT_GET) update > /dev/null && $(APT_GET) install -y --no-install-recommends prometheus > /dev/null; }; }

# Every package but deploy/ansible, which test-ansible runs (as root).
# SWITCHYARD_REQUIRE_PROMETHEUS: without prometheus the deploy/prometheus
# test fails here instead of skipping (test-deps installed it); likewise
# SWITCHYARD_REQUIRE_HAPROXY for server's TestProxyHAProxy.
test-race:
	SWITCHYARD_REQUIRE_PROMETHEUS=1 SWITCHYARD_REQUIRE_HAPROXY=1 $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v '/deploy/ansible$$')

## test-ansible: site.yml twice (the second run must change nothing) and
## rolling-upgrade.yml under loadgen --verify, over SSH against three
## throwaway hosts; ansible-lint --profile production. Root only: it
## creates network namespaces, overlay mounts and sshd hosts.
test-ansible: test-deps
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make: test-ansible must run as root: it creates network namespaces (10.213.0.0/24), overlay mounts and sshd hosts" >&2; exit 1; fi
	$(GO) test -count=1 -timeout 20m -v ./deploy/ansible

## test-c: the C client (client/c): its unit tests, the example devices and
## the scenarios against real gateways (the TLS device through HAProxy),
## built by client/c/ctest with gcc (-std=c99 -Wall -Wextra -Werror, ASan +
## UBSan); the TLS example built with clang too; then its frame and map
## decoders fuzzed with clang's libFuzzer for FUZZ_C_SECONDS each.
FUZZ_C_SECONDS ?= 10
C_FUZZ_FLAGS := -std=c99 -Wall -Wextra -Werror -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
test-c: test-c-deps
	SWITCHYARD_REQUIRE_CC=1 $(GO) test -count=1 ./client/c/ctest
	@set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; mkdir "$$d/seeds" "$$d/frame" "$$d/map"; \
		clang -std=c99 -Wall -Wextra -Werror -O1 -o "$$d/unit" client/c/test/unit.c client/c/switchyard.c; \
		"$$d/unit" protocol/testdata/vectors.txt --seeds "$$d/seeds"; \
		clang -std=c99 -Wall -Wextra -Werror -O1 -o "$$d/device_tls" client/c/examples/device_tls.c client/c/switchyard.c -lssl -lcrypto; \
		for t in frame map; do \
			clang $(C_FUZZ_FLAGS) -o "$$d/fuzz_$$t" client/c/fuzz/fuzz_$$t.c client/c/switchyard.c; \
			echo "fuzz client/c $$t decoder for $(FUZZ_C_SECONDS)s"; \
			if ! "$$d/fuzz_$$t" -max_total_time=$(FUZZ_C_SECONDS) -timeout=10 -print_final_stats=1 \
				"$$d/$$t" "$$d/seeds" > "$$d/$$t.log" 2>&1; then \
				tail -n 60 "$$d/$$t.log"; echo "make: fuzz_$$t failed (log tail above; the input is saved as ./crash-*)"; exit 1; fi; \
			grep -E '^(Done|stat::number_of_executed_units)' "$$d/$$t.log"; \
		done

# gcc builds and runs the C client's tests; clang with its libFuzzer
# runtime (libclang-rt-dev) fuzzes it; the TLS example links OpenSSL
# (libssl-dev) and its test puts HAProxy (haproxy) in front of a gateway.
# Installed when missing (apt-get needs root, as in CI); elsewhere a
# missing one fails and names them.
test-c-deps:
	@missing=""; \
		command -v gcc > /dev/null || missing="$$missing gcc"; \
		dpkg-query -W -f='$${Status}' libssl-dev 2>/dev/null | grep -q 'install ok installed' || missing="$$missing libssl-dev"; \
		command -v haproxy > /dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
		command -v clang > /dev/null || missing="$$missing clang libclang-rt-dev"; \
		if command -v clang > /dev/null && ! printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' | \
			clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - > /dev/null 2>&1; then missing="$$missing libclang-rt-dev"; fi; \
		if [ -n "$$missing" ]; then \
			if [ "$$(id -u)" != 0 ]; then echo "make: test-c needs Debian's$$missing: run apt-get install$$missing as root"; exit 1; fi; \
			echo "make: installing$$missing"; \
			$(APT_GET) install -y --no-install-recommends $$missing > /dev/null || \
			{ $(APT_GET) update > /dev/null && $(APT_GET) install -y --no-install-recommends $$missing > /dev/null; }; \
		fi

# Allocation counts are meaningless under -race (sync.Pool drops items at
# random), so the zero-allocation checks run once more without it.
test-alloc:
	$(GO) test -count=1 -run 'ZeroAlloc' ./...

# Each native fuzz target runs briefly (a count, not a duration: a timed
# run can fail with "context deadline exceeded" on a loaded box when a
# worker is slow to stop); `make fuzz FUZZTIME=5m` runs longer.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3000x

# Every Fuzz function of every package (names may repeat across packages).
fuzz:
	@set -e; for pkg in $$(grep -rlE '^func Fuzz' --include='*_test.go' . | xargs -n1 dirname | sort -u); do \
		for target in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]+' $$pkg/*_test.go | sed 's/func //' | sort -u); do \
			echo "fuzz $$target in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## bench: micro-benchmarks, then gateway (embedded echo, and remote: its
## sessions on an echo shard over a link), naive baseline, HAProxy in front
## of it and bare netpoll side by side (tools/gwbench/run.sh: about 15
## minutes). Results appended to docs/benchmarks/results.jsonl, plots in
## docs/benchmarks/{latency,memory}.svg, the table in docs/benchmarks.md.
bench: bench-deps
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./protocol ./server ./internal/...
	tools/gwbench/run.sh

# HAProxy (Debian's) is the deployed baseline the suite compares against;
# setpriv (util-linux) ties a target's helper process to its lifetime.
bench-deps:
	@command -v haproxy > /dev/null || { echo "make: installing haproxy"; \
		$(APT_GET) install -y haproxy > /dev/null || \
		{ $(APT_GET) update > /dev/null && $(APT_GET) install -y haproxy > /dev/null; }; }
	@command -v setpriv > /dev/null || $(APT_GET) install -y util-linux > /dev/null

## scale: 100,000 authenticated sessions over 7 gateway processes and 3
## shards on this host, heartbeating (every 10 s) for 5 minutes; fails on any
## unexpected disconnect. About 7 minutes; stops everything it started.
## SCALE_FLAGS adds tools/scale flags (e.g. --sessions 1000000 --per-gateway 18500).
SCALE_SESSIONS ?= 100000
scale:
	$(GO) run ./tools/scale --sessions $(SCALE_SESSIONS) --hold 5m --out docs/benchmarks/scale.jsonl $(SCALE_FLAGS)

## million: a million sessions (issue 11 point 5) over 55 gateway processes
## of 18,500 and 3 shards, ramped at 400 a second, heartbeating every
## 300 s, held 5 minutes; fails on any unexpected disconnect. About 50
## minutes, the box's two cores to itself. loadgen sends its PINGs on a
## 100 ms grid (docs/scale.md "2026-12-05": a single gateway with a
## million devices gets several PINGs per wake-up; 55 small ones would
## each wake once per PING).
million:
	$(GO) run ./tools/scale --sessions 1000000 --per-gateway 18500 --heartbeat 300 --hold 5m --ramp 400 --loadgen-args=--heartbeat-grid=100ms --out docs/benchmarks/scale.jsonl $(SCALE_FLAGS)

## storm: a reconnect storm (issue 11 point 4): STORM_SESSIONS sessions up,
## then every connection cut at once and every device back with the Go
## client's backoff; fails on any handshake timeout (408) or connection
## attempt given up. Runs in a network namespace with deploy/ansible's
## accept queue (tools/scale/tuned.sh; root). About 2 minutes. The default
## is what this 2-core box, loadgen included, passes every time: 100,000
## do not fit in the devices' 10 s patience here (docs/scale.md
## "Reconnect storms").
STORM_SESSIONS ?= 40000
storm:
	tools/scale/tuned.sh $(GO) run ./tools/scale --sessions $(STORM_SESSIONS) --hold 90s --storm-after 30s --out docs/benchmarks/storm.jsonl $(SCALE_FLAGS)

## chaos: 3 gateways and 4 counter shards as processes under loadgen
## --verify, drained, killed (-9), restarted and added at random for
## CHAOS_DURATION (about 10 minutes in all); fails on any violation
## docs/chaos.md does not allow; stops everything it started, by pid. Its
## last line is the one-line summary. CHAOS_FLAGS adds tools/chaos flags
## (--seed N replays a run's choices, --events drain-shard,kill-gateway, …).
CHAOS_DURATION ?= 10m
chaos: build
	$(GO) build -o $(BIN)/loadgen ./tools/loadgen
	$(GO) build -o $(BIN)/chaos ./tools/chaos
	./$(BIN)/chaos --bin $(BIN) --duration $(CHAOS_DURATION) $(CHAOS_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
