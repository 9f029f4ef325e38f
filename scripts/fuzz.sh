#!/usr/bin/env bash
# Runs every fuzz test binary in release mode, each property for SECONDS
# (default 180), and prints each property's runs and failures at the end.
# A fuzz test file that does not exist yet is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-180}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0
for test in fuzz_parsers fuzz_unpack; do
    if [ ! -f "tests/$test.rs" ]; then
        echo "skipping $test: tests/$test.rs does not exist"
        continue
    fi
    echo "== $test: ${seconds}s per property"
    if ! STAGEBUILD_FUZZ_SECONDS="$seconds" cargo test --release --test "$test" \
        -- --nocapture --test-threads 1 2>&1 | tee "$logs/$test.log"; then
        status=1
    fi
done
echo "== figures (${seconds}s per property)"
cat "$logs"/*.log 2>/dev/null | grep -o 'fuzz [A-Za-z0-9_]*: [0-9]* runs, [0-9]* failures' || true
exit "$status"
