//! A step's log file: opened fresh for each attempt, and its last lines
//! quoted in an error.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{IoContext, Result};

/// A fresh log for this attempt; earlier attempts' logs go to the history.
pub fn open_log(path: &Path) -> Result<fs::File> {
    crate::logs::keep_earlier(path)?;
    crate::statefs::create_new(path).io_context(|| format!("creating {}", path.display()))
}

/// The last `lines` lines of a log, indented.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = crate::statefs::open_read(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}
