#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to the demo: installs what is
# needed, builds stagebuild, fetches the demo's real sources and builds the
# demo target. Run it again and it resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked
sb=target/release/stagebuild

$sb mirror fetch --target demo
if [ -d state/targets ]; then
    $sb run --target demo --resume
else
    $sb run --target demo
fi
$sb plan --target demo
echo
echo "The demo's static busybox, run in a sandbox that holds nothing else:"
busybox=$(find state/checkpoints -path '*/tree/bin/busybox' -type f | head -n 1)
bwrap --ro-bind "$busybox" /busybox --proc /proc --dev /dev --unshare-all /busybox echo ok
