//! Unpacking source archives without trusting them. A correct checksum says a
//! file is the one we pinned, not that it is safe. Every member is checked
//! before it is written (only plain files, directories and links that stay
//! inside), every write goes through [`Root`], which the kernel keeps inside
//! the destination whatever links it holds, and after each source every
//! symlink unpacked so far is resolved again: links that each stay inside
//! can still lead out through one another (`a -> .`, `b -> a/..`).

mod decoder;
mod inner;
mod limit;
mod pipe;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use crate::beneath::{self, Root};
use crate::cancel::Cancel;
use decoder::Decoder;
use limit::{Counted, Counter};
pub use limit::{format_size, parse_size};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("entry {entry:?}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error(
        "{at}: unpacks to more than {}, the limit for one source; raise it with --max-unpacked SIZE (or STAGEBUILD_MAX_UNPACKED=SIZE)",
        format_size(*limit)
    )]
    TooLarge { at: String, limit: u64 },
    #[error("{0}")]
    Read(io::Error),
    #[error("interrupted after entry {after:?}")]
    Interrupted { after: String },
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

/// Unpacks a guest's output tar into `dest`, checked like any archive. Its
/// size is bounded by the disk it came on.
pub fn unpack_tar(reader: impl Read, dest: &Path) -> Result<(), ArchiveError> {
    Unpacker::new(dest, u64::MAX)
        .map_err(ArchiveError::Read)?
        .tar(reader)
}

/// Unpacks sources, one after another, into one directory.
pub struct Unpacker {
    root: Root,
    /// The most one source may unpack to, counted as its uncompressed tar.
    max_unpacked: u64,
    /// Every symlink unpacked so far and the member that made it.
    links: Vec<(PathBuf, String)>,
    /// Checked before each member: a source of 84 000 members takes a
    /// minute, too long to make an interrupted run wait for.
    cancel: Cancel,
}

impl Unpacker {
    pub fn new(dest: &Path, max_unpacked: u64) -> io::Result<Unpacker> {
        Ok(Unpacker {
            root: Root::open(dest)?,
            max_unpacked,
            links: Vec::new(),
            cancel: Cancel::default(),
        })
    }

    /// Stops unpacking, with [`ArchiveError::Interrupted`], once `cancel`
    /// is set.
    pub fn cancelled_by(mut self, cancel: &Cancel) -> Unpacker {
        self.cancel = cancel.clone();
        self
    }

    /// Unpacks `archive` (named `name`), or copies it in if it is not an
    /// archive.
    pub fn source(&mut self, archive: &Path, name: &str) -> Result<(), ArchiveError> {
        let file = fs::File::open(archive).map_err(ArchiveError::Read)?;
        let buffered = io::BufReader::new(file);
        match Format::of(name) {
            Format::Plain => self.plain(buffered, name),
            Format::Tar => self.tar(buffered),
            format => pipe::decompressed(Decoder::new(format, buffered), |stream| self.tar(stream)),
        }
    }

    /// A source that is not an archive lands at the top, with its mode.
    fn plain(&mut self, mut file: io::BufReader<fs::File>, name: &str) -> Result<(), ArchiveError> {
        let failed = |source| ArchiveError::Entry {
            entry: name.to_string(),
            source,
        };
        let meta = file.get_ref().metadata().map_err(ArchiveError::Read)?;
        if meta.len() > self.max_unpacked {
            return Err(ArchiveError::TooLarge {
                at: format!("file {name:?}"),
                limit: self.max_unpacked,
            });
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        let rel = member_path(name.as_bytes()).map_err(|reason| ArchiveError::Refused {
            entry: name.to_string(),
            reason: reason.into(),
        })?;
        let mut out = self
            .root
            .create_file(&rel, mode)
            .map_err(|e| write_error(name, e))?;
        io::copy(&mut file, &mut out).map_err(failed)?;
        Ok(())
    }

    /// Unpacks one tar stream, then checks every symlink unpacked so far,
    /// whether or not every member went in: a link left leading out would
    /// outlast a failure in the build directory, which is kept.
    pub fn tar(&mut self, reader: impl Read) -> Result<(), ArchiveError> {
        let unpacked = self.members(reader);
        let links = self.check_links();
        unpacked.and(links)
    }

    fn members(&mut self, reader: impl Read) -> Result<(), ArchiveError> {
        let counter = Counter::default();
        counter.member_done();
        let mut archive =
            tar::Archive::new(Counted::new(reader, counter.clone(), self.max_unpacked));
        let mut last = "(before the first member)".to_string();
        let limit = self.max_unpacked;
        let over = |at: String| ArchiveError::TooLarge { at, limit };
        let entries = archive.entries().map_err(ArchiveError::Read)?;
        for entry in entries {
            if self.cancel.is_set() {
                return Err(ArchiveError::Interrupted { after: last });
            }
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(_) if counter.exceeded(limit) => {
                    return Err(over(format!("after entry {last:?}")));
                }
                Err(_) if counter.too_much_between() => {
                    return Err(ArchiveError::Refused {
                        entry: last,
                        reason: format!(
                            "followed by more than {} of headers (long names, PAX records) before the next member",
                            format_size(limit::MAX_BETWEEN_MEMBERS)
                        ),
                    });
                }
                Err(e) => return Err(ArchiveError::Read(e)),
            };
            counter.member_started();
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            match self.entry(&mut entry, &counter) {
                Err(ArchiveError::Entry { entry, .. }) if counter.exceeded(limit) => {
                    return Err(over(format!("entry {entry:?}")));
                }
                done => done?,
            }
            counter.member_done();
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        counter: &Counter,
    ) -> Result<(), ArchiveError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let refuse = |reason: &str| ArchiveError::Refused {
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let failed = |source: io::Error| ArchiveError::Entry {
            entry: shown.clone(),
            source,
        };
        let mut kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let rel = member_path(&raw_path).map_err(refuse)?;
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        // Old archives mark a directory by a trailing slash alone.
        if kind == EntryType::Regular
            && entry.header().as_ustar().is_none()
            && raw_path.ends_with(b"/")
        {
            kind = EntryType::Directory;
        }
        // No setuid, setgid or sticky bits, nothing writable by others.
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        let mtime = entry.header().mtime().map_or(1, |m| m.max(1));
        let written = |e| write_error(&shown, e);
        match kind {
            EntryType::Directory => self.root.create_dir(&rel, mode).map_err(written),
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                if counter.read().saturating_add(size) > self.max_unpacked {
                    return Err(ArchiveError::TooLarge {
                        at: format!("entry {shown:?}"),
                        limit: self.max_unpacked,
                    });
                }
                let mut file = self.root.create_file(&rel, mode).map_err(written)?;
                let written = io::copy(entry, &mut file).map_err(failed)?;
                if written != size {
                    return Err(refuse(&format!(
                        "the archive ends inside it ({written} of {size} bytes)"
                    )));
                }
                // Kept: autotools decide from mtimes whether to regenerate files.
                let time = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
                file.set_times(fs::FileTimes::new().set_accessed(time).set_modified(time))
                    .map_err(failed)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(failed)?
                    .ok_or_else(|| refuse("symlink without a target"))?;
                let parent = rel.parent().unwrap_or(Path::new(""));
                if target.as_os_str().is_empty()
                    || target.is_absolute()
                    || inside_path(&parent.join(&target)).is_none()
                {
                    return Err(refuse(&format!(
                        "symlink points outside the build directory ({})",
                        target.display()
                    )));
                }
                self.root.symlink(&target, &rel).map_err(written)?;
                self.links.push((rel.clone(), shown.clone()));
                self.check_link(&rel, &shown)?;
                self.root.set_mtime(&rel, mtime as i64).map_err(failed)
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
                // Some tarballs list a file a second time as a hard link to itself.
                if target_rel == rel {
                    return Ok(());
                }
                self.root
                    .hard_link(&target_rel, &rel)
                    .map_err(|e| match beneath::refusal(&e) {
                        Some(why) => refuse(&format!("hard link to {}: {why}", target.display())),
                        None => refuse(&format!(
                            "hard link to {} which is not a file unpacked earlier",
                            target.display()
                        )),
                    })
            }
            EntryType::Char | EntryType::Block => Err(refuse("device nodes are not allowed")),
            EntryType::Fifo => Err(refuse("fifos are not allowed")),
            other => Err(refuse(&format!("unsupported entry type {other:?}"))),
        }
    }

    /// Refuses the symlink `rel`, and removes it, if it now leads out of the
    /// root.
    fn check_link(&self, rel: &Path, shown: &str) -> Result<(), ArchiveError> {
        match self.root.resolve(rel) {
            Err(e) if beneath::refusal(&e).is_some() => {
                self.root
                    .remove_symlink(rel)
                    .map_err(|e| write_error(shown, e))?;
                Err(ArchiveError::Refused {
                    entry: shown.to_string(),
                    reason: "symlink leads outside the build directory through other links".into(),
                })
            }
            // Dangling, a loop, or inside: nothing on the host follows it.
            _ => Ok(()),
        }
    }

    /// A later member can change where an earlier link leads (by replacing
    /// a directory it goes through with a link), so every one is checked
    /// again once a source is in.
    fn check_links(&self) -> Result<(), ArchiveError> {
        let mut first = Ok(());
        for (rel, shown) in &self.links {
            let checked = self.check_link(rel, shown);
            if first.is_ok() {
                first = checked;
            }
        }
        first
    }
}

/// The error for a write the kernel refused, or that failed.
fn write_error(shown: &str, e: io::Error) -> ArchiveError {
    match beneath::refusal(&e) {
        Some(_) => ArchiveError::Refused {
            entry: shown.to_string(),
            reason: "path goes through a symlink".into(),
        },
        None => ArchiveError::Entry {
            entry: shown.to_string(),
            source: e,
        },
    }
}

/// A member's name as a plain relative path, or why it is not one.
fn member_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8")?;
    inside_path(Path::new(name)).ok_or("path leaves the build directory (absolute or `..`)")
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
