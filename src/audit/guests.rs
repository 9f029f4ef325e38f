//! Which guest mode rebuilds each guest step of an audit, and the runner
//! that does it: one mode for every step (`audit --guest qemu|sandbox`), or
//! with `--compare-modes` the mode that did not build the step's checkpoint,
//! so that a match shows the two modes give the same bytes.

use crate::checkpoint::{Checkpoint, Store};
use crate::error::Result;
use crate::error::runner::Misfit;
use crate::project::ChainStep;
use crate::runner::guest::{GuestMode, built_in_dir};
use crate::runner::{Cancel, Earlier, Runner, StepJob};

/// How an audit rebuilds guest steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestChoice {
    Mode(GuestMode),
    /// The other mode than the one each checkpoint was built in.
    CompareModes,
}

/// The mode that rebuilds a guest step whose checkpoint was built in `built_in`.
pub fn rebuild_mode(choice: GuestChoice, built_in: Option<GuestMode>) -> GuestMode {
    match (choice, built_in) {
        (GuestChoice::Mode(mode), _) => mode,
        (GuestChoice::CompareModes, Some(GuestMode::Sandbox)) => GuestMode::Qemu,
        (GuestChoice::CompareModes, _) => GuestMode::Sandbox,
    }
}

/// The runner of an audit's guest steps: hands each to the mode
/// [`rebuild_mode`] picks for it.
pub struct GuestModes {
    pub qemu: Box<dyn Runner>,
    pub sandbox: Box<dyn Runner>,
    pub choice: GuestChoice,
    /// The checkpoint store, to see how each step was built.
    pub checkpoints: Store,
}

impl GuestModes {
    fn runner(&mut self, key: &str) -> &mut dyn Runner {
        let built = built_in_dir(&self.checkpoints.dir(key));
        match rebuild_mode(self.choice, built) {
            GuestMode::Qemu => self.qemu.as_mut(),
            GuestMode::Sandbox => self.sandbox.as_mut(),
        }
    }
}

impl Runner for GuestModes {
    fn name(&self) -> String {
        match self.choice {
            GuestChoice::Mode(GuestMode::Qemu) => self.qemu.name(),
            GuestChoice::Mode(GuestMode::Sandbox) => self.sandbox.name(),
            GuestChoice::CompareModes => format!(
                "vm, each step in the mode that did not build it: {} or {}",
                self.qemu.name(),
                self.sandbox.name()
            ),
        }
    }

    fn run(&mut self, job: &StepJob, cancel: &Cancel) -> Result<()> {
        self.runner(&job.planned.key).run(job, cancel)
    }

    fn fits(
        &self,
        step: &ChainStep,
        checkpoint: &Checkpoint,
        earlier: &[Earlier],
    ) -> std::result::Result<(), Misfit> {
        self.qemu.fits(step, checkpoint, earlier)
    }

    fn run_complete(&mut self) -> Result<()> {
        self.qemu.run_complete()?;
        self.sandbox.run_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_modes_rebuilds_each_step_in_the_mode_that_did_not_build_it() {
        use GuestMode::{Qemu, Sandbox};
        let compare = GuestChoice::CompareModes;
        assert_eq!(rebuild_mode(compare, Some(Qemu)), Sandbox);
        assert_eq!(rebuild_mode(compare, Some(Sandbox)), Qemu);
        for built in [None, Some(Qemu), Some(Sandbox)] {
            assert_eq!(rebuild_mode(GuestChoice::Mode(Qemu), built), Qemu);
            assert_eq!(rebuild_mode(GuestChoice::Mode(Sandbox), built), Sandbox);
        }
    }
}
