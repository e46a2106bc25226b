#!/usr/bin/env bash
# Fetch path A/B: batches sent from the log files with sendfile (the default) against the same
# batches copied through the broker (--fetch-sendfile false), alternating, a fresh broker each
# run. Each run (benches/tusk_perf.rs, librdkafka) produces MESSAGES records of SIZE bytes to
# PARTITIONS partitions, then reads them all back 3 times with default consumer settings: the
# first read finds the batches on the device (Walrus writes with O_DIRECT, so nothing is in the
# page cache), the later ones in the page cache (the first read left them there). Prints and
# writes bench-results/fetch-path.md: medians over ROUNDS of consume MB/s (cold, warm) and the
# broker's CPU seconds for all three reads.
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
for r in $(seq 1 "$ROUNDS"); do
    for mode in true false; do
        out=$("$perf" --messages "$MESSAGES" --size "$SIZE" --partitions "$PARTITIONS" --acks 1 \
            --fsync 1000ms --consume-rounds 3 --broker-args "--fetch-sendfile $mode" \
            --csv "$work/e2e.csv" 2>&1)
        cold=$(sed -nE 's/^consume round 1: .* ([0-9.]+) MB\/s$/\1/p' <<<"$out")
        warm=$(sed -nE 's/^consume round [23]: .* ([0-9.]+) MB\/s$/\1/p' <<<"$out" | sort -n | head -1)
        cpu=$(sed -nE 's/^broker: cpu [0-9.]+ s producing, ([0-9.]+) s consuming.*/\1/p' <<<"$out")
        printf '%s\t%s\t%s\n' "$cold" "$warm" "$cpu" >> "$work/$mode.tsv"
        echo "round $r sendfile=$mode: consume cold $cold MB/s, warm $warm MB/s (slower of reads 2-3), broker CPU $cpu s for 3 reads" >&2
    done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
col() { cut -f"$2" "$work/$1.tsv" | median; }
{
    echo "| figure (median of $ROUNDS) | copied (--fetch-sendfile false) | sendfile | sendfile / copied |"
    echo "| --- | --- | --- | --- |"
    for f in "1:consume MB/s, batches on the device" "2:consume MB/s, batches in the page cache" "3:broker CPU s for the 3 reads"; do
        i=${f%%:*}
        a=$(col false "$i")
        b=$(col true "$i")
        printf '| %s | %s | %s | %.2f |\n' "${f#*:}" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print (a > 0) ? b / a : 0}')"
    done
    echo
    echo "$MESSAGES records of $SIZE bytes, $PARTITIONS partitions, acks=1, --fsync 1000ms; $(nproc) cores; $(date -u +%F)."
} | tee bench-results/fetch-path.md
