#!/usr/bin/env bash
# Builds the `tusk:local` image without any base image: a statically linked binary in
# FROM scratch (compose/Dockerfile.scratch). With --binary-only (what `make test` runs, also
# where there is no Docker engine): builds the static binary, checks that it is static and that
# it starts, and stops there.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --bin tusk --target x86_64-unknown-linux-gnu --target-dir target/static
bin=target/static/x86_64-unknown-linux-gnu/release/tusk
if readelf -d "$bin" | grep -q NEEDED; then
  echo "build-image: $bin is dynamically linked; FROM scratch needs a static binary" >&2
  exit 1
fi
"$bin" --version
"$bin" --help >/dev/null
if [ "${1:-}" = "--binary-only" ]; then
  echo "static binary OK: $bin ($(du -h "$bin" | cut -f1))"
  exit 0
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp target/static/x86_64-unknown-linux-gnu/release/tusk "$ctx/tusk"
strip "$ctx/tusk" 2>/dev/null || true
docker build -q -f compose/Dockerfile.scratch -t tusk:local "$ctx"
echo "built tusk:local ($(du -h "$ctx/tusk" | cut -f1) binary)"
