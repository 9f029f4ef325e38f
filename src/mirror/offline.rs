//! Filling the mirror with no network at all: only local directories are
//! read, and a file none of them has is reported with every place a
//! networked fetch would have tried and how to bring it in by hand.

use std::path::{Path, PathBuf};

use super::apt::AptFetcher;
use super::fetch::{Attempt, FetchError, Fetcher, Progress};
use super::from::find_in_dir;
use super::git::GitFetcher;
use crate::error::Error;
use crate::lock::LockEntry;

/// Directories of files (or other stagebuild mirrors), as a fetcher.
pub struct LocalDirs(pub Vec<PathBuf>);

impl Fetcher for LocalDirs {
    fn attempts(&self, _: &LockEntry) -> Vec<Attempt> {
        self.0
            .iter()
            .map(|dir| Attempt {
                label: format!("directory {}", dir.display()),
                locator: dir.display().to_string(),
            })
            .collect()
    }

    fn fetch(
        &self,
        entry: &LockEntry,
        attempt: &Attempt,
        part: &Path,
        _: &dyn Progress,
    ) -> Result<(), FetchError> {
        let found = find_in_dir(Path::new(&attempt.locator), entry)
            .ok_or_else(|| FetchError::NotApplicable(format!("no {} there", entry.name)))?;
        std::fs::copy(&found, part).map_err(FetchError::io(found.display().to_string()))?;
        Ok(())
    }
}

/// Every place `mirror fetch` would try for `entry` with the network: its
/// URLs, then its git commit and its apt source.
pub fn would_try(entry: &LockEntry) -> Vec<String> {
    entry
        .urls
        .iter()
        .cloned()
        .chain(GitFetcher.attempts(entry).into_iter().map(|a| a.label))
        .chain(AptFetcher.attempts(entry).into_iter().map(|a| a.label))
        .collect()
}

/// The error for sources that neither the mirror nor `dirs` hold, when no
/// download is allowed.
pub fn missing(mirror: &Path, entries: &[&LockEntry], dirs: &[PathBuf]) -> Error {
    let places = match dirs {
        [] => format!("not in the mirror {}", mirror.display()),
        dirs => format!(
            "in neither the mirror {} nor {}",
            mirror.display(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut message = format!(
        "{} source(s) are {places}, and --offline allows no download:",
        entries.len()
    );
    for entry in entries {
        message += &format!(
            "\n  {} (sha256 {}, {} bytes)",
            entry.name, entry.sha256, entry.size
        );
        for place in would_try(entry) {
            message += &format!("\n      would have tried {place}");
        }
    }
    message += "\nBring them in without the network: put the files in a directory and pass \
         --from DIR (or run `stagebuild mirror import DIR`; any name will do, they are matched by \
         sha256), or land a pack made elsewhere with `stagebuild mirror pack` through \
         `stagebuild mirror unpack PACK.tar`.";
    Error::Usage(message)
}
