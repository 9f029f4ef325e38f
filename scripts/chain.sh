#!/usr/bin/env bash
# Builds the azurelinux chain (part 1) from real sources, up to and across
# the kexec hop: hours on two cores (docs/chain.md). Installs what is
# needed, builds stagebuild, fetches the chain's sources and runs the
# target with its guest stages in the sandbox; run it again and it resumes
# where it stopped. STATE and MIRROR choose where checkpoints and sources
# live (default: state/ and mirror/ in the checkout); GUEST=qemu runs the
# guest stages in qemu instead. Extra arguments go to `run`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked
sb=(target/release/stagebuild --state "${STATE:-state}" --mirror "${MIRROR:-mirror}")

"${sb[@]}" mirror fetch --target azurelinux
# --resume also starts an empty state.
"${sb[@]}" run --target azurelinux --guest "${GUEST:-sandbox}" --resume "$@"
"${sb[@]}" plan --target azurelinux
