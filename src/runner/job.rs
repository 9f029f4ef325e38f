//! What a runner is handed for one step, and what every runner does with it.

use std::path::PathBuf;

use super::builddir;
use crate::cancel::Cancel;
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::error::runner::Misfit;
use crate::plan::PlannedStep;
use crate::project::ChainStep;

/// A step that ran before this one, by its checkpoint.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub id: String,
    pub stage: String,
    /// The guest it ran in, for steps of a VM stage (see `VmSettings::machine`).
    pub machine: Option<String>,
    /// The checkpoint's directory; its output files are in `tree/`.
    pub dir: PathBuf,
}

impl Earlier {
    pub fn new(step: &ChainStep, dir: PathBuf) -> Earlier {
        Earlier {
            id: step.id.clone(),
            stage: step.stage.clone(),
            machine: step.vm.as_ref().map(|vm| vm.machine.clone()),
            dir,
        }
    }

    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }
}

/// Everything a runner needs for one step. The sources are verified mirror
/// files; `earlier` are the checkpoints of every step before it, in order.
pub struct StepJob<'a> {
    pub planned: &'a PlannedStep,
    pub sources: Vec<(String, PathBuf)>,
    pub earlier: Vec<Earlier>,
    pub source_date_epoch: u64,
    pub jobs: usize,
    /// Scratch space for this step, emptied before it runs.
    pub work: PathBuf,
    /// The step's log file.
    pub log: PathBuf,
    /// Deliberate changes to the environment, for reproducibility audits.
    pub variation: Option<Variation>,
}

/// Ways an audit rebuild differs from a normal one. Each is something a
/// reproducible build must not depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variation {
    /// Where the build directory appears instead of /build.
    pub build_root: Option<String>,
    pub umask: Option<u32>,
    /// LC_ALL instead of C.
    pub locale: Option<String>,
    pub tz: Option<String>,
    pub hostname: Option<String>,
    pub jobs: Option<usize>,
    /// libfaketime and its FAKETIME setting, to move the wall clock.
    pub faketime: Option<(PathBuf, String)>,
    /// How far ahead a guest's clock starts (qemu's `-rtc base`), in days.
    pub clock_ahead_days: Option<u32>,
    /// How directories in the build directory list their entries differently.
    pub dir_order: Option<builddir::DirOrder>,
}

impl StepJob<'_> {
    /// Where the runner leaves the step's output tree.
    pub fn out(&self) -> PathBuf {
        self.work.join("out")
    }

    /// Where the runner leaves other files the checkpoint keeps (a VM step's
    /// disk); they are committed beside the tree and verified on load.
    pub fn extras(&self) -> PathBuf {
        self.work.join("extras")
    }

    /// The output trees of the earlier steps of this step's stage, in
    /// order: all of them, or those its `needs:` names.
    pub fn stage_trees(&self) -> Vec<PathBuf> {
        let stage = &self.planned.chain_step.stage;
        let needs = &self.planned.chain_step.step.definition.needs;
        self.earlier
            .iter()
            .filter(|e| &e.stage == stage && (needs.is_empty() || needs.contains(&e.id)))
            .map(Earlier::tree)
            .collect()
    }
}

pub trait Runner {
    fn name(&self) -> String;
    /// Runs the step; on success its output is in `job.out()`.
    fn run(&mut self, job: &StepJob, cancel: &Cancel) -> Result<()>;
    /// Whether a verified checkpoint of a step of this runner still fits the
    /// checkpoints before it; `Err` says why not. Host outputs always do.
    fn fits(
        &self,
        _step: &ChainStep,
        _checkpoint: &Checkpoint,
        _earlier: &[Earlier],
    ) -> std::result::Result<(), Misfit> {
        Ok(())
    }
    /// Called when every step of a run is checkpointed: drops what the
    /// runner kept only so that a resume is quick.
    fn run_complete(&mut self) -> Result<()> {
        Ok(())
    }
}
