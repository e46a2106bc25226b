# Tusk — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3

.PHONY: help build run test test-rust test-python install-test-deps fmt lint compat compat-all \
        bench bench-storage bench-e2e bench-and-show-reads show-writes show-reads show-scaling show-e2e \
        plot-deps image compose-up crash-long powerloss-long fuzz bench-disturbed compat-all compat-ci bench-reopen bench-startup \
        differential kafka-fixture test-java test-go bench-vs-kafka bench-vs-kafka-full bench-fetch-path bench-produce-path franz-go calibrate \
        raft-spike raft-spike-netns cluster-faults

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## Build the broker (release)
	$(CARGO) build --release --bin tusk

run: build ## Build and start the broker: 127.0.0.1:9092, data in ./data
	./target/release/tusk

install-test-deps: ## Install kcat, the Python clients and the Apache Kafka fixture the tests drive
	./scripts/install-test-deps.sh

test: install-test-deps lint ## Install test needs, lint, and run every test (what CI runs)
	$(CARGO) build --release --bin tusk
	./scripts/build-image.sh --binary-only
	$(CARGO) test --workspace --release
	TUSK_BIN=$(CURDIR)/target/release/tusk $(PYTHON) -m pytest -q tests/python
	TUSK_BIN=$(CURDIR)/target/release/tusk ./tests/compat/librdkafka/run.sh ci
	TUSK_BIN=$(CURDIR)/target/release/tusk mvn -q -B -f tests/java/pom.xml test
	cd tests/go && TUSK_BIN=$(CURDIR)/target/release/tusk go test -count=1 ./...
	TUSK_BIN=$(CURDIR)/target/release/tusk ./scripts/franz-go-suite.sh
	$(MAKE) cluster-faults

test-rust: ## Rust tests only
	$(CARGO) test --workspace --release

test-python: build ## Python client tests only (kcat, kafka-python, confluent-kafka)
	TUSK_BIN=$(CURDIR)/target/release/tusk $(PYTHON) -m pytest -q tests/python

compat: build ## librdkafka's integration suite: the allowlist (tests/compat/librdkafka/tests.allow)
	./tests/compat/librdkafka/run.sh allow

compat-ci: build ## librdkafka's integration suite: the fast subset CI runs (tests.ci)
	./tests/compat/librdkafka/run.sh ci

compat-all: build ## librdkafka's integration suite: every test, to find what to fix next
	./tests/compat/librdkafka/run.sh all

fuzz: ## cargo-fuzz targets (decode, bodies, records), FUZZ_SECONDS each (default 600)
	./scripts/fuzz.sh

powerloss-long: ## Power-loss simulation: Walrus 100,000 cuts, the broker 3,000 (CI runs 1,000 and 60)
	WALRUS_POWERLOSS_CUTS=100000 $(CARGO) test --release -p walrus-storage --test powerloss -- --nocapture
	TUSK_POWERLOSS_CUTS=3000 $(CARGO) test --release --test broker_powerloss -- --nocapture

raft-spike: ## The openraft spike on loopback: 3 nodes x GROUPS (1000) groups, idle cost, appends, re-election, remedies (bench-results/raft-spike.md)
	$(CARGO) build --release -p tusk-raft
	$(PYTHON) scripts/raft-spike.py measure --groups $${GROUPS:-1000}

raft-spike-netns: ## The same with each node in its own network namespace (root)
	$(CARGO) build --release -p tusk-raft
	$(PYTHON) scripts/raft-spike.py measure --netns --groups $${GROUPS:-1000}

cluster-faults: ## The netns fault run on the spike (kill -9, SIGSTOP, cut link, isolated leader) + the log checker; exit 2 = no netns here
	$(CARGO) build --release -p tusk-raft
	$(PYTHON) scripts/raft-spike.py faults --groups $${GROUPS:-20} --seconds $${SECONDS_MAX:-60} || { rc=$$?; [ $$rc -eq 2 ] && echo "cluster-faults: SKIPPED, no network namespaces on this machine"; [ $$rc -eq 2 ]; }

crash-long: ## Storage crash test with thousands of kill points
	WALRUS_CRASH_ITERATIONS=3000 $(CARGO) test --release -p walrus-storage --test crash -- --nocapture

image: ## Build the tusk:local Docker image FROM scratch (static binary, no base image)
	./scripts/build-image.sh

compose-up: image ## Start Tusk with docker compose (compose/docker-compose.yml)
	cd compose && (docker compose version >/dev/null 2>&1 && docker compose up || docker-compose up)

plot-deps:
	@$(PYTHON) -c 'import pandas, matplotlib' 2>/dev/null || $(PYTHON) -m pip install -q pandas matplotlib

bench: bench-storage bench-e2e bench-reopen bench-startup ## All benchmarks (storage vs walrus-rust, restarts, end-to-end), plots, BENCHMARKS.md
	$(MAKE) show-writes show-reads show-scaling show-e2e
	$(PYTHON) scripts/bench-report.py

bench-storage: ## Walrus vs walrus-rust 0.2.0 (knobs: WALRUS_FSYNC, WALRUS_THREADS, WALRUS_DURATION, WALRUS_BACKEND)
	$(CARGO) bench -p walrus-storage --bench storage_bench

bench-reopen: ## Walrus reopen time holding 10 GiB in 1,000 topics (TOPICS, MB_PER_TOPIC, RUNS), warm and cold cache
	WALRUS_QUIET=1 $(CARGO) run --release -p walrus-storage --example reopen_scale -- target/reopen-scale

bench-disturbed: ## Produce p99 at 10k msg/s while another client creates topics (new files), old rev vs this tree (scripts/bench-disturbed.sh)
	./scripts/bench-disturbed.sh

bench-startup: build ## Broker start time holding ~2 GiB: after SIGTERM, cold cache, after kill -9 (scripts/bench-startup.sh)
	./scripts/bench-startup.sh

bench-e2e: build ## End-to-end produce/consume with rdkafka against a fresh Tusk (scripts/bench-e2e.sh)
	./scripts/bench-e2e.sh

bench-and-show-reads: plot-deps ## Run the read benchmarks and plot them
	WALRUS_FSYNC=none WALRUS_THREADS=1 $(CARGO) bench -p walrus-storage --bench storage_bench
	$(PYTHON) scripts/plot.py reads

show-writes: plot-deps ## Plot append throughput (bench-results/writes.png)
	$(PYTHON) scripts/plot.py writes

show-reads: plot-deps ## Plot read throughput (bench-results/reads.png)
	$(PYTHON) scripts/plot.py reads

show-scaling: plot-deps ## Plot throughput against writer/topic count (bench-results/scaling.png)
	$(PYTHON) scripts/plot.py scaling

show-e2e: plot-deps ## Plot the end-to-end results (bench-results/e2e.png)
	$(PYTHON) scripts/plot.py e2e

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

test-java: build ## Java tier: kafka-clients, Kafka Streams EOS v2, a Connect worker (4.4.0, JUnit; Maven)
	TUSK_BIN=$(CURDIR)/target/release/tusk mvn -q -B -f tests/java/pom.xml test

bench-vs-kafka-full: build ## The full Tusk vs Kafka suite: throughput (1 KiB, 100 B; DURATION s), fixed-rate latency, flush.messages=1 vs sync-each, CPU, RSS, restarts with DATA_GB GiB
	./scripts/bench-vs-kafka-full.sh

bench-vs-kafka: build ## Tusk vs Apache Kafka 4.4.0 with Kafka's perf tools, alternating rounds (ROUNDS, RECORDS, SIZE, PARTITIONS, ACKS, TUSK_FSYNC)
	./scripts/bench-vs-kafka.sh

bench-fetch-path: build ## Fetch path copied vs sendfile vs sendfile + read-ahead, alternating (ROUNDS, MESSAGES, SIZE, PARTITIONS): consume MB/s cold and warm, broker CPU
	./scripts/bench-fetch-path.sh

bench-produce-path: build ## Produce path old vs coalesced-pwrite vs coalesced O_DIRECT io_uring, with fio (ROUNDS, DURATION, RATE_SECONDS, A_MESSAGES)
	./scripts/bench-produce-path.sh

test-go: build ## franz-go tier (tests/go: admin, idempotent producer, group consumer, GroupTransactSession)
	cd tests/go && TUSK_BIN=$(CURDIR)/target/release/tusk go test -count=1 -v ./...

franz-go: build ## franz-go's own kgo integration suite against Tusk (known failures: tests/go/franz-go.known)
	./scripts/franz-go-suite.sh

calibrate: ## Run the Java tier and librdkafka's allowlist against Apache Kafka itself (the target for Tusk; see docs/compat.md)
	./scripts/kafka-fixture.sh start $(CURDIR)/target/calibrate-kafka 19392 num.partitions=4 group.initial.rebalance.delay.ms=3000
	CALIBRATE_BOOTSTRAP=127.0.0.1:19392 mvn -q -B -f tests/java/pom.xml test || true
	CALIBRATE_BOOTSTRAP=127.0.0.1:19392 COMPAT_RESULTS=$(CURDIR)/target/calibrate ./tests/compat/librdkafka/run.sh allow || true
	./scripts/kafka-fixture.sh stop $(CURDIR)/target/calibrate-kafka

differential: build ## Compare Tusk's answers with Apache Kafka's (starts the Kafka fixture; TUSK_DIFF_REPORT=1 prints every difference)
	TUSK_DIFF_REPORT=1 $(CARGO) test --release --test differential --test differential_acl -- --nocapture

kafka-fixture: ## Run Apache Kafka on 127.0.0.1:19092 (data in target/kafka-fixture) for manual comparisons
	./scripts/kafka-fixture.sh start $(CURDIR)/target/kafka-fixture 19092
