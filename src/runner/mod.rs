//! Runners execute one step in its environment. A new kind of runner (a VM,
//! a foreign architecture) is one new module implementing [`Runner`].

pub mod builddir;
pub mod group;
pub mod guest;
pub mod guest_job;
pub mod guest_sandbox;
pub mod guest_variation;
pub mod host;
pub mod interrupt;
pub mod job;
pub mod kexec;
pub mod machine;
pub mod shell;
pub mod steplog;
pub mod terminal;
pub mod tool;
pub mod vm;

pub use self::job::{Earlier, Runner, StepJob, Variation};
pub use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::target::RunnerKind;

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
