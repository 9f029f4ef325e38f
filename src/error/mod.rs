//! The library's error type. Each variant knows which exit code it means and
//! whether `run --resume` can continue after it.

use std::path::PathBuf;

pub mod runner;
mod spot;

pub use spot::{Spot, location, snippet};

/// Exit codes, documented in the README.
pub mod exit {
    /// A step, a guest, the host or the network failed.
    pub const BUILD_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const OUTPUTS_DIFFER: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input in a project file: step, target, lock or patch. Shown as
    /// `file:line:column: message`, then the line with a caret.
    #[error(
        "{}: {message}{}",
        location(path, spot.as_ref()),
        spot.as_ref().map(|s| snippet(s, &|_, t| t.to_string())).unwrap_or_default()
    )]
    Input {
        path: PathBuf,
        spot: Option<Spot>,
        message: String,
    },

    #[error(
        "checksum mismatch for {name} ({path}):\n  expected sha256 {expected}\n  actual   sha256 {actual}"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{0}")]
    Usage(String),

    /// `mirror verify`: files the lock pins are missing from the mirror or
    /// differ from their checksum.
    #[error("{count} file(s) missing or corrupt in {}", mirror.display())]
    MirrorIncomplete { mirror: PathBuf, count: usize },

    /// A file of the state directory that stagebuild wrote cannot be read
    /// back; `--resume` would read it again, so only `--fresh` goes on.
    #[error("{}: unreadable ({problem}); remove it or run with --fresh", path.display())]
    CorruptState { path: PathBuf, problem: String },

    /// Sources could not be downloaded (or made by git or apt-get).
    #[error("{0}")]
    Fetch(String),

    /// The shared cache: its configuration, keys or server.
    #[error("the cache {url}: {problem}")]
    Cache { url: String, problem: String },

    /// Something this machine lacks or refused: a tool, a mount, a signal
    /// handler, the sandbox.
    #[error("{context}: {problem}")]
    Host { context: String, problem: String },

    /// A step's output cannot be checkpointed (a socket, a name that is not
    /// UTF-8...): the step must change.
    #[error("step {step}: its output: {problem}")]
    Output { step: String, problem: String },

    #[error("step {step} failed ({status})\n{tail}\nfull log: {log}", log = log.display())]
    StepFailed {
        step: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "step {step}: its output differs from the recorded checksums in {}:\n{}",
        record.display(),
        files.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n")
    )]
    OutputsDiffer {
        step: String,
        record: PathBuf,
        files: Vec<String>,
    },

    #[error("step {step} is the first that is not reproducible; the full report is {}", report.display())]
    NotReproducible { step: String, report: PathBuf },

    #[error("interrupted while running step {step}")]
    Interrupted { step: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A VM step's guest did not finish: it did not boot in time, ran past its
    /// timeout, panicked, or qemu died.
    #[error(
        "step {step}: {problem}\nlast lines of the guest console:\n{tail}\nfull console log: {}",
        console.display()
    )]
    Vm {
        step: String,
        problem: String,
        tail: String,
        console: PathBuf,
    },

    /// A failure after which `--resume` continues; carries the command, and
    /// for a failed step the one that opens a shell in its environment.
    #[error("{inner}\nto resume from here: {command}{}", shell_hint(shell))]
    Resumable {
        inner: Box<Error>,
        command: String,
        shell: Option<String>,
    },

    /// What a runner found wrong besides the step failing: a disk tool, a
    /// mount, an earlier step's file, the guest's output.
    #[error(transparent)]
    Runner(#[from] crate::error::runner::RunnerError),

    // Added with the engine's walk (the audit's errors, which were `Other`).
    /// A checkpoint an audit compares with is gone or damaged.
    #[error("the checkpoint of {step} {problem}; rebuild it with run --resume")]
    CheckpointUnusable { step: String, problem: String },

    // Added with `run --until` and `run --only`.
    /// `--until` or `--only` names a step the target does not have.
    #[error("{option} {step}: target {target} has no step {step} (its steps: {known})")]
    UnknownStep {
        option: &'static str,
        step: String,
        target: String,
        known: String,
    },
    /// `run --only STEP` needs a checkpoint of every step before it, under
    /// its current key.
    #[error(
        "--only {step} rebuilds it against the checkpoints before it, but {missing} has none \
         under its current key ({state}); build up to it first with --resume --until {missing}"
    )]
    NotCheckpointed {
        step: String,
        missing: String,
        state: String,
    },
    /// `run --only STEP` rebuilt the step under the key it already had, and
    /// got another output: the checkpoint is kept, since replacing it would
    /// invalidate the steps after it.
    #[error(
        "--only {step}: its rebuilt output differs from its checkpoint under the same key; the \
         checkpoint is kept, since replacing it would invalidate {}",
        if later.is_empty() { "nothing after it".to_string() } else { later.join(", ") }
    )]
    WouldInvalidate { step: String, later: Vec<String> },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. }
            | Error::Checksum { .. }
            | Error::Usage(_)
            | Error::MirrorIncomplete { .. }
            | Error::CorruptState { .. }
            | Error::UnknownStep { .. }
            | Error::NotCheckpointed { .. } => exit::BAD_INPUT,
            Error::Interrupted { .. } => exit::INTERRUPTED,
            Error::OutputsDiffer { .. }
            | Error::NotReproducible { .. }
            | Error::WouldInvalidate { .. } => exit::OUTPUTS_DIFFER,
            Error::Resumable { inner, .. } => inner.exit_code(),
            Error::StepFailed { .. }
            | Error::Vm { .. }
            | Error::Io { .. }
            | Error::Fetch(_)
            | Error::Cache { .. }
            | Error::Host { .. }
            | Error::Output { .. }
            | Error::Runner(_)
            | Error::CheckpointUnusable { .. } => exit::BUILD_FAILED,
        }
    }

    /// Whether `run --resume` continues after this error once its cause is
    /// fixed: the checkpoints so far are good and the record readable. Bad
    /// input is fixed and the run started again (it resumes by itself from
    /// the checkpoints that still match); differing outputs need a decision.
    pub fn resumable(&self) -> bool {
        match self {
            Error::StepFailed { .. }
            | Error::Vm { .. }
            | Error::Interrupted { .. }
            | Error::Io { .. }
            | Error::Fetch(_)
            | Error::Cache { .. }
            | Error::Host { .. }
            | Error::Output { .. }
            | Error::Runner(_) => true,
            Error::Input { .. }
            | Error::Checksum { .. }
            | Error::Usage(_)
            | Error::MirrorIncomplete { .. }
            | Error::CorruptState { .. }
            | Error::OutputsDiffer { .. }
            | Error::NotReproducible { .. }
            | Error::UnknownStep { .. }
            | Error::NotCheckpointed { .. }
            | Error::WouldInvalidate { .. } => false,
            // Already says how.
            Error::Resumable { .. } | Error::CheckpointUnusable { .. } => false,
        }
    }

    /// An input error at a position in the file (from [`crate::yaml`]).
    pub fn input(path: impl Into<PathBuf>, spot: Option<Spot>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            spot,
            message: message.into(),
        }
    }

    /// The error as shown on `stream`: the same text as `Display`, with the
    /// snippet's gutter and caret in colour when the stream gets colour.
    pub fn render(&self, stream: crate::color::Stream) -> String {
        let paint = |style, text: &str| crate::color::paint(stream, style, text);
        match self {
            Error::Input {
                path,
                spot: Some(spot),
                message,
            } => format!(
                "{}: {message}{}",
                location(path, Some(spot)),
                snippet(spot, &paint)
            ),
            Error::Resumable {
                inner,
                command,
                shell,
            } => format!(
                "{}\nto resume from here: {command}{}",
                inner.render(stream),
                shell_hint(shell)
            ),
            other => other.to_string(),
        }
    }
}

/// The line after a resume command that says how to open a shell.
fn shell_hint(shell: &Option<String>) -> String {
    shell
        .as_ref()
        .map(|command| format!("\nto open a shell where it failed: {command}"))
        .unwrap_or_default()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a human context to I/O errors: `fs::read(p).io_context(|| format!("reading {p}"))`.
pub trait IoContext<T> {
    fn io_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context().into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_resumes_is_what_a_rerun_can_continue() {
        let corrupt = Error::CorruptState {
            path: "state/targets/t.json".into(),
            problem: "EOF".into(),
        };
        assert_eq!(corrupt.exit_code(), exit::BAD_INPUT);
        assert!(!corrupt.resumable());
        let fetch = Error::Fetch("2 source(s) could not be fetched".into());
        assert_eq!(fetch.exit_code(), exit::BUILD_FAILED);
        assert!(fetch.resumable());
        let missing = Error::MirrorIncomplete {
            mirror: "m".into(),
            count: 1,
        };
        assert_eq!(missing.exit_code(), exit::BAD_INPUT);
        assert!(!missing.resumable());
        let interrupted = Error::Interrupted { step: "a".into() };
        let wrapped = Error::Resumable {
            inner: Box::new(interrupted),
            command: "stagebuild run --target t --resume".into(),
            shell: None,
        };
        assert_eq!(wrapped.exit_code(), exit::INTERRUPTED);
        assert!(!wrapped.resumable(), "it already says how");
    }
}
