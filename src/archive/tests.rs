use super::*;

fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().unwrap()
}

fn header(kind: EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h
}

/// Writes raw names, which `Builder::append_data` would refuse.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: EntryType,
    name: &str,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = header(kind, data.len() as u64);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<(), ArchiveError>) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("build")).unwrap();
    let result = unpack_tar(bytes, &dir.path().join("build"));
    (dir, result)
}

fn refused(bytes: &[u8], expected: &str) -> tempfile::TempDir {
    let (dir, result) = unpack_bytes(bytes);
    let message = result.unwrap_err().to_string();
    assert!(message.contains(expected), "{message}");
    dir
}

#[test]
fn plain_archives_unpack() {
    let bytes = tar_with(|b| {
        raw_entry(b, EntryType::Directory, "pkg/", None, b"");
        raw_entry(b, EntryType::Regular, "pkg/a.c", None, b"int x;");
        raw_entry(b, EntryType::Symlink, "pkg/b.c", Some("a.c"), b"");
        raw_entry(b, EntryType::Link, "pkg/c.c", Some("pkg/a.c"), b"");
        // kexec-tools 2.0.25 lists two files again as hard links to themselves.
        raw_entry(b, EntryType::Link, "pkg/a.c", Some("pkg/a.c"), b"");
    });
    let (dir, result) = unpack_bytes(&bytes);
    result.unwrap();
    assert_eq!(
        fs::read(dir.path().join("build/pkg/c.c")).unwrap(),
        b"int x;"
    );
    assert_eq!(
        fs::read_link(dir.path().join("build/pkg/b.c")).unwrap(),
        Path::new("a.c")
    );
}

#[test]
fn hostile_entries_are_refused_and_nothing_escapes() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tar_with(|b| raw_entry(b, EntryType::Regular, "../evil", None, b"x")),
            "leaves the build directory",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Regular, "/tmp/evil", None, b"x")),
            "leaves the build directory",
        ),
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Symlink, "link", Some("../.."), b"");
            }),
            "symlink points outside",
        ),
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Symlink, "d", Some("sub"), b"");
                raw_entry(b, EntryType::Directory, "sub/", None, b"");
                raw_entry(b, EntryType::Regular, "d/file", None, b"x");
            }),
            "through a symlink",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Link, "hl", Some("../../etc/passwd"), b"")),
            "hard link points outside",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Link, "hl", Some("nothere"), b"")),
            "not a file unpacked earlier",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Char, "null", None, b"")),
            "device nodes",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Block, "sda", None, b"")),
            "device nodes",
        ),
        (
            tar_with(|b| raw_entry(b, EntryType::Fifo, "fifo", None, b"")),
            "fifos",
        ),
    ];
    for (bytes, expected) in cases {
        let dir = refused(&bytes, expected);
        // Only the build directory (and what it may legitimately hold) exists.
        let top: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, ["build"], "{expected}");
    }
}

#[test]
fn an_entry_claiming_a_huge_size_fails_cleanly() {
    let mut h = header(EntryType::Regular, 1 << 40);
    h.set_path("big").unwrap();
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    let (dir, result) = unpack_bytes(&bytes);
    assert!(result.is_err());
    let written = fs::metadata(dir.path().join("build/big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written < 4096, "wrote {written} bytes");
}

#[test]
fn formats_by_name() {
    assert_eq!(Format::of("musl-1.2.3.tar.gz"), Format::TarGz);
    assert_eq!(Format::of("busybox-1.35.0.tar.bz2"), Format::TarBz2);
    assert_eq!(Format::of("linux_6.1.4.orig.tar.xz"), Format::TarXz);
    assert_eq!(Format::of("fix.c"), Format::Plain);
}

#[test]
fn links_that_lead_out_only_through_one_another_are_refused() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Each target stays inside when read alone; `a/..` is the parent.
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Symlink, "a", Some("."), b"");
                raw_entry(b, EntryType::Symlink, "b", Some("a/.."), b"");
            }),
            "entry \"b\": symlink leads outside the build directory through other links",
        ),
        // Dangling when made; the link it needs comes later.
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Symlink, "c", Some("b/.."), b"");
                raw_entry(b, EntryType::Symlink, "b", Some("a/x/.."), b"");
                raw_entry(b, EntryType::Directory, "a/", None, b"");
                raw_entry(b, EntryType::Symlink, "a/x", Some(".."), b"");
            }),
            "entry \"c\": symlink leads outside",
        ),
        // Inside when made; a later member replaces the link it goes through.
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Directory, "sub/", None, b"");
                raw_entry(b, EntryType::Symlink, "d", Some("sub"), b"");
                raw_entry(b, EntryType::Symlink, "up", Some("d/.."), b"");
                raw_entry(b, EntryType::Symlink, "d", Some("."), b"");
            }),
            "entry \"up\": symlink leads outside",
        ),
        // A file or a hard link through any link at all is refused.
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Symlink, "a", Some("."), b"");
                raw_entry(b, EntryType::Regular, "a/f", None, b"x");
            }),
            "entry \"a/f\": path goes through a symlink",
        ),
        (
            tar_with(|b| {
                raw_entry(b, EntryType::Directory, "sub/", None, b"");
                raw_entry(b, EntryType::Regular, "sub/f", None, b"x");
                raw_entry(b, EntryType::Symlink, "l", Some("sub"), b"");
                raw_entry(b, EntryType::Link, "h", Some("l/f"), b"");
            }),
            "entry \"h\": hard link to l/f: goes through a symlink",
        ),
    ];
    for (bytes, expected) in cases {
        let dir = refused(&bytes, expected);
        let top: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, ["build"], "{expected}");
        // The link that leads out is not left behind in the kept directory.
        let build = Root::open(&dir.path().join("build")).unwrap();
        for name in ["b", "c", "up"] {
            if let Err(e) = build.resolve(Path::new(name)) {
                assert_ne!(
                    beneath::refusal(&e),
                    Some("resolves outside the directory"),
                    "{expected}: {name}"
                );
            }
        }
    }
}

#[test]
fn a_source_larger_than_the_limit_is_refused_at_the_member_that_crosses_it() {
    let bytes = tar_with(|b| {
        for name in ["one", "two", "three"] {
            raw_entry(b, EntryType::Regular, name, None, &[7u8; 1000]);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    // Each member takes 1536 bytes of tar; the third would end at 4584.
    let e = Unpacker::new(dir.path(), 4000)
        .unwrap()
        .tar(&bytes[..])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("entry \"three\": unpacks to more than 4000 bytes"),
        "{e}"
    );
    assert!(e.contains("--max-unpacked"), "{e}");
    assert!(!dir.path().join("three").exists());
    // A gzip bomb: 64 MiB of zeros in about 64 KiB, refused after 1 MiB.
    let mut h = header(EntryType::Regular, 64 << 20);
    h.set_path("zeros").unwrap();
    h.set_cksum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    io::Write::write_all(&mut gz, h.as_bytes()).unwrap();
    io::copy(&mut io::repeat(0).take(64 << 20), &mut gz).unwrap();
    let archive = dir.path().join("bomb.tar.gz");
    fs::write(&archive, gz.finish().unwrap()).unwrap();
    let build = dir.path().join("build");
    fs::create_dir(&build).unwrap();
    let e = Unpacker::new(&build, 1 << 20)
        .unwrap()
        .source(&archive, "bomb.tar.gz")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("entry \"zeros\": unpacks to more than 1 MiB"),
        "{e}"
    );
    assert_eq!(fs::read_dir(&build).unwrap().count(), 0);
}

#[test]
fn a_long_name_too_large_to_be_one_is_refused_before_it_fills_memory() {
    // tar reads a GNU long name whole; this one claims 64 MiB of zeros.
    let mut h = header(EntryType::GNULongName, 64 << 20);
    h.set_path("././@LongLink").unwrap();
    h.set_cksum();
    let mut bytes = tar_with(|b| raw_entry(b, EntryType::Regular, "first", None, b"x"));
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend(std::iter::repeat_n(b'a', 64 << 20));
    refused(
        &bytes,
        "entry \"first\": followed by more than 1 MiB of headers",
    );
}

#[test]
fn an_inner_archive_is_unpacked_alone_and_checked_like_any_other() {
    let inner = tar_with(|b| {
        raw_entry(b, EntryType::Directory, "gcc-12.2.0/", None, b"");
        raw_entry(b, EntryType::Regular, "gcc-12.2.0/README", None, b"gcc");
    });
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    io::Write::write_all(&mut xz, &inner).unwrap();
    let inner_xz = xz.finish().unwrap();
    let hostile = tar_with(|b| raw_entry(b, EntryType::Regular, "../escape", None, b"x"));
    let outer = tar_with(|b| {
        raw_entry(b, EntryType::Directory, "gcc-12-12.2.0/", None, b"");
        raw_entry(b, EntryType::Regular, "gcc-12-12.2.0/newlib.tar", None, b"");
        raw_entry(
            b,
            EntryType::Regular,
            "gcc-12-12.2.0/gcc.tar.xz",
            None,
            &inner_xz,
        );
        raw_entry(
            b,
            EntryType::Regular,
            "gcc-12-12.2.0/bad.tar",
            None,
            &hostile,
        );
        raw_entry(
            b,
            EntryType::Symlink,
            "gcc-12-12.2.0/link.tar",
            Some("bad.tar"),
            b"",
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orig.tar");
    fs::write(&file, &outer).unwrap();
    let unpack = |member: &str| {
        let build = tempfile::tempdir_in(dir.path()).unwrap();
        let result = Unpacker::new(build.path(), 1 << 20)
            .unwrap()
            .inner_source(&file, "orig.tar", member);
        (build, result)
    };

    let (build, result) = unpack("gcc-12-12.2.0/gcc.tar.xz");
    result.unwrap();
    assert_eq!(
        fs::read(build.path().join("gcc-12.2.0/README")).unwrap(),
        b"gcc"
    );
    // Only the member's contents: nothing of the outer archive.
    assert!(!build.path().join("gcc-12-12.2.0").exists());

    let (_, result) = unpack("gcc-12-12.2.0/bad.tar");
    let e = result.unwrap_err().to_string();
    assert!(e.contains("path leaves the build directory"), "{e}");
    let (_, result) = unpack("gcc-12-12.2.0/link.tar");
    let e = result.unwrap_err().to_string();
    assert!(e.contains("is not a plain file"), "{e}");
    let (_, result) = unpack("gcc-12-12.2.0/missing.tar");
    let e = result.unwrap_err().to_string();
    assert!(e.contains("orig.tar holds no such member to unpack"), "{e}");
}

/// Sets `cancel` once `after` bytes of the archive have been read, as a
/// signal arriving in the middle of an unpack would.
struct CancelAfter<'a> {
    bytes: &'a [u8],
    read: usize,
    after: usize,
    cancel: Cancel,
}

impl Read for CancelAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&self.bytes[self.read..]).read(buf)?;
        self.read += n;
        if self.read >= self.after {
            self.cancel.set();
        }
        Ok(n)
    }
}

#[test]
fn an_interrupt_stops_the_unpack_before_the_next_member() {
    let bytes = tar_with(|b| {
        for name in ["a", "b", "c"] {
            let mut h = header(EntryType::Regular, 3);
            b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cancel = Cancel::default();
    let reader = CancelAfter {
        bytes: &bytes,
        read: 0,
        // The first member's header and its one block of data.
        after: 1024,
        cancel: cancel.clone(),
    };
    let result = Unpacker::new(dir.path(), u64::MAX)
        .unwrap()
        .cancelled_by(&cancel)
        .tar(reader);
    match result {
        Err(ArchiveError::Interrupted { after }) => assert_eq!(after, "a"),
        other => panic!("{other:?}"),
    }
    assert!(dir.path().join("a").is_file());
    assert!(!dir.path().join("b").exists());
}
