//! Unpacking source archives without trusting them. A correct checksum says a
//! file is the one we pinned, not that it is safe: every entry is checked
//! before anything is written, and only plain files, directories and links
//! that stay inside the destination are accepted.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("entry {entry:?}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error("{0}")]
    Read(io::Error),
}

/// How a source file is opened, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    /// Not an archive: copied into the build directory as it is.
    Plain,
}

impl Format {
    pub fn of(name: &str) -> Format {
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| name.ends_with(s));
        if ends(&[".tar.gz", ".tgz"]) {
            Format::TarGz
        } else if ends(&[".tar.bz2", ".tbz2"]) {
            Format::TarBz2
        } else if ends(&[".tar.xz", ".txz"]) {
            Format::TarXz
        } else if ends(&[".tar"]) {
            Format::Tar
        } else {
            Format::Plain
        }
    }
}

/// Unpacks `archive` (named `name`) into `dest`, or copies it there if it is
/// not an archive.
pub fn unpack(archive: &Path, name: &str, dest: &Path) -> Result<(), ArchiveError> {
    let file = fs::File::open(archive).map_err(ArchiveError::Read)?;
    let reader: Box<dyn Read> = match Format::of(name) {
        Format::Plain => {
            fs::copy(archive, dest.join(name)).map_err(ArchiveError::Read)?;
            return Ok(());
        }
        Format::Tar => Box::new(io::BufReader::new(file)),
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
        Format::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(io::BufReader::new(file))),
        Format::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(
            io::BufReader::new(file),
        )),
    };
    unpack_tar(reader, dest)
}

pub fn unpack_tar(reader: impl Read, dest: &Path) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    // Keep mtimes: autotools decide from them whether to regenerate files.
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    // No setuid, setgid or sticky bits from a source archive.
    archive.set_mask(0o7022);
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let refuse = |reason: &str| ArchiveError::Refused {
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let failed = |source: std::io::Error| ArchiveError::Entry {
            entry: shown.clone(),
            source,
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let rel = inside_path(Path::new(
            std::str::from_utf8(&raw_path).map_err(|_| refuse("name is not UTF-8"))?,
        ))
        .ok_or_else(|| refuse("path leaves the build directory (absolute or `..`)"))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        if through_symlink(dest, &rel) {
            return Err(refuse("path goes through a symlink"));
        }
        let hard_link_target = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => None,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(failed)?
                    .ok_or_else(|| refuse("symlink without a target"))?;
                let parent = rel.parent().unwrap_or(Path::new(""));
                if target.is_absolute() || inside_path(&parent.join(&target)).is_none() {
                    return Err(refuse(&format!(
                        "symlink points outside the build directory ({})",
                        target.display()
                    )));
                }
                None
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(failed)?
                    .ok_or_else(|| refuse("hard link without a target"))?;
                let target_rel = inside_path(&target).ok_or_else(|| {
                    refuse(&format!(
                        "hard link points outside the build directory ({})",
                        target.display()
                    ))
                })?;
                let existing = dest.join(&target_rel);
                if through_symlink(dest, &target_rel)
                    || !fs::symlink_metadata(&existing).is_ok_and(|m| m.is_file())
                {
                    return Err(refuse(&format!(
                        "hard link to {} which is not a file unpacked earlier",
                        target.display()
                    )));
                }
                Some(existing)
            }
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device nodes are not allowed"));
            }
            EntryType::Fifo => return Err(refuse("fifos are not allowed")),
            other => return Err(refuse(&format!("unsupported entry type {other:?}"))),
        };
        let path = dest.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(failed)?;
        }
        if let Some(existing) = hard_link_target {
            // Some tarballs list a file a second time as a hard link to itself.
            if existing == path {
                continue;
            }
            // Like tar, a later entry replaces an earlier one.
            if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&path).map_err(failed)?;
            }
            // Entry::unpack would resolve the link target against the current
            // directory; ours was checked relative to `dest`.
            fs::hard_link(existing, &path).map_err(failed)?;
            continue;
        }
        // unpack() writes exactly `path`; we have checked everything on the way to it.
        entry.unpack(&path).map_err(failed)?;
    }
    Ok(())
}

/// The path with `.` removed, if it stays inside its root (no root, prefix or
/// a `..` that climbs above the start).
fn inside_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether any existing ancestor of `rel` under `dest` is a symlink.
fn through_symlink(dest: &Path, rel: &Path) -> bool {
    let mut current = dest.to_path_buf();
    let mut components = rel.components().peekable();
    while let Some(component) = components.next() {
        current.push(component);
        if components.peek().is_none() {
            break;
        }
        if fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
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
}
