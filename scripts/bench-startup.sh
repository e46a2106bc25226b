#!/usr/bin/env bash
# Broker start time holding data: produces MESSAGES x 1 KiB (default 2,000,000, ~2 GiB) to 8
# partitions with the load tool, then restarts Tusk three ways and records the start time
# (the `startup_ms` of its start line) and how many batches it had to scan:
#   clean      after SIGTERM (partition snapshots saved at shutdown)
#   crash      after kill -9 with MORE records appended since the last snapshot
#   cold       as clean, with the page cache dropped first (root only; skipped otherwise)
# Appends rows to bench-results/startup.csv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
messages="${MESSAGES:-2000000}"
bin="$root/target/release/tusk"
[ -x "$bin" ] || cargo build --release --bin tusk
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$data/tusk.log"
start() {
  : > "$log"
  "$bin" --listen "127.0.0.1:$port" --data-dir "$data/d" --log-level info >> "$log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q startup_ms "$log" && return 0; sleep 0.1; done
  echo "tusk did not start" >&2; exit 1
}
field() { sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -oE "$1=[0-9]+" | tail -1 | cut -d= -f2; }
record() {
  echo "$1,$(du -sb "$data/d" | cut -f1),$(field startup_ms),$(field batches_scanned),$(field from_snapshots)" >> bench-results/startup.csv
  echo "$1: start $(field startup_ms) ms, batches scanned $(field batches_scanned)"
}
mkdir -p bench-results
[ -f bench-results/startup.csv ] || echo "case,bytes,startup_ms,batches_scanned,partitions_from_snapshots" > bench-results/startup.csv
start
cargo bench -q --bench tusk_perf -- --bootstrap "127.0.0.1:$port" --messages "$messages" --size 1024 \
  --partitions 8 --csv "$data/e2e.csv" >/dev/null
kill -TERM $pid; wait $pid || true
start; record clean
kill -TERM $pid; wait $pid || true
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then start; record cold; kill -TERM $pid; wait $pid || true; fi
start
cargo bench -q --bench tusk_perf -- --bootstrap "127.0.0.1:$port" --messages $((messages / 10)) --size 1024 \
  --partitions 8 --csv "$data/e2e.csv" >/dev/null
kill -KILL $pid; wait $pid 2>/dev/null || true
start; record crash
kill -TERM $pid; wait $pid || true
rm -rf "$data"
