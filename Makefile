# Tusk — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3

.PHONY: help build run test test-rust test-python install-test-deps fmt lint compat compat-all \
        bench bench-and-show-reads show-writes show-reads show-scaling image compose-up crash-long

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## Build the broker (release)
	$(CARGO) build --release --bin tusk

run: build ## Build and start the broker: 127.0.0.1:9092, data in ./data
	./target/release/tusk

install-test-deps: ## Install kcat and the Python clients the tests drive
	./scripts/install-test-deps.sh

test: install-test-deps ## Install test needs and run every test (what CI runs)
	$(CARGO) build --release --bin tusk
	$(CARGO) test --workspace --release
	TUSK_BIN=$(CURDIR)/target/release/tusk $(PYTHON) -m pytest -q tests/python

test-rust: ## Rust tests only
	$(CARGO) test --workspace --release

test-python: build ## Python client tests only (kcat, kafka-python, confluent-kafka)
	TUSK_BIN=$(CURDIR)/target/release/tusk $(PYTHON) -m pytest -q tests/python

crash-long: ## Storage crash test with thousands of kill points
	WALRUS_CRASH_ITERATIONS=3000 $(CARGO) test --release -p walrus-storage --test crash -- --nocapture

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
