//! The state directory: checkpoints, per-target records, logs, work space,
//! and the lock that keeps two runs apart.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Store;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;
use crate::record::RecordedStep;

pub struct StateDir {
    pub root: PathBuf,
}

/// What a target's last run recorded: each step's key and its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub target: String,
    pub steps: BTreeMap<String, RecordedStep>,
    /// How many times a step's recorded output has changed: each step notes
    /// the count when its output last changed and when it was keyed, so
    /// `plan` can name the earlier step whose output invalidated it.
    #[serde(default)]
    pub changes: u64,
}

/// Held for the whole of a run; released when dropped or when the process dies.
pub struct RunLock {
    _lock: Flock<fs::File>,
}

impl StateDir {
    pub fn new(root: PathBuf) -> Self {
        StateDir { root }
    }

    /// The state directory at `root`, once its structure is checked: no
    /// links, every part of its type (see [`crate::statefs`]).
    pub fn open(root: PathBuf) -> Result<Self> {
        crate::statefs::check_layout(&root)?;
        Ok(StateDir { root })
    }

    pub fn store(&self) -> Store {
        Store::new(self.root.join("checkpoints"), self.tmp())
    }

    /// Staging space for commits; whatever is here when a run starts is the
    /// leftover of one that was killed.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn record_path(&self, target: &str) -> PathBuf {
        self.root.join("targets").join(format!("{target}.json"))
    }

    pub fn work_dir(&self, step: &str) -> PathBuf {
        self.root.join("work").join(step)
    }

    /// Where a target's step logs are (see [`crate::logs`]).
    pub fn log_dir(&self, target: &str) -> PathBuf {
        self.root.join("logs").join(target)
    }

    /// The latest log of a step: named by the step alone, never by its
    /// position, so that inserting a step cannot leave a stale log that
    /// looks current.
    pub fn log_path(&self, target: &str, step: &str) -> PathBuf {
        self.log_dir(target).join(format!("{step}.log"))
    }

    /// The record of a target, empty if it was never run here.
    pub fn record(&self, target: &str) -> Result<Record> {
        let path = self.record_path(target);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
                path: path.clone(),
                problem: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record {
                target: target.to_string(),
                ..Record::default()
            }),
            Err(e) => Err(e).io_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("record serializes");
        atomic_write(&self.record_path(&record.target), &bytes)
    }

    /// Takes the run lock without waiting. If another process holds it, the
    /// error names that process.
    pub fn lock(&self, command: &str) -> Result<RunLock> {
        fs::create_dir_all(&self.root)
            .io_context(|| format!("creating {}", self.root.display()))?;
        let path = self.root.join("lock");
        let file =
            crate::statefs::open_rw(&path).io_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0)
                    .and_then(|_| writeln!(*lock, "pid {}: {command}", std::process::id()))
                    .io_context(|| format!("writing {}", path.display()))?;
                Ok(RunLock { _lock: lock })
            }
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let holder = read_holder(&path);
                Err(Error::Usage(format!(
                    "the state directory {} is in use by {}; wait for it to finish (`stagebuild status` works meanwhile)",
                    self.root.display(),
                    holder.trim()
                )))
            }
            Err((_, errno)) => Err(Error::Io {
                context: format!("locking {}", path.display()),
                source: errno.into(),
            }),
        }
    }

    /// Who holds the run lock, if anyone; never blocks and never takes it
    /// for longer than the test.
    pub fn holder(&self) -> Option<String> {
        let path = self.root.join("lock");
        let file = crate::statefs::open_read(&path).ok()?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_released_on_drop) => None,
            Err(_) => Some(read_holder(&path).trim().to_string()),
        }
    }

    /// Every target this state directory has a record of.
    pub fn recorded_targets(&self) -> Vec<Record> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("targets"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.record(n).ok()).collect()
    }
}

/// What the run lock says of its holder, read without following a link.
fn read_holder(path: &std::path::Path) -> String {
    let mut text = String::new();
    if let Ok(file) = crate::statefs::open_read(path) {
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(file, 4096), &mut text);
    }
    text
}
