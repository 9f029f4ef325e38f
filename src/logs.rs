//! Step logs: `logs/TARGET/STEP.log` (and a VM step's `STEP.console.log`)
//! is always the latest attempt of that step. Names carry no position in the
//! chain, so inserting a step renames nothing; earlier attempts, and logs of
//! steps no longer in the target, move to `logs/TARGET/history/` as
//! `STEP.N.log` (N counting up), where `status` lists them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Earlier attempts kept per log file; older ones are removed.
pub const KEPT: usize = 5;

pub const HISTORY: &str = "history";

/// Moves an existing `path` (a log about to be written again) into the
/// history beside it, and makes sure its directory exists.
pub fn keep_earlier(path: &Path) -> Result<()> {
    let dir = path.parent().expect("a log is in a directory");
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    // A link is moved aside like a file (rename never follows it).
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("log");
    to_history(path, name.strip_suffix(".log").unwrap_or(name))
}

/// Moves `path` to `history/STEM.N.log`, N one more than the last, and
/// keeps only the last [`KEPT`].
fn to_history(path: &Path, stem: &str) -> Result<()> {
    let history = path
        .parent()
        .expect("a log is in a directory")
        .join(HISTORY);
    fs::create_dir_all(&history).io_context(|| format!("creating {}", history.display()))?;
    let mut earlier = numbered(&history, stem);
    let next = earlier.last().map_or(1, |(n, _)| n + 1);
    let kept = history.join(format!("{stem}.{next}.log"));
    fs::rename(path, &kept).io_context(|| format!("keeping {}", kept.display()))?;
    earlier.push((next, kept));
    let excess = earlier.len().saturating_sub(KEPT);
    for (_, old) in earlier.drain(..excess) {
        fs::remove_file(&old).io_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// The history's copies of `STEM.log`, oldest first.
fn numbered(history: &Path, stem: &str) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(history)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix(stem)?
                .strip_prefix('.')?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Run before a target's steps, so that `dir` holds only the latest log of
/// each step in `steps`. Logs of steps the target no longer has go to the
/// history. So do logs named the way earlier versions named them
/// (`NN-STEP.log`, and `.previous` for the attempt before), except that the
/// newest of a step becomes its `STEP.log` if it has none yet.
pub fn retire_stale<'a>(dir: &Path, steps: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let current: Vec<String> = steps
        .into_iter()
        .flat_map(|id| [format!("{id}.log"), format!("{id}.console.log")])
        .collect();
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut files: Vec<(Option<std::time::SystemTime>, PathBuf, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            Some((modified(&p), p, name))
        })
        .filter(|(_, _, name)| !current.contains(name))
        .collect();
    // Oldest first, so that the newest of an old-style step's logs ends up
    // as its latest.
    files.sort();
    for (when, path, name) in files {
        let (renamed, previous) = former_name(&name);
        let stem = renamed.strip_suffix(".log").unwrap_or(&renamed).to_string();
        let latest = dir.join(&renamed);
        let newer = !latest.exists() || modified(&latest) <= when;
        if !previous && current.contains(&renamed) && newer {
            keep_earlier(&latest)?;
            fs::rename(&path, &latest).io_context(|| format!("renaming {}", path.display()))?;
        } else {
            to_history(&path, &stem)?;
        }
    }
    Ok(())
}

/// What an earlier version's log name means now: `07-tcc.log` is `tcc.log`;
/// `tcc.log.previous` is an earlier attempt of `tcc.log`.
fn former_name(name: &str) -> (String, bool) {
    let (name, previous) = match name.strip_suffix(".previous") {
        Some(name) => (name, true),
        None => (name, false),
    };
    let unnumbered = name
        .split_once('-')
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(name, |(_, rest)| rest);
    (unnumbered.to_string(), previous)
}

/// The earlier logs of `step` kept in `dir`'s history, oldest first: its
/// own log's and its console's.
pub fn earlier(dir: &Path, step: &str) -> Vec<PathBuf> {
    let history = dir.join(HISTORY);
    numbered(&history, step)
        .into_iter()
        .chain(numbered(&history, &format!("{step}.console")))
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn earlier_attempts_move_to_history_and_only_the_last_few_stay() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tcc.log");
        for attempt in 0..KEPT + 2 {
            keep_earlier(&log).unwrap();
            fs::write(&log, format!("attempt {attempt}")).unwrap();
        }
        let history = dir.path().join(HISTORY);
        let kept = names(&history);
        assert_eq!(kept.len(), KEPT, "{kept:?}");
        assert_eq!(
            fs::read_to_string(history.join(format!("tcc.{}.log", KEPT + 1))).unwrap(),
            format!("attempt {KEPT}")
        );
        assert_eq!(earlier(dir.path(), "tcc").len(), KEPT);
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            format!("attempt {}", KEPT + 1)
        );
    }

    fn write_aged(dir: &Path, name: &str, age: u64) {
        let path = dir.join(name);
        fs::write(&path, name).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn stale_logs_are_retired_and_old_style_names_become_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        // tcc was step 7, then step 8 after an insertion; bzip2 already has
        // a log of its own; gone is no longer in the target.
        write_aged(dir, "07-tcc.log", 300);
        write_aged(dir, "08-tcc.log", 200);
        write_aged(dir, "08-tcc.log.previous", 250);
        write_aged(dir, "03-bzip2.log", 100);
        write_aged(dir, "bzip2.log", 10);
        write_aged(dir, "gone.log", 50);
        write_aged(dir, "13-vm.console.log", 20);
        retire_stale(dir, ["tcc", "bzip2", "vm"]).unwrap();
        assert_eq!(
            names(dir),
            ["bzip2.log", "history", "tcc.log", "vm.console.log"]
        );
        assert_eq!(
            fs::read_to_string(dir.join("tcc.log")).unwrap(),
            "08-tcc.log"
        );
        assert_eq!(
            fs::read_to_string(dir.join("bzip2.log")).unwrap(),
            "bzip2.log"
        );
        assert_eq!(
            names(&dir.join(HISTORY)),
            ["bzip2.1.log", "gone.1.log", "tcc.1.log", "tcc.2.log"]
        );
        let mut earlier: Vec<String> = ["tcc.1.log", "tcc.2.log"]
            .iter()
            .map(|n| fs::read_to_string(dir.join(HISTORY).join(n)).unwrap())
            .collect();
        earlier.sort();
        assert_eq!(earlier, ["07-tcc.log", "08-tcc.log.previous"]);
    }
}
