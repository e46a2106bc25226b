#!/usr/bin/env bash
# Tusk vs Apache Kafka, the full side-by-side suite (issue #15, item 7): the same workloads
# against a Kafka 4.4.0 single node and a Tusk broker, client and broker on this machine,
# alternating Kafka and Tusk, a fresh broker (fresh data dir) for every run. The client is
# benches/tusk_perf.rs (librdkafka through the rdkafka crate) with --bootstrap; broker CPU
# seconds come from /proc/PID/stat, peak RSS from VmHWM.
#
#   throughput  1 KiB and 100 B records, acks=all, 8 partitions, DURATION s of producing
#               flat out, then consuming everything from the start (default client settings)
#   latency     1 KiB at fixed rates (1,000 and 10,000 msg/s) for LAT_DURATION s: p50/p99/p99.9
#   durable     1 KiB for DURATION s, Kafka with flush.messages=1 (log.flush.interval.messages)
#               against Tusk's --fsync sync-each: both acknowledge only fsynced writes
#   restart     DATA_GB GiB written, then the time until the broker answers Metadata with the
#               topic again, after a clean stop and after kill -9
#
# Knobs: ROUNDS (1), DURATION (60), LAT_DURATION (30), DATA_GB (10), PHASES ("throughput
# latency durable restart"). Writes bench-results/vs-kafka-full.csv (one row per run) and
# bench-results/vs-kafka-full.md (medians, Tusk/Kafka ratios, where Kafka wins;
# scripts/vs-kafka-table.py); `scripts/plot.py vs-kafka` draws bench-results/vs-kafka.png.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-1}"
DURATION="${DURATION:-60}"
LAT_DURATION="${LAT_DURATION:-30}"
DATA_GB="${DATA_GB:-10}"
PHASES="${PHASES:-throughput latency durable restart}"
work="$(pwd)/target/bench-vs-kafka-full"
fixture=./scripts/kafka-fixture.sh
tusk_bin="${TUSK_BIN:-$(pwd)/target/release/tusk}"
[ -x "$tusk_bin" ] || cargo build --release --bin tusk
cargo bench --bench tusk_perf --no-run >/dev/null 2>&1
perf_bin=$(ls -t target/release/deps/tusk_perf-* | grep -v '\.d$' | head -1)
port=19392
csv=bench-results/vs-kafka-full.csv
mkdir -p bench-results "$work"
echo "broker,workload,round,produce_msg_s,produce_mb_s,lat_p50_ms,lat_p99_ms,lat_p999_ms,consume_msg_s,consume_mb_s,cpu_s,rss_peak_mib,start_ms" > "$csv"

broker_pid=""
broker_name=""
cleanup() { stop_broker 9 || true; }
trap cleanup EXIT

cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }

# Until Metadata lists TOPIC with its partitions (or, without TOPIC, until the broker answers).
wait_ready() {
    local topic="${1:-}" deadline=$(( $(date +%s) + 600 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -z "$topic" ]; then
            kcat -b "127.0.0.1:$port" -L -m 2 >/dev/null 2>&1 && return 0
        elif kcat -b "127.0.0.1:$port" -L -t "$topic" -m 2 2>/dev/null | grep -q "partition 0,"; then
            return 0
        fi
        sleep 0.05
    done
    echo "broker did not become ready" >&2
    return 1
}

# start_broker NAME DIR FRESH [extra...]: Kafka (fixture) or Tusk on $port; sets broker_pid.
start_broker() {
    local name="$1" dir="$2" fresh="$3"
    shift 3
    broker_name="$name"
    if [ "$name" = kafka ]; then
        if [ "$fresh" = fresh ]; then
            KAFKA_CONTROLLER_PORT=$((port + 1)) $fixture start "$dir" "$port" "$@" >/dev/null 2>&1
        else
            KAFKA_CONTROLLER_PORT=$((port + 1)) $fixture restart "$dir" >/dev/null 2>&1
        fi
        broker_pid=$(cat "$dir/kafka.pid")
    else
        [ "$fresh" = fresh ] && rm -rf "$dir"
        mkdir -p "$dir"
        "$tusk_bin" --listen "127.0.0.1:$port" --data-dir "$dir/data" \
            --group-initial-rebalance-delay-ms 0 --num-partitions 8 --log-level warn "$@" \
            >> "$dir/tusk.log" 2>&1 &
        broker_pid=$!
        echo "$broker_pid" > "$dir/tusk.pid"
    fi
}

stop_broker() {
    local sig="${1:-15}"
    [ -n "$broker_pid" ] || return 0
    kill "-$sig" "$broker_pid" 2>/dev/null || true
    for _ in $(seq 1 600); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    broker_pid=""
}

# run NAME WORKLOAD ROUND DIR BROKER_ARGS PERF_ARGS...: a fresh broker, one tusk_perf run, a row.
run() {
    local name="$1" workload="$2" r="$3" dir="$4" bargs="$5"
    shift 5
    # The previous run's data goes first, so the start time does not include deleting it.
    rm -rf "$dir"
    local t0
    t0=$(now_ms)
    # shellcheck disable=SC2086
    start_broker "$name" "$dir" fresh $bargs
    wait_ready
    local start_ms=$(( $(now_ms) - t0 ))
    local cpu0
    cpu0=$(cpu_s "$broker_pid")
    local out="$work/$name-$workload-$r.csv"
    rm -f "$out"
    "$perf_bin" --bootstrap "127.0.0.1:$port" --label "$name $workload" --csv "$out" "$@" \
        > "$work/$name-$workload-$r.log" 2>&1 || { tail -20 "$work/$name-$workload-$r.log" >&2; }
    local cpu1 hwm
    cpu1=$(cpu_s "$broker_pid")
    hwm=$(hwm_mib "$broker_pid")
    stop_broker 15
    local cpu
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')
    # tusk_perf's columns: label,messages,size,partitions,acks,linger_ms,compression,fsync,
    # produce_msg_s,produce_mb_s,lat_p50_ms,lat_p99_ms,lat_p999_ms,lat_max_ms,consume_msg_s,
    # consume_mb_s,...
    tail -1 "$out" | awk -F, -v n="$name" -v w="$workload" -v r="$r" -v c="$cpu" -v h="$hwm" -v s="$start_ms" \
        '{printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", n, w, r, $9, $10, $11, $12, $13, $15, $16, c, h, s}' >> "$csv"
    echo "$(tail -1 "$csv")" >&2
}

# restart_run NAME ROUND: DATA_GB GiB in, then the time to serve again after a clean stop and
# after kill -9 (the data dir kept).
restart_run() {
    local name="$1" r="$2" dir="$work/$1-restart"
    local bargs=""
    start_broker "$name" "$dir" fresh
    wait_ready
    local msgs=$(( DATA_GB * 1024 * 1024 ))
    "$perf_bin" --bootstrap "127.0.0.1:$port" --label "$name fill" --csv "$work/$name-fill.csv" \
        --messages "$msgs" --size 1024 --partitions 8 --acks 1 --no-consume \
        > "$work/$name-fill-$r.log" 2>&1
    local topic
    topic=$(kcat -b "127.0.0.1:$port" -L 2>/dev/null | sed -nE 's/^ *topic "(tusk-perf[^"]*)".*/\1/p' | head -1)
    for how in clean kill9; do
        if [ "$how" = clean ]; then stop_broker 15; else stop_broker 9; fi
        local t0
        t0=$(now_ms)
        # shellcheck disable=SC2086
        start_broker "$name" "$dir" keep $bargs
        wait_ready "$topic"
        local ms=$(( $(now_ms) - t0 ))
        echo "$name,restart-$how-${DATA_GB}GiB,$r,,,,,,,,,$(hwm_mib "$broker_pid"),$ms" >> "$csv"
        echo "$(tail -1 "$csv")" >&2
    done
    stop_broker 15
    rm -rf "$dir"
}

for r in $(seq 1 "$ROUNDS"); do
    for phase in $PHASES; do
        for name in kafka tusk; do
            dir="$work/$name"
            case "$phase" in
                throughput)
                    run "$name" produce-1KiB "$r" "$dir" "" --duration "$DURATION" --size 1024 --partitions 8 --acks all
                    run "$name" produce-100B "$r" "$dir" "" --duration "$DURATION" --size 100 --partitions 8 --acks all
                    ;;
                latency)
                    for rate in 1000 10000; do
                        run "$name" "latency-${rate}msg_s" "$r" "$dir" "" --duration "$LAT_DURATION" --rate "$rate" \
                            --size 1024 --partitions 8 --acks all --no-consume
                    done
                    ;;
                durable)
                    if [ "$name" = kafka ]; then
                        run kafka durable-1KiB "$r" "$dir" "log.flush.interval.messages=1" --duration "$DURATION" --size 1024 --partitions 8 --acks all --no-consume
                    else
                        run tusk durable-1KiB "$r" "$dir" "--fsync sync-each" --duration "$DURATION" --size 1024 --partitions 8 --acks all --no-consume
                    fi
                    ;;
                restart)
                    restart_run "$name" "$r"
                    ;;
            esac
        done
    done
done

rm -rf "$work/kafka" "$work/tusk"
python3 scripts/vs-kafka-table.py "$csv" | tee bench-results/vs-kafka-full.md
