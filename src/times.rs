//! How long each step took, run after run: one JSON line per build in
//! `state/targets/TARGET.times.jsonl`, appended when the step is
//! checkpointed. Progress takes each step's expected time from it (the last
//! build under the same key, else of the same step) and `report` shows it.
//! Checkpoints keep their own build's time too (`meta.json`'s `built`),
//! which stands in for steps built before this file existed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::state::StateDir;

/// One build of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub step: String,
    pub key: String,
    /// From its start to its output, before the commit.
    pub millis: u64,
    pub runner: String,
    /// When it was checkpointed, in seconds since the epoch; absent for a
    /// time taken from an older checkpoint's meta.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
}

pub fn path(state: &StateDir, target: &str) -> PathBuf {
    state
        .root
        .join("targets")
        .join(format!("{target}.times.jsonl"))
}

/// Appends one build. The line is written whole by one `write`, so a kill
/// leaves at most a line that [`read`] skips.
pub fn append(path: &Path, timing: &Timing) -> Result<()> {
    let dir = path.parent().expect("a times file is in a directory");
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let mut line = serde_json::to_vec(timing).expect("timing serializes");
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .io_context(|| format!("opening {}", path.display()))?;
    file.write_all(&line)
        .io_context(|| format!("writing {}", path.display()))
}

/// Every build recorded, oldest first; lines that do not parse (the end of
/// a killed write) are skipped.
pub fn read(path: &Path) -> Vec<Timing> {
    let Ok(file) = crate::statefs::open_read(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(|line| line.ok())
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

/// The time a build of a step is expected to take.
#[derive(Debug, Default)]
pub struct Expected {
    by_key: BTreeMap<String, u64>,
    by_step: BTreeMap<String, u64>,
}

impl Expected {
    /// From earlier builds, the latest winning.
    pub fn of(timings: &[Timing]) -> Expected {
        let mut expected = Expected::default();
        for t in timings {
            expected.by_key.insert(t.key.clone(), t.millis);
            expected.by_step.insert(t.step.clone(), t.millis);
        }
        expected
    }

    /// Adds a build known otherwise (an older checkpoint's meta.json),
    /// unless the step has a time already.
    pub fn add_if_unknown(&mut self, step: &str, key: &str, millis: u64) {
        self.by_key.entry(key.to_string()).or_insert(millis);
        self.by_step.entry(step.to_string()).or_insert(millis);
    }

    /// The last build under this key, else the last of this step.
    pub fn get(&self, step: &str, key: &str) -> Option<Duration> {
        (self.by_key.get(key).or_else(|| self.by_step.get(step)))
            .map(|&ms| Duration::from_millis(ms))
    }
}

/// What is left of a run when a step starts: the expected times of it and
/// of the steps after it still to build, and how many of those have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eta {
    pub left: Duration,
    pub unknown: usize,
}

/// Seconds since the epoch, for [`Timing::finished`].
pub fn now() -> Option<u64> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.ok().map(|d| d.as_secs())
}

/// A duration for people: `850ms`, `42.1s`, `3m07s`, `1h02m`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(step: &str, key: &str, millis: u64) -> Timing {
        Timing {
            step: step.into(),
            key: key.into(),
            millis,
            runner: "fake".into(),
            finished: Some(1),
        }
    }

    #[test]
    fn the_last_build_of_the_key_wins_then_the_last_of_the_step_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("targets/t.times.jsonl");
        for t in [
            timing("a", "k1", 1000),
            timing("a", "k2", 2000),
            timing("a", "k1", 1500),
        ] {
            append(&file, &t).unwrap();
        }
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(b"{\"step\":\"a\",\"ke");
        std::fs::write(&file, bytes).unwrap();
        let read = read(&file);
        assert_eq!(read.len(), 3);
        let mut expected = Expected::of(&read);
        assert_eq!(expected.get("a", "k1"), Some(Duration::from_millis(1500)));
        assert_eq!(expected.get("a", "k2"), Some(Duration::from_millis(2000)));
        assert_eq!(expected.get("a", "k3"), Some(Duration::from_millis(1500)));
        assert_eq!(expected.get("b", "k3"), None);
        expected.add_if_unknown("b", "k4", 700);
        expected.add_if_unknown("a", "k1", 9);
        assert_eq!(expected.get("b", "k5"), Some(Duration::from_millis(700)));
        assert_eq!(expected.get("a", "k1"), Some(Duration::from_millis(1500)));
        assert_eq!(human(Duration::from_millis(187_000)), "3m07s");
        assert_eq!(human(Duration::from_millis(42_100)), "42.1s");
    }
}
