//! `mirror verify`: every file re-hashed, in parallel, against the lock.

use std::collections::BTreeSet;
use std::fs;

use serde::Serialize;

use super::Mirror;
use crate::digest::file_sha256;
use crate::lock::LockEntry;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    Ok,
    Missing,
    Corrupt { actual: String },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub files: Vec<(String, FileState)>,
    /// Stored files that no lock entry names.
    pub unreferenced: Vec<String>,
}

impl Report {
    pub fn is_complete(&self) -> bool {
        self.files.iter().all(|(_, s)| *s == FileState::Ok)
    }
}

/// Hashes the mirror's copy of each entry with `jobs` workers.
pub fn verify(
    mirror: &Mirror,
    entries: &[&LockEntry],
    all_shas: &BTreeSet<&str>,
    jobs: usize,
) -> Report {
    let mut files = super::pool::run(entries.to_vec(), jobs, |entry| {
        let state = match mirror.locate(entry) {
            None => FileState::Missing,
            Some(path) => match file_sha256(&path) {
                Ok((sha, _)) if sha == entry.sha256 => FileState::Ok,
                Ok((actual, _)) => FileState::Corrupt { actual },
                Err(e) => FileState::Corrupt {
                    actual: format!("unreadable: {e}"),
                },
            },
        };
        (entry.name.clone(), state)
    });
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unreferenced: Vec<String> = fs::read_dir(mirror.root.join("sha256"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !all_shas.contains(name.as_str()))
        .map(|name| format!("sha256/{name}"))
        .collect();
    unreferenced.sort();
    Report {
        files,
        unreferenced,
    }
}
