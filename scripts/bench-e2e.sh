#!/usr/bin/env bash
# The end-to-end benchmark table of BENCHMARKS.md: each row a fresh Tusk and the rdkafka load tool.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
rm -f bench-results/e2e.csv
run() { cargo bench -q --bench tusk_perf -- "$@"; }
run --label "1KiB acks=all 1s-fsync" --messages "${E2E_MESSAGES:-1000000}" --size 1024 --partitions 8 --acks all --fsync 1000ms
run --label "100B acks=all 1s-fsync" --messages "${E2E_SMALL_MESSAGES:-3000000}" --size 100 --partitions 8 --acks all --fsync 1000ms
run --label "latency 10k/s linger0 1s-fsync" --messages 100000 --size 1024 --partitions 8 --acks all --linger-ms 0 --rate 10000 --fsync 1000ms
run --label "latency 10k/s linger0 sync-each" --messages 100000 --size 1024 --partitions 8 --acks all --linger-ms 0 --rate 10000 --fsync sync-each
echo "CSV: bench-results/e2e.csv"
