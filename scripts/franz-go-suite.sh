#!/usr/bin/env bash
# franz-go's own integration tests (github.com/twmb/franz-go/pkg/kgo, the version pinned in
# tests/go/go.mod, from the Go module proxy) against a fresh Tusk. Known failures are listed in
# tests/go/franz-go.known with the reason; they are skipped in the run, then run on their own and
# must still fail (a known failure that starts passing is reported, so the list stays true).
set -euo pipefail
cd "$(dirname "$0")/.."
tusk_bin="${TUSK_BIN:-$(pwd)/target/release/tusk}"
[ -x "$tusk_bin" ] || cargo build --release --bin tusk
dir="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tusk_bin" --listen "127.0.0.1:$port" --data-dir "$dir/data" --group-initial-rebalance-delay-ms 0 \
    --log-level warn > "$dir/tusk.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.02; done

known=$(grep -v '^#' tests/go/franz-go.known | awk 'NF {print $1}' | paste -sd'|')
export KGO_SEEDS="127.0.0.1:$port" KGO_TEST_RF=1 KGO_TEST_RECORDS="${KGO_TEST_RECORDS:-50000}"
cd tests/go
echo "franz-go kgo suite against Tusk on $KGO_SEEDS (known failures skipped: $known)"
go test github.com/twmb/franz-go/pkg/kgo -count=1 -timeout 900s -skip "^($known)\$" -v 2>&1 \
    | tee "$dir/run.log" | grep -E '^(--- FAIL|FAIL|ok|panic)' || true
passed=$(grep -cE '^\s*--- PASS' "$dir/run.log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$dir/run.log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$dir/run.log" || true)
echo "franz-go: $passed passed, $failed failed, $skipped skipped by the suite itself"
[ "$failed" -eq 0 ] && grep -qE '^ok\s' "$dir/run.log" || { echo "franz-go suite failed; Tusk's log:"; tail -50 "$dir/tusk.log"; exit 1; }
if [ -n "$known" ]; then
    if go test github.com/twmb/franz-go/pkg/kgo -count=1 -timeout 300s -run "^($known)\$" >/dev/null 2>&1; then
        echo "a known franz-go failure passes now: remove it from tests/go/franz-go.known"
        exit 1
    fi
    echo "known failures still fail: $known"
fi
