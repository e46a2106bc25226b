#!/usr/bin/env bash
# Apache Kafka as a test fixture: fetches the broker and tools jars from Maven Central (pinned
# version, cached under ~/.cache/tusk-kafka), formats a single-node KRaft data dir and runs a
# broker (combined broker + controller) on the given port.
#
#   scripts/kafka-fixture.sh fetch                       fetch the jars (idempotent)
#   scripts/kafka-fixture.sh start DIR PORT [k=v ...]    format DIR, start, wait until it answers
#   scripts/kafka-fixture.sh stop DIR                    stop the broker started in DIR
#   scripts/kafka-fixture.sh restart DIR                 start it again on DIR as left (no wait)
#   scripts/kafka-fixture.sh classpath                   print the classpath (for the tools)
#   scripts/kafka-fixture.sh tool CLASS [args ...]       run a Kafka tool class on that classpath
#
# Extra k=v arguments are broker configs appended to server.properties; the controller listens
# on KAFKA_CONTROLLER_PORT (default PORT + 1). The broker's log is
# DIR/kafka.log; its pid is DIR/kafka.pid.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TUSK_KAFKA_CACHE:-$HOME/.cache/tusk-kafka}/$KAFKA_VERSION"
libs="$cache/libs"

fetch() {
    if [ -f "$cache/.complete" ]; then
        return 0
    fi
    command -v mvn >/dev/null || { echo "kafka-fixture: mvn is needed to fetch Apache Kafka" >&2; exit 1; }
    mkdir -p "$libs"
    mvn -q -B -f "$here/tests/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
        -DoutputDirectory="$libs" -DincludeScope=runtime >&2
    # Two SLF4J APIs on one classpath: keep the 2.x the logging binding needs.
    find "$libs" -name 'slf4j-api-1.*.jar' -delete
    touch "$cache/.complete"
}

classpath() {
    fetch
    echo "$libs/*"
}

java_bin() {
    if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi
}

log4j_config() {
    local dir="$1"
    cat > "$dir/log4j2.yaml" <<'YAML'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
YAML
}

start() {
    local dir="$1" port="$2"
    shift 2
    fetch
    # The controller listens on KAFKA_CONTROLLER_PORT, else the next port.
    local ctl="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
    rm -rf "$dir"
    mkdir -p "$dir/data"
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    for kv in "$@"; do
        echo "$kv" >> "$dir/server.properties"
    done
    log4j_config "$dir"
    local java
    java="$(java_bin)"
    local opts=(-Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$dir/log4j2.yaml" -cp "$libs/*")
    "$java" "${opts[@]}" kafka.tools.StorageTool format \
        -t "$(cluster_id)" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
        || { cat "$dir/format.log" >&2; exit 1; }
    nohup "$java" "${opts[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
    echo $! > "$dir/kafka.pid"
    # Up when the broker answers on its port (60 s at most).
    for _ in $(seq 1 600); do
        if ! kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
            echo "kafka-fixture: the broker exited; its log:" >&2
            tail -50 "$dir/kafka.log" >&2
            exit 1
        fi
        if grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$dir/kafka.log" 2>/dev/null; then
            echo "kafka-fixture: Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port (dir $dir)" >&2
            return 0
        fi
        sleep 0.1
    done
    echo "kafka-fixture: the broker did not start within 60 s; its log:" >&2
    tail -50 "$dir/kafka.log" >&2
    exit 1
}

# Starts the broker again on DIR as it was left (no format), in the background: the caller
# decides when it is up (bench restarts time it).
restart() {
    local dir="$1"
    fetch
    local opts=(-Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$dir/log4j2.yaml" -cp "$libs/*")
    nohup "$(java_bin)" "${opts[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 &
    echo $! > "$dir/kafka.pid"
}

cluster_id() {
    # A fixed base64 UUID: the fixture's cluster id is stable from run to run.
    echo "VHVza0thZmthRml4dHVyZQ"
}

stop() {
    local dir="$1"
    [ -f "$dir/kafka.pid" ] || return 0
    local pid
    pid="$(cat "$dir/kafka.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/kafka.pid"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/kafka.pid"
}

tool() {
    local class="$1"
    shift
    fetch
    exec "$(java_bin)" -Xmx256m -cp "$libs/*" "$class" "$@"
}

case "${1:-}" in
    fetch) fetch ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    restart) shift; restart "$@" ;;
    classpath) classpath ;;
    tool) shift; tool "$@" ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
