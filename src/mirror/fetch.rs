//! Filling the mirror: each missing file is tried from every place that can
//! give it, in order, by several workers at once, and lands only verified.

use std::collections::BTreeMap;
use std::path::Path;

use super::Mirror;
use crate::lock::LockEntry;

/// One place a fetcher can try for a file: a URL, a mirror directory, a git
/// commit, an apt source package.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// For people: "https://…", "apt-get source musl=1.2.3-1".
    pub label: String,
    /// For the fetcher: what to fetch.
    pub locator: String,
}

/// Byte counts for one download's progress bar.
pub trait Progress: Sync {
    fn set_length(&self, total: u64);
    fn set_position(&self, done: u64);
}

/// A kind of source. Adding one (say, a torrent) is one new file
/// implementing this.
pub trait Fetcher: Sync {
    /// The places this fetcher would try for `entry`, in order.
    fn attempts(&self, entry: &LockEntry) -> Vec<Attempt>;
    /// Writes the file to `part`. `part` may hold the beginning of the file
    /// from an earlier, interrupted try: a fetcher that can resume appends to
    /// it, any other truncates it. The caller verifies the result.
    fn fetch(
        &self,
        entry: &LockEntry,
        attempt: &Attempt,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<(), FetchError>;
}

/// Why one attempt did not give the file; the next place is tried.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server or the network: an HTTP status, a stall, a short body.
    #[error("{0}")]
    Http(String),
    /// A file on this machine could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// git or apt-get failed, or did not give the file.
    #[error("{0}")]
    Tool(String),
    /// This fetcher cannot use what the lock entry gives.
    #[error("{0}")]
    NotApplicable(String),
    /// The file arrived but the mirror refused it (its size or checksum).
    #[error("{0}")]
    Refused(#[from] crate::error::Error),
}

impl FetchError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
        let context = context.into();
        move |source| FetchError::Io { context, source }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Present,
    Fetched { from: String },
    Failed { errors: Vec<String> },
}

/// How fetching shows itself: bars on a terminal, lines otherwise.
pub trait FetchReporter: Sync {
    fn begin(&self, files: usize, bytes: u64);
    fn started(&self, name: &str, size: u64) -> Box<dyn Progress + '_>;
    fn finished(&self, name: &str, outcome: &Outcome);
}

/// Fetches every entry not yet in the mirror with `jobs` workers. Entries
/// with the same checksum are fetched once. Returns each entry's outcome,
/// sorted by name.
pub fn fetch_all(
    mirror: &Mirror,
    entries: &[&LockEntry],
    fetchers: &[&dyn Fetcher],
    jobs: usize,
    reporter: &dyn FetchReporter,
) -> crate::error::Result<Vec<(String, Outcome)>> {
    let mut by_sha: BTreeMap<&str, Vec<&LockEntry>> = BTreeMap::new();
    for entry in entries {
        by_sha.entry(entry.sha256.as_str()).or_default().push(entry);
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for group in by_sha.into_values() {
        if let Some(present) = group.iter().find(|e| mirror.has(e)) {
            for entry in &group {
                mirror.link_name(&entry.name, &present.sha256)?;
                results.push((entry.name.clone(), Outcome::Present));
                reporter.finished(&entry.name, &Outcome::Present);
            }
        } else {
            missing.push(group);
        }
    }
    let tmp = mirror.tmp_dir()?;
    reporter.begin(missing.len(), missing.iter().map(|g| g[0].size).sum());

    let done = super::pool::run(missing, jobs, |group| {
        let outcome = fetch_one(mirror, &group, fetchers, &tmp, reporter);
        let named: Vec<_> = group
            .iter()
            .map(|entry| {
                reporter.finished(&entry.name, &outcome);
                (entry.name.clone(), outcome.clone())
            })
            .collect();
        named
    });
    results.extend(done.into_iter().flatten());
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

/// Tries every attempt for one file (the union over entries that share its
/// checksum) until one lands.
fn fetch_one(
    mirror: &Mirror,
    group: &[&LockEntry],
    fetchers: &[&dyn Fetcher],
    tmp: &Path,
    reporter: &dyn FetchReporter,
) -> Outcome {
    let first = group[0];
    let names: Vec<&str> = group.iter().map(|e| e.name.as_str()).collect();
    // Keyed by checksum, so a partial download is resumed by the next run too.
    let part = tmp.join(format!("{}.part", first.sha256));
    let progress = reporter.started(&first.name, first.size);
    let mut errors = Vec::new();
    let mut tried = Vec::new();
    for fetcher in fetchers {
        for entry in group {
            for attempt in fetcher.attempts(entry) {
                if tried.contains(&attempt.label) {
                    continue;
                }
                tried.push(attempt.label.clone());
                let result = fetcher
                    .fetch(entry, &attempt, &part, progress.as_ref())
                    .and_then(|()| {
                        mirror
                            .land(&first.sha256, first.size, &names, &part)
                            .map_err(FetchError::from)
                    });
                match result {
                    Ok(()) => {
                        return Outcome::Fetched {
                            from: attempt.label,
                        };
                    }
                    Err(e) => errors.push(format!("{}: {e}", attempt.label)),
                }
            }
        }
    }
    if tried.is_empty() {
        errors.push("no URL, mirror, git or apt source to try".into());
    }
    Outcome::Failed { errors }
}
