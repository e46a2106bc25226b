#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: kcat (Debian), Python clients (PyPI).
set -euo pipefail
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# prlimit: the Walrus fault test runs children under a file-size limit.
command -v prlimit >/dev/null 2>&1 || need_apt+=(util-linux)
# openssl: the TLS tests make their certificates with it.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
# make lint needs clippy and rustfmt (in rustup's default profile; added if missing).
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt
fi
python3 - <<'PY' || python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
import importlib, sys
for m in ("pytest", "kafka", "confluent_kafka", "prometheus_client", "cryptography"):
    importlib.import_module(m)
PY
# Apache Kafka, the reference broker of tests/differential.rs: Java 17 and Maven (installed
# here if missing), jars from Maven Central, cached in ~/.cache/tusk-kafka.
need_java=()
command -v java >/dev/null 2>&1 || need_java+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_java+=(maven)
if [ ${#need_java[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_java[@]}"
fi
./scripts/kafka-fixture.sh fetch
