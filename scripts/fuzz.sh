#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, each for FUZZ_SECONDS (default 600), on the
# stable toolchain (RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo-fuzz passes). Crashes land
# in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
secs=${FUZZ_SECONDS:-600}
for t in ${FUZZ_TARGETS:-records bodies decode}; do
  echo "== fuzz $t for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- -max_total_time="$secs" -malloc_limit_mb=1024 -rss_limit_mb=2048 -print_final_stats=1
done
