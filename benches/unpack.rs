//! Unpacking the demo's kernel source (the Linux tarball, xz, about 1.4 GB
//! and 84 000 members unpacked) with stagebuild's checked unpacker against
//! GNU tar, side by side (A B A B …) so that drift on a shared machine hits
//! both alike. Run with `cargo bench --bench unpack`; it prints the table
//! and writes it into docs/benchmarks.md. The tarball comes from the demo's
//! mirror (`STAGEBUILD_DEMO_MIRROR`, else `mirror/`; `stagebuild mirror
//! fetch --target demo` fills it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::median;

const ROUNDS: usize = 3;
const TARBALL: &str = "linux_6.1.4.orig.tar.xz";

fn tarball() -> PathBuf {
    let mirror = std::env::var_os("STAGEBUILD_DEMO_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("mirror"));
    let path = mirror.join("by-name").join(TARBALL);
    assert!(
        path.is_file(),
        "{} is missing: run `stagebuild mirror fetch --target demo` (or set STAGEBUILD_DEMO_MIRROR)",
        path.display()
    );
    path
}

/// A fresh, empty directory under `scratch`; the previous one is removed
/// first, outside the timing, and the dirty pages of the last round are
/// written out so they do not slow the next one down.
fn fresh(scratch: &Path) -> PathBuf {
    let dir = scratch.join("into");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    nix::unistd::sync();
    dir
}

fn stagebuild_unpack(tarball: &Path, scratch: &Path) -> Duration {
    let dir = fresh(scratch);
    let started = Instant::now();
    let mut unpacker = stagebuild::archive::Unpacker::new(&dir, u64::MAX).unwrap();
    unpacker.source(tarball, TARBALL).unwrap();
    started.elapsed()
}

fn gnu_tar(tarball: &Path, scratch: &Path) -> Duration {
    let dir = fresh(scratch);
    let started = Instant::now();
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(tarball)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

fn main() {
    let tarball = tarball();
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-unpack");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // The tarball into the page cache first, for both alike.
    fs::read(&tarball).unwrap();
    for _ in 0..ROUNDS {
        ours.push(stagebuild_unpack(&tarball, &scratch));
        theirs.push(gnu_tar(&tarball, &scratch));
    }
    let _ = fs::remove_dir_all(&scratch);
    let (ours, theirs) = (median(ours), median(theirs));
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    let table = format!(
        "### Unpacking\n\n\
         Measured {date} on {machine}; medians of {ROUNDS} interleaved rounds, from the page cache, \
         onto the same file system.\n\n\
         | figure | stagebuild | baseline | ratio | goal |\n\
         |---|---|---|---|---|\n\
         | unpack the Linux source ({TARBALL}, 84 000 members) | {:.1} s (the checked unpacker: every member beneath the build directory, no links out, no devices) | {:.1} s (`tar -xJf`, GNU tar) | {} | at least as fast as GNU tar |\n",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        if ratio >= 1.0 {
            format!("{ratio:.2}× faster")
        } else {
            format!("{:.2}× slower", 1.0 / ratio)
        },
        date = support::today(),
        machine = support::machine(),
    );
    support::write_section("unpack", &table);
}
