//! What a run of a target would do: each step's cache key ([`keys`]) and
//! whether it is built, to build, or invalidated and why ([`states`]). Those
//! two are pure logic; [`Plan`] puts them together against a state
//! directory's record and checkpoints.

mod keys;
#[cfg(test)]
mod pinned_keys;
mod states;

use serde::Serialize;

pub use keys::{KeyInputs, Keys, PlannedStep, Sees, keys_with};
pub use states::{RecordedStep, StepState, plan_steps};

use crate::error::Result;
use crate::project::{Chain, Project};
use crate::state::{Record, StateDir};

/// A target's chain with keys and states, as `plan` shows it.
pub struct Plan {
    pub chain: Chain,
    pub steps: Vec<PlannedStep>,
    pub states: Vec<StepState>,
    /// Steps the last run rebuilt whose output was unchanged, so that the
    /// steps after them kept their checkpoints.
    pub unchanged: Vec<bool>,
}

/// What `plan` says of a step rebuilt with the same output.
pub const UNCHANGED: &str = "rebuilt, output unchanged: later steps kept";

#[derive(Debug, Serialize)]
pub struct PlanRow {
    pub index: usize,
    pub id: String,
    pub stage: String,
    pub runner: String,
    pub version: String,
    pub key: String,
    /// The earlier step to be built whose output the key assumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_assumes: Option<String>,
    /// The kernel a VM step's guest boots, `STEP:PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The kernel a kexec step jumps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kexec: Option<String>,
    /// How a VM step's checkpoint was built: in qemu or in the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_in: Option<crate::record::GuestMode>,
    /// [`UNCHANGED`], for a step the last run rebuilt with the same output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
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
        Ok(Self::of(project, chain, &record, |key| store.output(key)))
    }

    /// The plan against a record and the output of the checkpoint under a
    /// key, if there is one (for `--fresh`, an empty record and none).
    pub fn of(
        project: &Project,
        chain: Chain,
        record: &Record,
        output_of: impl Fn(&str) -> Option<String>,
    ) -> Plan {
        let (steps, states) = plan_steps(&chain, &project.lock, &record.steps, output_of);
        let unchanged = (steps.iter().zip(&states))
            .map(|(p, s)| {
                *s == StepState::Done
                    && (record.steps.get(p.id())).is_some_and(|r| r.key == p.key && r.unchanged)
            })
            .collect();
        Plan {
            chain,
            steps,
            states,
            unchanged,
        }
    }

    /// How many steps have a checkpoint under their current key.
    pub fn done(&self) -> usize {
        self.states
            .iter()
            .filter(|s| **s == StepState::Done)
            .count()
    }

    /// Whether step `later` sees the output of step `earlier` (both
    /// positions in the chain): every step before it, or those it needs.
    pub fn sees(&self, later: usize, earlier: usize) -> bool {
        let needs = &self.steps[later].chain_step.step.definition.needs;
        earlier < later
            && (needs.is_empty() || needs.contains(&self.steps[earlier].id().to_string()))
    }

    /// The position of step `id` in the chain.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|p| p.id() == id)
    }

    pub fn rows(&self) -> Vec<PlanRow> {
        (self.steps.iter().zip(&self.states).zip(&self.unchanged))
            .map(|((p, s), unchanged)| PlanRow {
                index: p.index + 1,
                id: p.id().to_string(),
                stage: p.chain_step.stage.clone(),
                runner: p.chain_step.runner.to_string(),
                version: p.chain_step.step.definition.version.clone(),
                key: p.key.clone(),
                key_assumes: p.assumes.clone(),
                kernel: p.chain_step.vm.as_ref().map(|vm| vm.kernel.clone()),
                kexec: (p.chain_step.step.definition.kexec.as_ref()).map(|k| k.kernel.clone()),
                built_in: None,
                note: unchanged.then_some(UNCHANGED),
                state: s.clone(),
            })
            .collect()
    }
}
