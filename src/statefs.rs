//! The state directory's own structure, and opening its files. A state
//! directory may sit in a shared place, so a link planted in it must never
//! make stagebuild (as root) write, truncate or empty something elsewhere:
//! its parts are checked for links and types before any command uses it,
//! and its files are opened without following a link.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    Dir,
    /// Anything but a link: scratch space.
    NotLink,
}

/// Each part of a state directory, what it is, and what its entries are
/// (for `logs/TARGET/`, one level further: the log files, and the files of
/// its `history/`).
const PARTS: &[(&str, Kind, Option<Kind>)] = &[
    ("lock", Kind::File, None),
    ("checkpoints", Kind::Dir, Some(Kind::Dir)),
    ("targets", Kind::Dir, Some(Kind::File)),
    ("logs", Kind::Dir, Some(Kind::Dir)),
    ("work", Kind::Dir, Some(Kind::Dir)),
    ("tmp", Kind::Dir, Some(Kind::NotLink)),
    // Base disks, and the scratch a killed run left making one.
    ("disks", Kind::Dir, Some(Kind::NotLink)),
    ("audit", Kind::Dir, Some(Kind::Dir)),
];

/// Refuses a state directory that is not a directory, or whose parts are
/// links or of the wrong type. A missing one is fine: it is made when needed.
/// The directory itself may be reached through a link: the user chose it.
pub fn check_layout(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Usage(format!(
                "the state directory {}: {e}",
                root.display()
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::Usage(format!(
                "the state directory {} is not a directory; give --state a directory",
                root.display()
            )));
        }
        Ok(_) => {}
    }
    for (name, kind, entries) in PARTS {
        let path = root.join(name);
        if !check(root, &path, *kind)? {
            continue;
        }
        let Some(entry_kind) = entries else {
            continue;
        };
        for entry in read_dir(root, &path)? {
            check(root, &entry, *entry_kind)?;
            if *name == "logs" {
                for log in read_dir(root, &entry)? {
                    // Earlier attempts' logs sit one level further down.
                    if log.file_name() == Some(std::ffi::OsStr::new(crate::logs::HISTORY)) {
                        check(root, &log, Kind::Dir)?;
                        for old in read_dir(root, &log)? {
                            check(root, &old, Kind::File)?;
                        }
                    } else {
                        check(root, &log, Kind::File)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether `path` exists; an error if it is a link or not of `kind`.
fn check(root: &Path, path: &Path, kind: Kind) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(refused(root, path, &e.to_string())),
        Ok(meta) => meta,
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(refused(root, path, "is a symbolic link"));
    }
    match kind {
        Kind::Dir if !ft.is_dir() => Err(refused(root, path, "is not a directory")),
        Kind::File if !ft.is_file() => Err(refused(root, path, "is not a regular file")),
        _ => Ok(true),
    }
}

fn read_dir(root: &Path, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| refused(root, dir, &e.to_string()))?;
    Ok(entries.flatten().map(|e| e.path()).collect())
}

fn refused(root: &Path, path: &Path, why: &str) -> Error {
    let part = path.strip_prefix(root).unwrap_or(path);
    Error::Usage(format!(
        "the state directory {}: {} {why}; a state directory holds no links and only its own \
         files (remove it, or give another --state)",
        root.display(),
        part.display()
    ))
}

/// Opens a state file for reading and writing, creating it, without
/// following a link in its last component (`O_NOFOLLOW`).
pub fn open_rw(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Creates a new file where nothing is (not even a dangling link).
pub fn create_new(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Opens an existing file to append to it, never through a link.
pub fn open_append(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Opens an existing file to read it, never through a link.
pub fn open_read(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_wrong_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        assert!(check_layout(&root).is_ok(), "a missing state is fine");
        fs::create_dir_all(root.join("logs/t")).unwrap();
        fs::write(root.join("logs/t/01-a.log"), "").unwrap();
        assert!(check_layout(&root).is_ok());
        symlink("/etc/passwd", root.join("logs/t/02-b.log")).unwrap();
        let e = check_layout(&root).unwrap_err().to_string();
        assert!(e.contains("logs/t/02-b.log is a symbolic link"), "{e}");
        fs::remove_file(root.join("logs/t/02-b.log")).unwrap();
        fs::create_dir_all(root.join("logs/t/history")).unwrap();
        fs::write(root.join("logs/t/history/a.1.log"), "").unwrap();
        assert!(check_layout(&root).is_ok(), "earlier attempts' logs");
        symlink("/etc/passwd", root.join("logs/t/history/a.2.log")).unwrap();
        let e = check_layout(&root).unwrap_err().to_string();
        assert!(e.contains("history/a.2.log is a symbolic link"), "{e}");
        fs::remove_file(root.join("logs/t/history/a.2.log")).unwrap();
        fs::create_dir(root.join("lock")).unwrap();
        let e = check_layout(&root).unwrap_err().to_string();
        assert!(e.contains("lock is not a regular file"), "{e}");
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let e = check_layout(&file).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }

    #[test]
    fn opening_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        assert!(open_rw(&link).is_err());
        assert!(open_append(&link).is_err());
        assert!(open_read(&link).is_err());
        assert!(create_new(&link).is_err());
        crate::logs::keep_earlier(&link).unwrap();
        assert!(create_new(&link).is_ok());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}
