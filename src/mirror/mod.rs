//! The local source mirror. Files are stored once, by sha256
//! (`sha256/<hash>`), with `by-name/<name>` links as a human index, and every
//! file is verified before it is renamed into place: the mirror never holds a
//! wrong file under a right name, nor an empty one.

pub mod apt;
pub mod fetch;
pub mod from;
pub mod git;
pub mod http;
pub mod offline;
pub mod pack;
mod pool;
pub mod verify;

use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::file_sha256;
use crate::error::{Error, IoContext, Result};
use crate::lock::LockEntry;

pub struct Mirror {
    pub root: PathBuf,
}

impl Mirror {
    pub fn new(root: PathBuf) -> Self {
        Mirror { root }
    }

    pub fn stored(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    fn named(&self, name: &str) -> PathBuf {
        self.root.join("by-name").join(name)
    }

    /// Scratch space for downloads in progress; partial files stay here
    /// between runs so that they can be resumed.
    pub fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).io_context(|| format!("creating {}", tmp.display()))?;
        Ok(tmp)
    }

    /// Where the mirror holds `entry`, if anywhere: by checksum first, then by name.
    pub fn locate(&self, entry: &LockEntry) -> Option<PathBuf> {
        [self.stored(&entry.sha256), self.named(&entry.name)]
            .into_iter()
            .find(|p| p.exists())
    }

    /// The mirror's copy of `entry`, verified against the lock. A missing file
    /// and a file with the wrong content are both errors that say what to do.
    pub fn checked(&self, entry: &LockEntry) -> Result<PathBuf> {
        let path = self.locate(entry).ok_or_else(|| {
            Error::Usage(format!(
                "source {} is not in the mirror {}; fill it with `stagebuild mirror fetch` or `stagebuild mirror import DIR`",
                entry.name,
                self.root.display()
            ))
        })?;
        let (actual, _) =
            file_sha256(&path).io_context(|| format!("reading {}", path.display()))?;
        if actual != entry.sha256 {
            return Err(Error::Checksum {
                name: entry.name.clone(),
                path,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        Ok(path)
    }

    /// A step's sources, each checked against the lock, in the step's order.
    pub fn step_sources(
        &self,
        lock: &crate::lock::Lock,
        step: &crate::step::Step,
    ) -> Result<Vec<(String, PathBuf)>> {
        step.definition
            .sources
            .iter()
            .map(|name| {
                let entry = lock
                    .get(name)
                    .expect("step sources are checked against the lock when loaded");
                Ok((name.clone(), self.checked(entry)?))
            })
            .collect()
    }

    pub fn has(&self, entry: &LockEntry) -> bool {
        self.checked(entry).is_ok()
    }

    /// Adopts `file` as `entry` if its checksum and size match; the file is
    /// copied under a temporary name, verified, then renamed into place.
    pub fn adopt(&self, entry: &LockEntry, file: &Path) -> Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}.", entry.name))
            .tempfile_in(self.tmp_dir()?)
            .io_context(|| "creating a temporary file in the mirror")?;
        fs::copy(file, tmp.path()).io_context(|| format!("copying {}", file.display()))?;
        let (tmp_file, tmp_path) = tmp.into_parts();
        drop(tmp_file);
        let tmp_path = tmp_path.keep().map_err(|e| Error::Io {
            context: "keeping a temporary file".into(),
            source: e.error,
        })?;
        self.land(&entry.sha256, entry.size, &[entry.name.as_str()], &tmp_path)
    }

    /// Verifies a complete temporary file against `sha256` and `size`, renames
    /// it into the store and links `names` to it. A file that does not match
    /// is deleted, never kept.
    pub fn land(&self, sha256: &str, size: u64, names: &[&str], tmp: &Path) -> Result<()> {
        let result = (|| {
            let (actual, actual_size) =
                file_sha256(tmp).io_context(|| format!("reading {}", tmp.display()))?;
            if actual != sha256 || actual_size != size {
                return Err(Error::Checksum {
                    name: names.join(", "),
                    path: tmp.to_path_buf(),
                    expected: format!("{sha256} ({size} bytes)"),
                    actual: format!("{actual} ({actual_size} bytes)"),
                });
            }
            // Read-only, so that nothing writes through a by-name link by mistake.
            fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444))
                .and_then(|()| fs::File::open(tmp)?.sync_all())
                .io_context(|| format!("syncing {}", tmp.display()))?;
            let stored = self.stored(sha256);
            fs::create_dir_all(stored.parent().unwrap())
                .io_context(|| "creating the mirror store")?;
            fs::rename(tmp, &stored)
                .io_context(|| format!("renaming into {}", stored.display()))?;
            crate::fsutil::sync_dir(stored.parent().unwrap())?;
            names
                .iter()
                .try_for_each(|name| self.link_name(name, sha256))
        })();
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// Points `by-name/NAME` at the stored file, replacing a stale link atomically.
    pub fn link_name(&self, name: &str, sha256: &str) -> Result<()> {
        let link = self.named(name);
        fs::create_dir_all(link.parent().unwrap()).io_context(|| "creating the mirror index")?;
        let target = Path::new("../sha256").join(sha256);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            return Ok(());
        }
        let tmp = link.with_extension("link-tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .io_context(|| format!("linking {}", link.display()))?;
        fs::rename(&tmp, &link).io_context(|| format!("linking {}", link.display()))
    }

    /// Adopts every file in `dir` whose checksum matches an entry, whatever its
    /// name. Returns the names adopted and where from.
    pub fn import(&self, dir: &Path, entries: &[&LockEntry]) -> Result<Vec<(String, PathBuf)>> {
        let mut adopted = Vec::new();
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .io_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            // Hash only files whose size matches some entry.
            if !entries.iter().any(|e| e.size == size) {
                continue;
            }
            let (sha256, _) =
                file_sha256(&file).io_context(|| format!("reading {}", file.display()))?;
            for entry in entries.iter().filter(|e| e.sha256 == sha256) {
                if !self.has(entry) {
                    self.adopt(entry, &file)?;
                }
                self.link_name(&entry.name, &entry.sha256)?;
                adopted.push((entry.name.clone(), file.clone()));
            }
        }
        Ok(adopted)
    }
}
