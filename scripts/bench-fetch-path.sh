#!/usr/bin/env bash
# Fetch path A/B/C, alternating, a fresh broker each run:
#   copied     batches copied through the broker, no read-ahead (the path before sendfile:
#              --fetch-sendfile false --fetch-read-ahead false)
#   sendfile   batches of >= 16 KiB sent from the log files with sendfile (--fetch-read-ahead false)
#   sendfile+ra  the default: sendfile, and the next two reads' worth read ahead (WILLNEED)
# Each run (benches/tusk_perf.rs, librdkafka) produces MESSAGES records of SIZE bytes to
# PARTITIONS partitions, then reads them all back 3 times with default consumer settings: the
# first read finds the batches on the device (Walrus writes with O_DIRECT, so nothing is in the
# page cache), the later ones in the page cache (the first read left them there). Prints and
# writes bench-results/fetch-path.md: medians over ROUNDS of consume MB/s (cold, warm) and the
# broker's CPU seconds for all three reads, with ratios to `copied`.
#
# Knobs: ROUNDS (3), MESSAGES (3000000), SIZE (1024), PARTITIONS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
MESSAGES="${MESSAGES:-3000000}"
SIZE="${SIZE:-1024}"
PARTITIONS="${PARTITIONS:-8}"
cargo build --release --bin tusk >/dev/null
perf=$(cargo bench --no-run --bench tusk_perf 2>&1 | sed -nE 's/.*Executable .*\((.*tusk_perf-[^)]*)\).*/\1/p' | tail -1)
[ -x "$perf" ] || { echo "tusk_perf not built" >&2; exit 1; }
work="$(pwd)/target/bench-fetch-path"
rm -rf "$work"
mkdir -p "$work"
names=(copied sendfile sendfile+ra)
flags=("--fetch-sendfile false --fetch-read-ahead false" "--fetch-read-ahead false" "")
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        mode=${names[$i]}
        out=$("$perf" --messages "$MESSAGES" --size "$SIZE" --partitions "$PARTITIONS" --acks 1 \
            --fsync 1000ms --consume-rounds 3 --broker-args "${flags[$i]}" \
            --csv "$work/e2e.csv" 2>&1)
        cold=$(sed -nE 's/^consume round 1: .* ([0-9.]+) MB\/s$/\1/p' <<<"$out")
        warm=$(sed -nE 's/^consume round [23]: .* ([0-9.]+) MB\/s$/\1/p' <<<"$out" | sort -n | head -1)
        cpu=$(sed -nE 's/^broker: cpu [0-9.]+ s producing, ([0-9.]+) s consuming.*/\1/p' <<<"$out")
        printf '%s\t%s\t%s\n' "$cold" "$warm" "$cpu" >> "$work/$mode.tsv"
        echo "round $r $mode: consume cold $cold MB/s, warm $warm MB/s (slower of reads 2-3), broker CPU $cpu s for 3 reads" >&2
    done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
col() { cut -f"$2" "$work/$1.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (a > 0) ? b / a : 0}'; }
{
    echo "| figure (median of $ROUNDS) | copied | sendfile | sendfile + read-ahead (default) | sendfile / copied | default / copied |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for f in "1:consume MB/s, batches on the device" "2:consume MB/s, batches in the page cache" "3:broker CPU s for the 3 reads"; do
        i=${f%%:*}
        a=$(col copied "$i")
        b=$(col sendfile "$i")
        c=$(col sendfile+ra "$i")
        echo "| ${f#*:} | $a | $b | $c | $(ratio "$a" "$b") | $(ratio "$a" "$c") |"
    done
    echo
    echo "$MESSAGES records of $SIZE bytes, $PARTITIONS partitions, acks=1, --fsync 1000ms; $(nproc) cores; $(date -u +%F)."
} | tee bench-results/fetch-path.md
