//! Runners execute one step in its environment. A new kind of runner (a VM,
//! a foreign architecture) is one new module implementing [`Runner`].

pub mod basedisk;
pub mod builddir;
pub mod group;
pub mod guest;
pub mod guest_job;
pub mod guest_sandbox;
pub mod host;
pub mod kexec;
pub mod tool;
pub mod vm;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::plan::PlannedStep;
use crate::project::ChainStep;
use crate::target::RunnerKind;

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

    /// The output trees of the earlier steps of this step's stage, in order.
    pub fn stage_trees(&self) -> Vec<PathBuf> {
        let stage = &self.planned.chain_step.stage;
        self.earlier
            .iter()
            .filter(|e| &e.stage == stage)
            .map(Earlier::tree)
            .collect()
    }
}

/// The runners of a run, by the kind of stage whose steps they run. The
/// engine and the auditor hold them only as [`Runner`]s, so that a test gives
/// them fakes, and a new kind of runner is one new module and one `add`.
#[derive(Default)]
pub struct Runners {
    /// In the order added; the last one added for a kind runs its steps.
    added: Vec<(RunnerKind, Box<dyn Runner>)>,
}

impl Runners {
    /// Lets `runner` run the steps of stages of `kind`, in place of one added
    /// before for that kind (`run --guest sandbox` takes the qemu runner's
    /// place). The one replaced still hears [`Runner::run_complete`]: it may
    /// hold what an earlier run left, as the qemu runner's base disks.
    pub fn add(&mut self, kind: RunnerKind, runner: impl Runner + 'static) {
        self.added.push((kind, Box::new(runner)));
    }

    /// The runner for the steps of a stage of `kind`.
    pub fn for_kind(&mut self, kind: RunnerKind) -> Result<&mut dyn Runner> {
        match self.added.iter_mut().rev().find(|(k, _)| *k == kind) {
            Some((_, runner)) => Ok(runner.as_mut()),
            None => Err(Error::Usage(format!(
                "stages with runner {kind} cannot run here: no such runner is set up"
            ))),
        }
    }

    /// Every step of a run is checkpointed: each runner drops what it kept
    /// only so that a resume is quick.
    pub fn run_complete(&mut self) -> Result<()> {
        self.added
            .iter_mut()
            .try_for_each(|(_, runner)| runner.run_complete())
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
    ) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Called when every step of a run is checkpointed: drops what the
    /// runner kept only so that a resume is quick.
    fn run_complete(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Set when the user interrupts (SIGINT, SIGTERM); runners poll it and stop
/// their processes.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag raised by SIGINT and SIGTERM.
    pub fn on_signals() -> std::io::Result<Cancel> {
        let cancel = Cancel::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, cancel.0.clone())?;
        }
        Ok(cancel)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A runner that only answers to its name and notes run_complete.
    struct Named(&'static str, Rc<RefCell<Vec<&'static str>>>);

    impl Runner for Named {
        fn name(&self) -> String {
            self.0.into()
        }
        fn run(&mut self, _job: &StepJob, _cancel: &Cancel) -> Result<()> {
            Ok(())
        }
        fn run_complete(&mut self) -> Result<()> {
            self.1.borrow_mut().push(self.0);
            Ok(())
        }
    }

    #[test]
    fn the_last_runner_added_for_a_kind_runs_it_and_every_runner_hears_the_run_complete() {
        let completed = Rc::new(RefCell::new(Vec::new()));
        let mut runners = Runners::default();
        runners.add(RunnerKind::Host, Named("host", completed.clone()));
        let missing = runners.for_kind(RunnerKind::Vm).err().unwrap();
        assert!(missing.to_string().contains("runner vm"), "{missing}");
        runners.add(RunnerKind::Vm, Named("qemu", completed.clone()));
        runners.add(RunnerKind::Vm, Named("sandbox", completed.clone()));
        assert_eq!(runners.for_kind(RunnerKind::Vm).unwrap().name(), "sandbox");
        assert_eq!(runners.for_kind(RunnerKind::Host).unwrap().name(), "host");
        runners.run_complete().unwrap();
        assert_eq!(*completed.borrow(), ["host", "qemu", "sandbox"]);
    }
}
