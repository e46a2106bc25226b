#!/usr/bin/env bash
# librdkafka's own integration suite against a fresh Tusk.
#
#   run.sh [allow|ci|all|LIST]   allow: the tests in tests.allow (default); ci: the subset in
#                                tests.ci; all: every test; LIST: comma-separated numbers, each
#                                optionally NNNN@scenario (e.g. 0107@noautocreate).
#
# Fetches librdkafka's Debian source package (version pinned, default 2.14.2-1) through a private
# apt configuration, builds its test-runner once (cached in $TUSK_COMPAT_CACHE, default
# ~/.cache/tusk-compat), starts Tusk with its own data dir and port (auto-create on, 4 partitions),
# runs each test in its own process with a timeout, and prints `NNNN,PASS|FAIL,seconds` per test
# and a last line `N passed, M failed`.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
version="${LIBRDKAFKA_VERSION:-2.14.2-1}"
upstream="${version%-*}"
cache="${TUSK_COMPAT_CACHE:-$HOME/.cache/tusk-compat}"
src="$cache/librdkafka-$upstream"
per_test_timeout="${TEST_TIMEOUT:-300}"
mode="${1:-allow}"

log() { echo "compat: $*" >&2; }

install_build_deps() {
  local pkgs=(build-essential pkg-config python3 zlib1g-dev libssl-dev libzstd-dev liblz4-dev libsasl2-dev rapidjson-dev)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

fetch_source() {
  [ -f "$src/configure" ] && return 0
  mkdir -p "$cache"
  local apt="$cache/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$cache/dl"
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  uri="${uri:-http://deb.debian.org/debian}"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  log "fetching librdkafka $version source (Debian sid)"
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$cache/dl" && apt-get "${opts[@]}" source --download-only "librdkafka=$version" >/dev/null)
  local x="$cache/extract"
  rm -rf "$x" && mkdir -p "$x"
  tar -xzf "$cache/dl/librdkafka_${upstream}.orig.tar.gz" -C "$x"
  mv "$x"/* "$src" && rmdir "$x"
}

build_suite() {
  [ -x "$src/tests/test-runner" ] && return 0
  install_build_deps
  log "building librdkafka and its test-runner (a few minutes, once)"
  (cd "$src" && ./configure --disable-curl --no-download >/dev/null && make -j"$(nproc)" libs >/dev/null \
     && make -j"$(nproc)" -C tests build >/dev/null)
}

fetch_source || { log "could not fetch the source"; exit 2; }
build_suite || { log "build failed"; exit 2; }

# Every numbered test; the runner's -L flag skips the local/mock-only ones (reported SKIP).
all_tests() {
  ls "$src/tests"/0[0-9][0-9][0-9]-*.c "$src/tests"/0[0-9][0-9][0-9]-*.cpp 2>/dev/null \
    | sed -E 's#.*/([0-9]{4})-([^.]*)\..*#\1 \2#' | sort -u
}
# A test runs in librdkafka's "default" scenario (auto-create on) unless the list names another:
# "noautocreate" tests run against a second Tusk with auto-create off (runner flag -s).
noautocreate_tests="0107 0111"
# Tests that need more than the per-test timeout (seconds): 0113 runs ~30 sub-tests with
# Kafka's 3 s initial rebalance delay (~10 minutes).
declare -A long_timeout=([0113]=1200)
list_file() { grep -vE '^\s*(#|$)' "$1" | awk '{print $1 (NF >= 3 ? "@" $3 : "")}'; }
case "$mode" in
  allow) tests=$(list_file "$here/tests.allow") ;;
  ci) tests=$(list_file "$here/tests.ci") ;;
  all) tests=$(all_tests | awk '{print $1}' | while read -r t; do
         case " $noautocreate_tests " in *" $t "*) echo "$t@noautocreate" ;; *) echo "$t" ;; esac
       done) ;;
  *) tests=$(echo "$mode" | tr ',' '\n') ;;
esac

# KAFKA_PATH for the tests that drive Kafka's CLI (kafka-topics.sh, kafka-acls.sh) or its Java
# classes (kafka-run-class.sh): the Apache Kafka fixture's jars (scripts/kafka-fixture.sh) and
# a bin/ of wrappers around their tool classes.
kafka_path() {
  local kp="$work/kafka-path"
  mkdir -p "$kp/bin"
  ln -sfn "$("$root/scripts/kafka-fixture.sh" classpath | sed 's#/\*$##')" "$kp/libs"
  local name cls
  for pair in kafka-topics.sh:org.apache.kafka.tools.TopicCommand \
              kafka-acls.sh:org.apache.kafka.tools.AclCommand \
              kafka-configs.sh:org.apache.kafka.tools.ConfigCommand \
              kafka-console-producer.sh:org.apache.kafka.tools.ConsoleProducer \
              kafka-console-consumer.sh:org.apache.kafka.tools.consumer.ConsoleConsumer; do
    name=${pair%%:*}; cls=${pair#*:}
    printf '#!/bin/sh\nexec java -Xmx256m -cp "%s/libs/*" %s "$@"\n' "$kp" "$cls" > "$kp/bin/$name"
  done
  printf '#!/bin/sh\nexec java -Xmx256m -cp "${CLASSPATH:+$CLASSPATH:}%s/libs/*" "$@"\n' "$kp" > "$kp/bin/kafka-run-class.sh"
  chmod +x "$kp/bin/"*
  echo "$kp"
}

tusk_bin="${TUSK_BIN:-$root/target/release/tusk}"
[ -x "$tusk_bin" ] || (cd "$root" && cargo build --release --bin tusk >/dev/null)
work=$(mktemp -d)
declare -A tusk_pid tusk_port
cleanup() {
  for p in "${tusk_pid[@]}"; do [ "$p" = $$ ] || { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; }; done
  rm -rf "$work"
}
trap cleanup EXIT
KAFKA_PATH=$(kafka_path)
export KAFKA_PATH
# start_tusk SCENARIO: a fresh Tusk for that scenario, once (auto-create off for noautocreate).
# Topics are created with replication factor 3 by many tests (written for a 3-broker cluster):
# --accept-replication-factor 3 lets this one broker create them with one replica.
start_tusk() {
  local sc=$1 autocreate=true
  [ -n "${tusk_pid[$sc]:-}" ] && return 0
  # Calibration: run the suite against another broker (Apache Kafka) instead of a Tusk.
  if [ -n "${CALIBRATE_BOOTSTRAP:-}" ]; then
    tusk_pid[$sc]=$$
    tusk_port[$sc]=${CALIBRATE_BOOTSTRAP##*:}
    return 0
  fi
  [ "$sc" = noautocreate ] && autocreate=false
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # The sasl scenario: one SASL_PLAINTEXT listener with a PLAIN user (test.conf gets the
  # client side, below).
  # The acl scenario: PLAINTEXT with the ACL authorizer, open where no ACL applies (tests
  # drive kafka-acls.sh without security settings, so ANONYMOUS must be able to manage ACLs).
  local security=()
  if [ "$sc" = sasl ]; then
    printf 'testuser:testpass\n' > "$work/sasl-users.txt"
    security=(--listeners "SASL_PLAINTEXT://127.0.0.1:$port" --sasl-plain-users-file "$work/sasl-users.txt"
              --connections-max-reauth-ms 5000)
  fi
  if [ "$sc" = acl ]; then
    security+=(--authorizer-class-name acl --allow-everyone-if-no-acl-found true)
  fi
  "$tusk_bin" --listen "127.0.0.1:$port" --data-dir "$work/data-$sc" --num-partitions 4 \
    --auto-create-topics "$autocreate" --accept-replication-factor 3 "${security[@]}" \
    --group-initial-rebalance-delay-ms "${TUSK_GROUP_DELAY_MS:-3000}" --log-level warn > "$work/tusk-$sc.log" 2>&1 &
  tusk_pid[$sc]=$!
  tusk_port[$sc]=$port
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
}
# The runner knows librdkafka's scenarios; Tusk's security ones run in "default".
runner_scenario() { case "$1" in sasl|acl) echo default ;; *) echo "$1" ;; esac; }
results="${COMPAT_RESULTS:-$root/target/compat}"
mkdir -p "$results"

pass=0; fail=0; skip=0
for item in $tests; do
  t=${item%@*}
  sc=default
  [ "$item" != "$t" ] && sc=${item#*@}
  start_tusk "$sc"
  echo "bootstrap.servers=127.0.0.1:${tusk_port[$sc]}" > "$src/tests/test.conf"
  # ACL tests run kafka-acls.sh (a JVM start, ~1.5 s) several times within timeouts sized for
  # librdkafka's CI, which adds 2 to the timeout multiplier (run.sh unsets CI): do the same.
  if [ "$sc" = acl ]; then
    printf 'test.timeout.multiplier=3\n' >> "$src/tests/test.conf"
  fi
  if [ "$sc" = sasl ]; then
    printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=testuser\nsasl.password=testpass\n' >> "$src/tests/test.conf"
  fi
  start=$(date +%s.%N)
  (cd "$src/tests" && unset CI && TESTS="$t" TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-3.9.0}" \
     BROKERS="127.0.0.1:${tusk_port[$sc]}" \
     LD_LIBRARY_PATH=../src:../src-cpp timeout -k 5 "${long_timeout[$t]:-$per_test_timeout}" stdbuf -oL ./test-runner -p1 -E -L -s "$(runner_scenario "$sc")" \
     > "$results/$t.log" 2>&1)
  rc=$?
  secs=$(python3 -c "import time; print(f'{time.time()-$start:.1f}')")
  verdict=$(python3 "$here/classify.py" "$results/$t.log" "$rc")
  echo "$t,$verdict,$secs"
  case "$verdict" in
    PASS) pass=$((pass+1)) ;;
    SKIP) skip=$((skip+1)) ;;
    *) fail=$((fail+1)) ;;
  esac
  if [ -z "${CALIBRATE_BOOTSTRAP:-}" ] && ! kill -0 "${tusk_pid[$sc]}" 2>/dev/null; then
    log "Tusk ($sc) died during test $t"; tail -20 "$work/tusk-$sc.log" >&2; exit 1
  fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
