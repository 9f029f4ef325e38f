#!/usr/bin/env bash
# Runs every test, the slow ones (a real demo build) included. Installs what
# the tests need first, and fills the mirror with the demo's real sources.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
# Formatting and lints first: they fail in seconds, before the long tests.
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked
target/debug/stagebuild mirror fetch --target demo
# The azurelinux chain takes hours (docs/chain.md), so CI does not build it:
# it fetches and verifies its sources (about 160 MB more than the demo's)
# and plans it, which loads every step file, patch and lock entry it uses.
target/debug/stagebuild mirror fetch --target azurelinux
target/debug/stagebuild plan --target azurelinux
cargo test --locked -- --include-ignored
