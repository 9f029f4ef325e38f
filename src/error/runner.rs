//! What a runner finds wrong besides the step itself failing: a disk tool
//! or mount that failed, an earlier step's file that is not there, a guest
//! output that does not unpack; and why a checkpoint no longer fits.

use std::path::PathBuf;

use crate::archive::ArchiveError;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{program} failed: {stderr}")]
    ToolFailed { program: String, stderr: String },

    #[error("dumpe2fs -h {}: no inode counts in its output: {stderr}", image.display())]
    NoInodeCounts { image: PathBuf, stderr: String },

    #[error("disorderfs could not mount {}", dir.display())]
    Disorderfs { dir: PathBuf },

    #[error("measuring free space in {}: {source}", dir.display())]
    FreeSpace { dir: PathBuf, source: nix::Error },

    #[error("mke2fs could not make {}: {stderr}", image.display())]
    Mke2fs { image: PathBuf, stderr: String },

    #[error(
        "could not mount {} on a loop device: {stderr}; audit with --dir-order disorderfs instead",
        image.display()
    )]
    LoopMount { image: PathBuf, stderr: String },

    #[error("{}: not a bzImage (no boot header), so its machine is unknown", kernel.display())]
    NotBzImage { kernel: PathBuf },

    /// `STEP:PATH` names a step that has not run before this one.
    #[error("{reference}: step {step} has not run before this stage")]
    NotRunBefore { reference: String, step: String },

    #[error("{reference}: {path} leads outside {step}'s output through a symlink")]
    LeadsOutside {
        reference: String,
        step: String,
        path: String,
    },

    #[error("{reference}: {step}'s output has no {path}")]
    NotInOutput {
        reference: String,
        step: String,
        path: String,
    },

    #[error("step {step}: the guest's output: {source}")]
    GuestOutput { step: String, source: ArchiveError },
}

/// Why a sound checkpoint of a VM step no longer fits the steps before it.
#[derive(Debug, thiserror::Error)]
pub enum Misfit {
    #[error("{file}: {source}")]
    NoBackingRecord {
        file: &'static str,
        source: std::io::Error,
    },

    #[error("its backing disk: {0}")]
    BackingDisk(std::io::Error),

    #[error("its base disk: {0}")]
    BaseDisk(Box<crate::error::Error>),

    #[error("its disk was made on a disk that has since been rebuilt")]
    Rebuilt,
}
