//! The library's error type. Each variant knows which exit code it means.

use std::path::PathBuf;

/// Exit codes, documented in the README.
pub mod exit {
    pub const BUILD_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const OUTPUTS_DIFFER: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input in a project file: step, target, lock or patch.
    #[error("{}: {message}", location(path, *line))]
    Input {
        path: PathBuf,
        line: Option<u64>,
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

    /// A failure after which `--resume` continues; carries the command.
    #[error("{inner}\nto resume from here: {command}")]
    Resumable { inner: Box<Error>, command: String },

    #[error("{0}")]
    Other(String),

    // Added with the engine's walk (the audit's errors, which were `Other`).
    /// A checkpoint an audit compares with is gone or damaged.
    #[error("the checkpoint of {step} {problem}; rebuild it with run --resume")]
    CheckpointUnusable { step: String, problem: String },
}

fn location(path: &std::path::Path, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } | Error::Checksum { .. } | Error::Usage(_) => exit::BAD_INPUT,
            Error::Interrupted { .. } => exit::INTERRUPTED,
            Error::OutputsDiffer { .. } | Error::NotReproducible { .. } => exit::OUTPUTS_DIFFER,
            Error::Resumable { inner, .. } => inner.exit_code(),
            Error::StepFailed { .. } | Error::Vm { .. } | Error::Io { .. } | Error::Other(_) => {
                exit::BUILD_FAILED
            }
            Error::CheckpointUnusable { .. } => exit::BUILD_FAILED,
        }
    }

    pub fn input(path: impl Into<PathBuf>, line: Option<u64>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
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
