#!/usr/bin/env bash
# Tusk vs Apache Kafka, side by side in one run: Kafka's own kafka-producer-perf-test and
# kafka-consumer-perf-test (from the fixture's jars) against a Kafka 4.4.0 single node and a Tusk
# broker on this machine, alternating the two for ROUNDS rounds. Prints, per broker, the median
# of each figure and Tusk/Kafka ratios as a Markdown table, also written to
# bench-results/vs-kafka.md (BENCHMARKS.md includes it).
#
# Knobs: ROUNDS (3), RECORDS (500000), SIZE (100 bytes), PARTITIONS (3), ACKS (all),
# TUSK_FSYNC (1000ms, Tusk's default; Kafka's default is to leave flushing to the OS).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
RECORDS="${RECORDS:-500000}"
SIZE="${SIZE:-100}"
PARTITIONS="${PARTITIONS:-3}"
ACKS="${ACKS:-all}"
TUSK_FSYNC="${TUSK_FSYNC:-1000ms}"
work="$(pwd)/target/bench-vs-kafka"
fixture=./scripts/kafka-fixture.sh
tusk_bin="${TUSK_BIN:-$(pwd)/target/release/tusk}"
[ -x "$tusk_bin" ] || cargo build --release --bin tusk
kport=19192
tport=19292

rm -rf "$work"
mkdir -p "$work"
cleanup() {
    $fixture stop "$work/kafka" || true
    [ -n "${tusk_pid:-}" ] && kill "$tusk_pid" 2>/dev/null || true
}
trap cleanup EXIT

start_ms=$(date +%s%3N)
$fixture start "$work/kafka" "$kport" >/dev/null 2>&1
kafka_start_ms=$(( $(date +%s%3N) - start_ms ))
start_ms=$(date +%s%3N)
# The fixture runs Kafka with group.initial.rebalance.delay.ms=0; Tusk gets the same.
"$tusk_bin" --listen "127.0.0.1:$tport" --data-dir "$work/tusk" --fsync "$TUSK_FSYNC" \
    --group-initial-rebalance-delay-ms 0 --log-level warn > "$work/tusk.log" 2>&1 &
tusk_pid=$!
until (exec 3<>/dev/tcp/127.0.0.1/$tport) 2>/dev/null; do sleep 0.01; done
tusk_start_ms=$(( $(date +%s%3N) - start_ms ))
kafka_pid=$(cat "$work/kafka/kafka.pid")

rss_mib() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }

# One round on one broker: produce then consume a fresh topic; appends one line of figures
# (produce rec/s, produce MB/s, p50 ms, p99 ms, consume rec/s, consume MB/s) to $work/$name.tsv.
round() {
    local name="$1" port="$2" r="$3" topic="bench-$3"
    local bs="127.0.0.1:$port"
    $fixture tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create \
        --topic "$topic" --partitions "$PARTITIONS" --replication-factor 1 >/dev/null
    local p
    p=$($fixture tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
        --num-records "$RECORDS" --record-size "$SIZE" --throughput -1 \
        --producer-props "bootstrap.servers=$bs" "acks=$ACKS" 2>/dev/null | tail -1)
    # "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
    #  P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
    local prs pmb p50 p99
    prs=$(sed -E 's/.* sent, ([0-9.]+) records\/sec.*/\1/' <<<"$p")
    pmb=$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$p")
    p50=$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$p")
    p99=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$p")
    local c
    c=$($fixture tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" \
        --topic "$topic" --messages "$RECORDS" --timeout 60000 2>/dev/null | grep -E '^[0-9]' | tail -1)
    # start, end, MB, MB/sec, records, records/sec, rebalance ms, fetch ms, fetch MB/sec,
    # fetch records/sec: the fetch figures leave the group join out.
    local cmb crs
    cmb=$(cut -d, -f9 <<<"$c" | tr -d ' ')
    crs=$(cut -d, -f10 <<<"$c" | tr -d ' ')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$prs" "$pmb" "$p50" "$p99" "$crs" "$cmb" >> "$work/$name.tsv"
    echo "round $r $name: produce $prs rec/s ($pmb MB/s, p50 $p50 ms, p99 $p99 ms), consume $crs rec/s ($cmb MB/s)" >&2
}

for r in $(seq 1 "$ROUNDS"); do
    round kafka "$kport" "$r"
    round tusk "$tport" "$r"
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { cut -f"$2" "$work/$1.tsv" | median; }
kafka_rss=$(rss_mib "$kafka_pid")
tusk_rss=$(rss_mib "$tusk_pid")

mkdir -p bench-results
{
echo "| figure (median of $ROUNDS) | Apache Kafka 4.4.0 | Tusk (--fsync $TUSK_FSYNC) | Tusk / Kafka |"
echo "| --- | --- | --- | --- |"
for spec in "1:produce records/s" "2:produce MB/s" "3:produce p50 latency ms" "4:produce p99 latency ms" "5:consume records/s (fetch time)" "6:consume MB/s (fetch time)"; do
    i="${spec%%:*}"
    label="${spec#*:}"
    k=$(col kafka "$i")
    t=$(col tusk "$i")
    ratio=$(awk -v k="$k" -v t="$t" 'BEGIN { if (k > 0) printf "%.2f", t / k; else print "-" }')
    echo "| $label | $k | $t | $ratio |"
done
echo "| resident memory after the run (MiB) | $kafka_rss | $tusk_rss | $(awk -v k="$kafka_rss" -v t="$tusk_rss" 'BEGIN { printf "%.2f", t / k }') |"
echo "| start until the port answers (ms) | $kafka_start_ms (incl. format) | $tusk_start_ms | $(awk -v k="$kafka_start_ms" -v t="$tusk_start_ms" 'BEGIN { printf "%.3f", t / k }') |"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2/1048576}' /proc/meminfo), $(uname -r); $RECORDS records of $SIZE B, $PARTITIONS partitions, acks=$ACKS, clients: Kafka's perf tools (kafka-clients 4.4.0)."
} | tee bench-results/vs-kafka.md
