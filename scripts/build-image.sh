#!/usr/bin/env bash
# Builds the `tusk:local` image without any base image: a statically linked binary in
# FROM scratch (compose/Dockerfile.scratch).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --bin tusk --target x86_64-unknown-linux-gnu --target-dir target/static
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp target/static/x86_64-unknown-linux-gnu/release/tusk "$ctx/tusk"
strip "$ctx/tusk" 2>/dev/null || true
docker build -q -f compose/Dockerfile.scratch -t tusk:local "$ctx"
echo "built tusk:local ($(du -h "$ctx/tusk" | cut -f1) binary)"
