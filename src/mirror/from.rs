//! Other mirrors given with `--from`: a directory (a stagebuild mirror, or
//! files by name) or a URL base under which files are found by name.

use std::path::{Path, PathBuf};

use super::fetch::{Attempt, FetchError, Fetcher, Progress};
use super::http::HttpFetcher;
use crate::lock::LockEntry;

pub enum From {
    Dir(PathBuf),
    Url(String),
}

impl From {
    pub fn parse(text: &str) -> From {
        if text.contains("://") && !text.starts_with("file://") {
            From::Url(text.trim_end_matches('/').to_string())
        } else {
            From::Dir(PathBuf::from(text.strip_prefix("file://").unwrap_or(text)))
        }
    }
}

pub struct FromMirrors<'a> {
    pub mirrors: Vec<From>,
    pub http: &'a HttpFetcher,
}

impl Fetcher for FromMirrors<'_> {
    fn attempts(&self, entry: &LockEntry) -> Vec<Attempt> {
        self.mirrors
            .iter()
            .map(|m| match m {
                From::Dir(dir) => Attempt {
                    label: format!("mirror {}", dir.display()),
                    locator: dir.display().to_string(),
                },
                From::Url(base) => {
                    let url = format!("{base}/{}", entry.name);
                    Attempt {
                        label: url.clone(),
                        locator: url,
                    }
                }
            })
            .collect()
    }

    fn fetch(
        &self,
        entry: &LockEntry,
        attempt: &Attempt,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<(), FetchError> {
        if attempt.locator.contains("://") {
            return self
                .http
                .fetch_url(&attempt.locator, Some(entry.size), part, progress);
        }
        let dir = Path::new(&attempt.locator);
        let found = find_in_dir(dir, entry)
            .ok_or_else(|| FetchError::NotApplicable(format!("no {} there", entry.name)))?;
        std::fs::copy(&found, part).map_err(FetchError::io(found.display().to_string()))?;
        Ok(())
    }
}

/// Where a directory holds `entry`: as another stagebuild mirror first, then
/// as a plain directory of files. The caller verifies what it finds.
pub fn find_in_dir(dir: &Path, entry: &LockEntry) -> Option<PathBuf> {
    [
        dir.join("sha256").join(&entry.sha256),
        dir.join("by-name").join(&entry.name),
        dir.join(&entry.name),
    ]
    .into_iter()
    .find(|p| p.is_file())
}
