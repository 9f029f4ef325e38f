//! `stagebuild init [DIR]`: a new project whose first `plan` and `run` work.
//! Its example step builds a small C program from a tarball that `init`
//! writes itself, pins in `sources.lock` and places in the mirror, so the
//! first run needs no network.

use std::fs;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;
use crate::lock::Lock;
use crate::mirror::Mirror;

/// The example's clock: every file in its tarball carries this date, and
/// the target passes it to the build as SOURCE_DATE_EPOCH.
const EPOCH: u64 = 1_672_531_200;
const TARBALL: &str = "hello-1.0.tar.gz";

const HELLO_C: &str = r#"#include <stdio.h>

int main(void)
{
    puts("hello, world");
    return 0;
}
"#;

const MAKEFILE: &str = "CC ?= cc\nCFLAGS ?= -O2\nPREFIX ?= /usr/local\n\nhello: hello.c\n\t$(CC) $(CFLAGS) -o $@ hello.c\n\ninstall: hello\n\tinstall -D -m 755 hello $(DESTDIR)$(PREFIX)/bin/hello\n";

const STEP: &str = r#"# A step: one package, built in a sandbox with no network. Its sources are
# unpacked into the build directory; the phases run in order from `workdir`
# and install into $OUT, which becomes the step's checkpoint.
# `stagebuild schema step` prints the JSON Schema of this format.
name: hello
version: "1.0"
description: |
  A C program that prints a greeting, built with the host's compiler from
  its release tarball and installed as /usr/bin/hello. The smallest step
  that has every part: a pinned source, a workdir, and the build and
  install phases.
sources:
  - hello-1.0.tar.gz
workdir: hello-1.0
build: |
  make CC=cc
install: |
  make install DESTDIR="$OUT" PREFIX=/usr
"#;

const TARGET: &str = r#"# A target: the stages to build, in order, each with its runner and steps.
# `stagebuild schema target` prints the JSON Schema of this format.
name: main
description: The example step, on the host.
# Every build sees this as SOURCE_DATE_EPOCH, so that dates in its output
# do not depend on when it ran.
source_date_epoch: 1672531200
stages:
  - name: host
    runner: host
    steps:
      - hello
"#;

const LOCK_HEADER: &str = r#"# Every source file a step may use, pinned by sha256 and size: urls (upstream
# first) and, where a distribution carries it, an apt source. Add one with
# `stagebuild lock add URL`, `stagebuild lock add FILE --url URL` or
# `stagebuild lock add --apt PKG=VERSION`.
#
# hello-1.0.tar.gz was made by `stagebuild init` and lives only in mirror/;
# its URL is a placeholder. Replace it with the sources of your own steps.
version: 1
sources:
"#;

const PATCHES_README: &str = "Patches a step applies, in the order its `patches:` lists them:\npatches/STEP/NAME.patch, made with `diff -u` (or `git diff`) from the\ntop of the step's workdir.\n";

const FILES_README: &str = "Files a step copies into its build directory before its phases run:\nfiles/STEP/NAME, listed in the step's `files:`.\n";

const GITIGNORE: &str = "/state/\n/mirror/\n";

/// Writes the project into `dir` and its example source into `mirror`.
pub fn run(dir: &Path, mirror: &Path) -> Result<()> {
    if dir.join("sources.lock").exists() || dir.join("steps").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a project; init writes only new ones",
            dir.display()
        )));
    }
    let tarball = hello_tarball()?;
    let sha256 = hex::encode(Sha256::digest(&tarball));
    let lock = format!(
        "{LOCK_HEADER}\n  - name: {TARBALL}\n    sha256: {sha256}\n    size: {}\n    urls:\n      - https://example.org/{TARBALL}\n",
        tarball.len()
    );
    let files: [(&str, &str); 6] = [
        ("steps/hello.yaml", STEP),
        ("steps/targets/main.yaml", TARGET),
        ("sources.lock", &lock),
        ("patches/README", PATCHES_README),
        (".gitignore", GITIGNORE),
        ("files/README", FILES_README),
    ];
    // Nothing already there is replaced, not even a .gitignore.
    if let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
        return Err(Error::Usage(format!(
            "{} exists; init writes only new files (move it aside, or write the project elsewhere)",
            dir.join(name).display()
        )));
    }
    for (name, text) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("a file in the project"))
            .io_context(|| format!("creating {}", path.display()))?;
        atomic_write(&path, text.as_bytes())?;
    }

    let mirror = Mirror::new(mirror.to_path_buf());
    let lock = Lock::load(&dir.join("sources.lock"))?;
    let entry = lock.get(TARBALL).expect("written above");
    let tmp = tempfile::NamedTempFile::new_in(mirror.tmp_dir()?)
        .io_context(|| "creating a temporary file in the mirror")?;
    fs::write(tmp.path(), &tarball).io_context(|| format!("writing {}", tmp.path().display()))?;
    mirror.adopt(entry, tmp.path())?;

    println!("a new project in {}:", dir.display());
    for (name, _) in files {
        println!("  {name}");
    }
    println!("and {TARBALL} in the mirror {}", mirror.root.display());
    let project = if dir == Path::new(".") {
        String::new()
    } else {
        format!("--project {} ", dir.display())
    };
    println!(
        "next: stagebuild {project}plan --target main, then stagebuild {project}run --target main"
    );
    Ok(())
}

/// The example's source: a gzip'd tarball whose bytes depend on nothing but
/// its contents (fixed owners, modes, dates and order; no gzip timestamp).
fn hello_tarball() -> Result<Vec<u8>> {
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gzip);
    let entries: [(&str, &[u8], u32); 3] = [
        ("hello-1.0/", b"", 0o755),
        ("hello-1.0/Makefile", MAKEFILE.as_bytes(), 0o644),
        ("hello-1.0/hello.c", HELLO_C.as_bytes(), 0o644),
    ];
    for (name, data, mode) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(EPOCH);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, name, data)
            .io_context(|| "making the example tarball")?;
    }
    let mut gzip = tar
        .into_inner()
        .io_context(|| "making the example tarball")?;
    gzip.flush().io_context(|| "making the example tarball")?;
    gzip.finish().io_context(|| "making the example tarball")
}
