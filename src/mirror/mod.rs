//! The local source mirror. Files are stored once, by sha256
//! (`sha256/<hash>`), with `by-name/<name>` links as a human index, and every
//! file is verified before it is renamed into place.

pub mod apt;

use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::file_sha256;
use crate::error::{Error, IoContext, Result};
use crate::lock::LockEntry;

pub struct Mirror {
    pub root: PathBuf,
}

/// One way of getting a source file: an apt source package, a URL, ….
pub trait Fetcher {
    /// A short description of where this fetcher looks for `entry`, or None
    /// if it has nothing to offer for it.
    fn describe(&self, entry: &LockEntry) -> Option<String>;
    /// Writes the file to `dest`, a temporary path in the mirror. The caller
    /// verifies it.
    fn fetch(&self, entry: &LockEntry, dest: &Path) -> Result<(), String>;
}

/// What `mirror fetch` did for one file.
#[derive(Debug)]
pub enum FetchOutcome {
    Present,
    Fetched { from: String },
    Failed { errors: Vec<String> },
}

impl Mirror {
    pub fn new(root: PathBuf) -> Self {
        Mirror { root }
    }

    fn stored(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    fn named(&self, name: &str) -> PathBuf {
        self.root.join("by-name").join(name)
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).io_context(|| format!("creating {}", tmp.display()))?;
        Ok(tmp)
    }

    /// The mirror's copy of `entry`, verified against the lock. A missing file
    /// and a file with the wrong content are both errors that say what to do.
    pub fn checked(&self, entry: &LockEntry) -> Result<PathBuf> {
        let path = [self.stored(&entry.sha256), self.named(&entry.name)]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| {
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
        self.land(
            entry,
            tmp.into_temp_path().keep().map_err(|e| Error::Io {
                context: "keeping a temporary file".into(),
                source: e.error,
            })?,
        )
    }

    /// Verifies a complete temporary file and renames it into the store.
    fn land(&self, entry: &LockEntry, tmp: PathBuf) -> Result<()> {
        let result = (|| {
            let (actual, size) =
                file_sha256(&tmp).io_context(|| format!("reading {}", tmp.display()))?;
            if actual != entry.sha256 || size != entry.size {
                return Err(Error::Checksum {
                    name: entry.name.clone(),
                    path: tmp.clone(),
                    expected: format!("{} ({} bytes)", entry.sha256, entry.size),
                    actual: format!("{actual} ({size} bytes)"),
                });
            }
            // Read-only, so that nothing writes through a by-name link by mistake.
            fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444))
                .and_then(|()| fs::File::open(&tmp)?.sync_all())
                .io_context(|| format!("syncing {}", tmp.display()))?;
            let stored = self.stored(&entry.sha256);
            fs::create_dir_all(stored.parent().unwrap())
                .io_context(|| "creating the mirror store")?;
            fs::rename(&tmp, &stored)
                .io_context(|| format!("renaming into {}", stored.display()))?;
            self.link_name(entry)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn link_name(&self, entry: &LockEntry) -> Result<()> {
        let link = self.named(&entry.name);
        fs::create_dir_all(link.parent().unwrap()).io_context(|| "creating the mirror index")?;
        let target = Path::new("../sha256").join(&entry.sha256);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            return Ok(());
        }
        let tmp = link.with_extension("link-tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .io_context(|| format!("linking {}", link.display()))?;
        fs::rename(&tmp, &link).io_context(|| format!("linking {}", link.display()))
    }

    /// Fetches each entry that is not already present, trying each fetcher in
    /// turn. A file lands only after its size and sha256 are verified.
    pub fn fetch(
        &self,
        entries: &[&LockEntry],
        fetchers: &[&dyn Fetcher],
    ) -> Result<Vec<(String, FetchOutcome)>> {
        let mut outcomes = Vec::new();
        for entry in entries {
            if self.has(entry) {
                self.link_name(entry)?;
                outcomes.push((entry.name.clone(), FetchOutcome::Present));
                continue;
            }
            let mut errors = Vec::new();
            let mut outcome = None;
            for fetcher in fetchers {
                let Some(from) = fetcher.describe(entry) else {
                    continue;
                };
                let tmp =
                    self.tmp_dir()?
                        .join(format!("{}.{}.part", entry.name, std::process::id()));
                let attempt = fetcher
                    .fetch(entry, &tmp)
                    .and_then(|()| self.land(entry, tmp.clone()).map_err(|e| e.to_string()));
                let _ = fs::remove_file(&tmp);
                match attempt {
                    Ok(()) => {
                        outcome = Some(FetchOutcome::Fetched { from });
                        break;
                    }
                    Err(e) => errors.push(format!("{from}: {e}")),
                }
            }
            if entry.urls.iter().any(|u| u.starts_with("http")) && outcome.is_none() {
                errors.push(
                    "this build of stagebuild does not download over HTTP yet; use `mirror import DIR` for such files"
                        .to_string(),
                );
            }
            outcomes.push((
                entry.name.clone(),
                outcome.unwrap_or(FetchOutcome::Failed { errors }),
            ));
        }
        Ok(outcomes)
    }

    /// Adopts every file in `dir` whose checksum matches an entry, whatever its
    /// name. Returns the names adopted.
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
                self.link_name(entry)?;
                adopted.push((entry.name.clone(), file.clone()));
            }
        }
        Ok(adopted)
    }
}
