//! What a run of a target would do: each step's cache key ([`keys`]) and
//! whether it is built, to build, or invalidated and why ([`states`]). Those
//! two are pure logic; [`Plan`] puts them together against a state
//! directory's record and checkpoints.

mod keys;
mod states;

use serde::Serialize;

pub use keys::{KeyInputs, PlannedStep, keys};
pub use states::{RecordedStep, StepState, states};

use crate::error::Result;
use crate::project::{Chain, Project};
use crate::state::{Record, StateDir};

/// A target's chain with keys and states, as `plan` shows it.
pub struct Plan {
    pub chain: Chain,
    pub steps: Vec<PlannedStep>,
    pub states: Vec<StepState>,
}

#[derive(Debug, Serialize)]
pub struct PlanRow {
    pub index: usize,
    pub id: String,
    pub stage: String,
    pub runner: String,
    pub version: String,
    pub key: String,
    /// The kernel a VM step's guest boots, `STEP:PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The kernel a kexec step jumps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kexec: Option<String>,
    /// How a VM step's checkpoint was built: in qemu or in the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_in: Option<crate::runner::guest::GuestMode>,
    #[serde(flatten)]
    pub state: StepState,
}

impl Plan {
    pub fn load(
        project: &Project,
        state: &StateDir,
        target: &str,
        overrides: &[(String, String)],
    ) -> Result<Plan> {
        let chain = project.chain(target, overrides)?;
        let record = state.record(target)?;
        let store = state.store();
        Ok(Self::of(project, chain, &record, |key| store.exists(key)))
    }

    /// The plan against a record and a test for which checkpoints exist
    /// (for `--fresh`, an empty record and none).
    pub fn of(
        project: &Project,
        chain: Chain,
        record: &Record,
        has_checkpoint: impl Fn(&str) -> bool,
    ) -> Plan {
        let steps = keys(&chain, &project.lock);
        let states = states(&steps, &record.steps, has_checkpoint);
        Plan {
            chain,
            steps,
            states,
        }
    }

    /// How many steps have a checkpoint under their current key.
    pub fn done(&self) -> usize {
        self.states
            .iter()
            .filter(|s| **s == StepState::Done)
            .count()
    }

    pub fn rows(&self) -> Vec<PlanRow> {
        self.steps
            .iter()
            .zip(&self.states)
            .map(|(p, s)| PlanRow {
                index: p.index + 1,
                id: p.id().to_string(),
                stage: p.chain_step.stage.clone(),
                runner: p.chain_step.runner.to_string(),
                version: p.chain_step.step.definition.version.clone(),
                key: p.key.clone(),
                kernel: p.chain_step.vm.as_ref().map(|vm| vm.kernel.clone()),
                kexec: (p.chain_step.step.definition.kexec.as_ref()).map(|k| k.kernel.clone()),
                built_in: None,
                state: s.clone(),
            })
            .collect()
    }
}
