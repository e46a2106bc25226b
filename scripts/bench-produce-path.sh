#!/usr/bin/env bash
# The produce path, old against new, in one run (issue #14): the disk measured with fio first,
# then each workload on a fresh broker per run, the configurations alternating for ROUNDS
# rounds, medians reported. Client: benches/tusk_perf.rs (librdkafka through the rdkafka crate).
#
#   old       --produce-max-group 1 --storage-writes pwrite  (one storage write per client batch,
#             buffered pwrite: the path before #14)
#   fallback  --storage-writes pwrite                        (coalesced, buffered pwrite: what a
#             machine without io_uring or O_DIRECT gets)
#   new       defaults (coalesced batch appends, O_DIRECT through io_uring where the probe works)
#
# Workloads (the issue's):
#   A  8 producers to 1 partition, acks=all, --fsync sync-each, 1 KiB, linger 0, batch.size 16384
#   B  1 producer, 8 partitions, acks=all, --fsync 1000ms, 1 KiB, sustained DURATION seconds
#   C  10,000 msg/s, 1 partition, linger 0, --fsync sync-each, 1 KiB, RATE_SECONDS seconds
#
# Knobs: ROUNDS (3), A_MESSAGES (200000), DURATION (60), RATE_SECONDS (10), BENCH_DIR (where
# broker data and the fio file go; default target/). Writes bench-results/produce-path.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
A_MESSAGES="${A_MESSAGES:-200000}"
DURATION="${DURATION:-60}"
RATE_SECONDS="${RATE_SECONDS:-10}"
BENCH_DIR="${BENCH_DIR:-$(pwd)/target/bench-produce-path}"
mkdir -p "$BENCH_DIR" bench-results
export TUSK_BENCH_DIR="$BENCH_DIR"
command -v fio >/dev/null || { echo "fio is needed: apt-get install fio" >&2; exit 1; }
cargo build --release --bin tusk >/dev/null 2>&1
cargo bench --bench tusk_perf --no-run >/dev/null 2>&1
work="$BENCH_DIR/runs"
rm -rf "$work"
mkdir -p "$work"

# ---- the disk ----
fiofile="$BENCH_DIR/fio.test"
fio_json() { fio --filename="$fiofile" --output-format=json "$@" 2>/dev/null; }
seq_mb=$(fio_json --name=seq --size=2G --bs=1M --rw=write --direct=1 --ioengine=io_uring --iodepth=8 |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['jobs'][0]['write']['bw']/1024))")
read -r fsync_p50 fsync_p99 < <(fio_json --name=fsync --size=64M --bs=4k --rw=write --direct=1 \
    --fsync=1 --ioengine=sync | python3 -c "
import json,sys; p=json.load(sys.stdin)['jobs'][0]['sync']['lat_ns']['percentile']
print(round(p['50.000000']/1000), round(p['99.000000']/1000))")
rm -f "$fiofile"
echo "disk: O_DIRECT sequential 1 MiB writes $seq_mb MB/s; 4 KiB write + fsync: fsync p50 $fsync_p50 us, p99 $fsync_p99 us" >&2

declare -A CFG=(
    [old]="--produce-max-group 1 --storage-writes pwrite"
    [fallback]="--storage-writes pwrite"
    [new]=""
)

# One run: workload name, config name, tusk_perf options. Appends the figures (msg/s, MB/s,
# p50 ms, p99 ms, fsyncs per record, batches per append, broker CPU s producing, write path)
# as one tab-separated line to $work/<workload>-<config>.tsv.
run() {
    local w="$1" c="$2"
    shift 2
    local out
    out=$(cargo bench --bench tusk_perf -- "$@" --no-consume --broker-args "${CFG[$c]}" \
        --label "$w-$c" --csv "$work/e2e.csv" 2>&1)
    local p s b
    p=$(grep '^produce:' <<<"$out")
    s=$(grep '^storage:' <<<"$out")
    b=$(grep '^broker:' <<<"$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$(sed -E 's/produce: ([0-9]+) msg.*/\1/' <<<"$p")" \
        "$(sed -E 's/.* msg\/s, ([0-9.]+) MB.*/\1/' <<<"$p")" \
        "$(sed -E 's/.*p50 ([0-9.]+) .*/\1/' <<<"$p")" \
        "$(sed -E 's/.*p99 ([0-9.]+) p99.9.*/\1/' <<<"$p")" \
        "$(sed -E 's/.*\(([0-9.]+) per record\).*/\1/' <<<"$s")" \
        "$(sed -E 's/.*\(([0-9.]+) per append\).*/\1/' <<<"$s")" \
        "$(sed -E 's/broker: cpu ([0-9.]+) s producing.*/\1/' <<<"$b")" \
        "$(sed -E 's/storage: writes ([a-z_]+);.*/\1/' <<<"$s")" >> "$work/$w-$c.tsv"
    echo "$w $c: $p | $s | $b" >&2
}

A=(--producers 8 --partitions 1 --size 1024 --messages "$A_MESSAGES" --linger-ms 0 --batch-size 16384 --fsync sync-each)
B=(--producers 1 --partitions 8 --size 1024 --duration "$DURATION" --linger-ms 5 --fsync 1000ms)
C=(--producers 1 --partitions 1 --size 1024 --rate 10000 --duration "$RATE_SECONDS" --linger-ms 0 --fsync sync-each)
for r in $(seq 1 "$ROUNDS"); do
    for c in old fallback new; do run A "$c" "${A[@]}"; done
    for c in old fallback new; do run B "$c" "${B[@]}"; done
    for c in old fallback new; do run C "$c" "${C[@]}"; done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { cut -f"$2" "$work/$1.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
path() { cut -f8 "$work/$1.tsv" | sort -u | tr '\n' ' '; }

{
echo "Disk (fio, same run): O_DIRECT sequential 1 MiB writes at queue depth 8: **$seq_mb MB/s**;"
echo "4 KiB O_DIRECT write + fsync each: fsync p50 **$fsync_p50 µs**, p99 **$fsync_p99 µs**."
echo
echo "**A. 8 producers → 1 partition, acks=all, --fsync sync-each, 1 KiB, linger 0, batch.size 16384** ($A_MESSAGES messages, median of $ROUNDS)"
echo
echo "| figure | old | fallback (coalesced, pwrite) | new | new / old |"
echo "| --- | --- | --- | --- | --- |"
for spec in "1:messages/s" "3:latency p50 ms" "4:latency p99 ms" "5:fsyncs per record" "6:client batches per storage append" "7:broker CPU s"; do
    i="${spec%%:*}"; label="${spec#*:}"
    o=$(col A-old "$i"); f=$(col A-fallback "$i"); n=$(col A-new "$i")
    echo "| $label | $o | $f | $n | $(ratio "$n" "$o") |"
done
echo "| write path | $(path A-old) | $(path A-fallback) | $(path A-new) | |"
echo
echo "**B. 1 producer, 8 partitions, acks=all, --fsync 1000ms, 1 KiB, sustained ${DURATION} s** (median of $ROUNDS)"
echo
echo "| figure | old | fallback (coalesced, pwrite) | new | new / old |"
echo "| --- | --- | --- | --- | --- |"
for spec in "2:MB/s" "3:latency p50 ms" "4:latency p99 ms" "6:client batches per storage append"; do
    i="${spec%%:*}"; label="${spec#*:}"
    o=$(col B-old "$i"); f=$(col B-fallback "$i"); n=$(col B-new "$i")
    echo "| $label | $o | $f | $n | $(ratio "$n" "$o") |"
done
share() { ratio "$(col "$1" 2)" "$seq_mb"; }
per_gb() { awk -v c="$(col "$1" 7)" -v m="$(col "$1" 2)" -v d="$DURATION" 'BEGIN { printf "%.2f", c / (m * d / 1000) }'; }
echo "| share of fio's O_DIRECT bandwidth | $(share B-old) | $(share B-fallback) | $(share B-new) | |"
echo "| broker CPU s per GB | $(per_gb B-old) | $(per_gb B-fallback) | $(per_gb B-new) | $(ratio "$(per_gb B-new)" "$(per_gb B-old)") |"
echo "| write path | $(path B-old) | $(path B-fallback) | $(path B-new) | |"
echo
echo "**C. 10,000 msg/s, 1 partition, linger 0, --fsync sync-each, 1 KiB, ${RATE_SECONDS} s** (median of $ROUNDS)"
echo
echo "| figure | old | fallback (coalesced, pwrite) | new | new / old |"
echo "| --- | --- | --- | --- | --- |"
for spec in "3:latency p50 ms" "4:latency p99 ms" "5:fsyncs per record" "7:broker CPU s"; do
    i="${spec%%:*}"; label="${spec#*:}"
    o=$(col C-old "$i"); f=$(col C-fallback "$i"); n=$(col C-new "$i")
    echo "| $label | $o | $f | $n | $(ratio "$n" "$o") |"
done
vs_fio() { ratio "$(awk -v x="$(col "$1" 4)" 'BEGIN{print x*1000}')" "$fsync_p99"; }
echo "| p99 / fio fsync p99 | $(vs_fio C-old) | $(vs_fio C-fallback) | $(vs_fio C-new) | |"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(df -T "$BENCH_DIR" | awk 'NR==2 {print $2}') on $(df "$BENCH_DIR" | awk 'NR==2 {print $1}'); client and broker share the cores. Command: \`make bench-produce-path\` (ROUNDS=$ROUNDS)."
} | tee bench-results/produce-path.md
