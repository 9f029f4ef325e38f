//! Small filesystem helpers for crash-safe writes.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// new one: a temporary file in the same directory, fsync, rename, fsync dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic_write needs a file path with a parent");
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .io_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .io_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .io_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("syncing {}", dir.display()))
}

/// Removes a directory tree if it exists.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).io_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Empties `path`, creating it if needed.
pub fn fresh_dir(path: &Path) -> Result<()> {
    remove_tree(path)?;
    fs::create_dir_all(path).io_context(|| format!("creating {}", path.display()))
}

/// Merges the tree `src` into `dst` with hard links, later trees winning on
/// conflicts. Used to show earlier steps' outputs as one sysroot without
/// copying them; the sandbox mounts the result read-only.
pub fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).io_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).io_context(|| format!("reading {}", src.display()))? {
        let entry = entry.io_context(|| format!("reading {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .io_context(|| format!("reading {}", from.display()))?;
        let existing = fs::symlink_metadata(&to).ok();
        if kind.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                fs::remove_file(&to).io_context(|| format!("replacing {}", to.display()))?;
            }
            link_tree(&from, &to)?;
            continue;
        }
        match existing {
            Some(m) if m.is_dir() => remove_tree(&to)?,
            Some(_) => fs::remove_file(&to).io_context(|| format!("replacing {}", to.display()))?,
            None => {}
        }
        if kind.is_symlink() {
            let target =
                fs::read_link(&from).io_context(|| format!("reading {}", from.display()))?;
            std::os::unix::fs::symlink(target, &to)
                .io_context(|| format!("linking {}", to.display()))?;
        } else {
            fs::hard_link(&from, &to).io_context(|| format!("linking {}", to.display()))?;
        }
    }
    Ok(())
}
