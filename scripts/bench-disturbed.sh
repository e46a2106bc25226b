#!/usr/bin/env bash
# Produce latency while the broker does slow storage work for someone else: 10,000 msg/s of
# 1 KiB (linger 0, acks=all, 8 partitions, --fsync sync-each) from the rdkafka load tool, while
# another client creates topics of 8 partitions, 10 a second (each partition takes a Walrus
# block, so a new 1000 MiB log file is needed every ~12 topics; each creation fsyncs the
# catalog). Runs the broker built from OLD_REV (default: the last commit before blocking work
# moved off the async workers) and this tree's, alternating, RUNS times each, and appends to
# bench-results/disturbed.csv. The old broker is built in target/old-rev (a git worktree of
# this repository).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD_REV=${OLD_REV:-df99d11}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-100000}
mkdir -p bench-results
if [ ! -x target/old-rev/bin/tusk ]; then
  rm -rf target/old-rev/src
  git worktree add -f --detach target/old-rev/src "$OLD_REV" >/dev/null
  (cd target/old-rev/src && CARGO_TARGET_DIR=../target cargo build -q --release --bin tusk)
  mkdir -p target/old-rev/bin
  cp target/old-rev/target/release/tusk target/old-rev/bin/tusk
  git worktree remove --force target/old-rev/src
fi
cargo build -q --release --bin tusk
cargo bench -q --bench tusk_perf --no-run >/dev/null 2>&1 || true
csv=bench-results/disturbed.csv
[ -f "$csv" ] || echo "label,disturbance,msgs_per_s,p50_ms,p99_ms,p999_ms,max_ms,errors" > "$csv"
one() { # label bin disturb
  local label=$1 bin=$2 disturb=$3 dir port pid dpid=""
  dir=$(mktemp -d) port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$bin" --listen 127.0.0.1:$port --data-dir "$dir/data" --fsync sync-each --log-level warn >"$dir/log" 2>&1 &
  pid=$!
  until python3 -c "import socket;socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; do sleep 0.05; done
  if [ "$disturb" = topics ]; then
    python3 - "$port" <<'PY' &
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}"})
end = time.time() + 25
i = 0
while time.time() < end:
    a.create_topics([NewTopic(f"disturb-{i}", num_partitions=8, replication_factor=1)])
    i += 1
    time.sleep(0.1)
PY
    dpid=$!
  fi
  local out
  out=$(cargo bench -q --bench tusk_perf -- --bootstrap 127.0.0.1:$port --messages "$MESSAGES" --size 1024 \
        --partitions 8 --acks all --linger-ms 0 --rate 10000 --label "$label" --csv "$dir/e2e.csv" 2>&1 | grep '^produce:')
  if [ -n "$dpid" ]; then kill "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  # produce: N msg/s, X MB/s; latency ms p50 a p99 b p99.9 c max d; errors e
  echo "$out" | sed -E 's/produce: ([0-9.]+) msg\/s.*p50 ([0-9.]+) p99 ([0-9.]+) p99.9 ([0-9.]+) max ([0-9.]+); errors ([0-9]+).*/\1,\2,\3,\4,\5,\6/' \
    | sed "s/^/$label,$disturb,/" | tee -a "$csv"
}
for r in $(seq "$RUNS"); do
  for d in none topics; do
    one "old $OLD_REV" target/old-rev/bin/tusk "$d"
    one "new" target/release/tusk "$d"
  done
done
echo "CSV: $csv"
