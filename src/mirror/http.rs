//! Downloads over HTTP(S), and `file://` URLs. Partial files resume with
//! `Range`; transient failures (connection errors, stalls, 5xx, 429) are
//! retried with backoff; anything else moves on to the next place.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::fetch::{Attempt, FetchError, Fetcher, Progress};
use crate::lock::LockEntry;

pub struct HttpFetcher {
    client: reqwest::blocking::Client,
    /// Tries per URL for transient failures.
    pub tries: u32,
    /// The first backoff; it doubles on each retry.
    pub backoff: Duration,
}

impl HttpFetcher {
    /// `stall` is how long a connection may make no progress before it is
    /// given up (and retried).
    pub fn new(stall: Duration, tries: u32, backoff: Duration) -> Result<Self, reqwest::Error> {
        // reqwest takes rustls's process-wide provider; an Err only says one
        // is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("stagebuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(stall)
            // With copy_to, the blocking client applies this to each read.
            .timeout(stall)
            .build()?;
        Ok(HttpFetcher {
            client,
            tries,
            backoff,
        })
    }

    /// Fetches `url` into `part`, resuming what is there. `size` is the
    /// expected size, if known.
    pub fn fetch_url(
        &self,
        url: &str,
        size: Option<u64>,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<(), FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            fs::copy(path, part).map_err(FetchError::io(path))?;
            return Ok(());
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(FetchError::NotApplicable("unsupported URL scheme".into()));
        }
        if let Some(size) = size {
            progress.set_length(size);
        }
        let mut last_error = String::new();
        for attempt in 0..self.tries.max(1) {
            if attempt > 0 {
                std::thread::sleep(self.backoff * 2u32.pow(attempt - 1));
            }
            match self.try_once(url, size, part, progress) {
                Ok(()) => return Ok(()),
                Err(Failure::Permanent(e)) => return Err(FetchError::Http(e)),
                Err(Failure::Transient(e)) => last_error = e,
            }
        }
        Err(FetchError::Http(format!(
            "{last_error} (gave up after {} tries)",
            self.tries.max(1)
        )))
    }

    fn try_once(
        &self,
        url: &str,
        size: Option<u64>,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<(), Failure> {
        let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if size.is_none() {
            truncate(part)?;
            have = 0;
        }
        if let Some(size) = size.filter(|&s| have >= s) {
            // Complete (the caller verifies) or longer than it can be.
            if have == size {
                return Ok(());
            }
            truncate(part)?;
            have = 0;
        }
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request
            .send()
            .map_err(|e| Failure::Transient(describe(&e)))?;
        let status = response.status();
        let append = match status {
            StatusCode::PARTIAL_CONTENT => {
                let start = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(have) {
                    truncate(part)?;
                    return Err(Failure::Transient(
                        "the server resumed at the wrong offset".into(),
                    ));
                }
                true
            }
            // A server that ignores Range sends the whole file: start over.
            StatusCode::OK => false,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                truncate(part)?;
                return Err(Failure::Transient(
                    "the server refused to resume (416)".into(),
                ));
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                return Err(Failure::Transient(format!("HTTP {s}")));
            }
            s => return Err(Failure::Permanent(format!("HTTP {s}"))),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| Failure::Permanent(format!("{}: {e}", part.display())))?;
        let start = if append { have } else { 0 };
        let mut counting = Counting {
            inner: &mut file,
            done: start,
            progress,
        };
        progress.set_position(start);
        response
            .copy_to(&mut counting)
            .map_err(|e| Failure::Transient(format!("the transfer broke off: {}", describe(&e))))?;
        let got = counting.done;
        file.sync_all()
            .map_err(|e| Failure::Transient(e.to_string()))?;
        if let Some(size) = size.filter(|&s| got < s) {
            return Err(Failure::Transient(format!(
                "short body: {got} of {size} bytes"
            )));
        }
        Ok(())
    }
}

enum Failure {
    /// Worth retrying: the next try resumes from what arrived.
    Transient(String),
    /// Not worth retrying here: try the next place.
    Permanent(String),
}

fn truncate(part: &Path) -> Result<(), Failure> {
    match fs::remove_file(part) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Failure::Permanent(e.to_string())),
        _ => Ok(()),
    }
}

/// reqwest's errors name only their outermost layer; the cause says what happened.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out (no progress)".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

struct Counting<'a, W> {
    inner: W,
    done: u64,
    progress: &'a dyn Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        self.progress.set_position(self.done);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Fetcher for HttpFetcher {
    fn attempts(&self, entry: &LockEntry) -> Vec<Attempt> {
        entry
            .urls
            .iter()
            .map(|url| Attempt {
                label: url.clone(),
                locator: url.clone(),
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
        self.fetch_url(&attempt.locator, Some(entry.size), part, progress)
    }
}
