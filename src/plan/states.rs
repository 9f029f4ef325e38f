//! The state of each planned step, and why a step must be built again.
//! Pure logic: no disk, no processes.
//!
//! A key is known only once the outputs before it are ([`super::keys`]), so
//! a plan walks the chain as a run would: a step with a checkpoint under its
//! key produced that checkpoint's output; one still to build is assumed to
//! produce what its record says it produced last time, so that the steps
//! after it can be shown as kept if it does.

use std::collections::BTreeMap;

use serde::Serialize;

use super::keys::{KeyInputs, Keys, PlannedStep, Sees};
use crate::lock::Lock;
use crate::project::Chain;
pub use crate::record::RecordedStep;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// A checkpoint exists under the current key.
    Done,
    /// Never built for this target.
    ToBuild,
    /// Built before, but an input changed (or its checkpoint is gone).
    Invalidated { reasons: Vec<String> },
    /// Its key waits on the output of `if_unchanged`, an earlier step to
    /// be built: if that output is what it was, this checkpoint is kept.
    MayBeKept { if_unchanged: String },
}

impl StepState {
    pub fn label(&self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::ToBuild => "to build",
            StepState::Invalidated { .. } => "invalidated",
            StepState::MayBeKept { .. } => "may be kept",
        }
    }

    /// What follows the label in `plan`: the reasons, or the condition.
    pub fn detail(&self) -> String {
        match self {
            StepState::Invalidated { reasons } => format!(": {}", reasons.join("; ")),
            StepState::MayBeKept { if_unchanged } => {
                format!(": kept if the output of {if_unchanged} is unchanged")
            }
            StepState::Done | StepState::ToBuild => String::new(),
        }
    }
}

/// Each step's key and state, given what was recorded and `output_of`, the
/// output (manifest sha256) of the checkpoint under a key, if there is one.
pub fn plan_steps(
    chain: &Chain,
    lock: &Lock,
    record: &BTreeMap<String, RecordedStep>,
    output_of: impl Fn(&str) -> Option<String>,
) -> (Vec<PlannedStep>, Vec<StepState>) {
    let mut keys = Keys::new(chain, lock);
    let mut planned = Vec::with_capacity(keys.len());
    let mut states = Vec::with_capacity(keys.len());
    // For each step so far: the first step still to build its output waits on.
    let mut waits: Vec<Option<String>> = Vec::with_capacity(keys.len());
    let mut first_wait: Option<String> = None;
    for (index, chain_step) in chain.steps.iter().enumerate() {
        let inputs = keys.next();
        let key = inputs.key();
        let assumes = match keys.sees(index) {
            Sees::All => first_wait.clone(),
            Sees::Needs(at) => at.iter().find_map(|&i| waits[i].clone()),
        };
        let id = chain_step.id.as_str();
        let recorded = record.get(id);
        let (state, output, wait) = match output_of(&key) {
            Some(output) => {
                let state = match &assumes {
                    None => StepState::Done,
                    Some(step) => StepState::MayBeKept {
                        if_unchanged: step.clone(),
                    },
                };
                (state, output, assumes.clone())
            }
            None => {
                let state = match recorded {
                    None => StepState::ToBuild,
                    Some(r) if r.key == key => StepState::Invalidated {
                        reasons: vec!["its checkpoint is missing".into()],
                    },
                    Some(r) => StepState::Invalidated {
                        reasons: reasons(r, &inputs, index, &keys, chain, record),
                    },
                };
                let output = recorded.and_then(|r| r.output.clone());
                (state, output.unwrap_or_default(), Some(id.to_string()))
            }
        };
        if first_wait.is_none() {
            first_wait = wait.clone();
        }
        waits.push(wait);
        keys.produced(&output);
        planned.push(PlannedStep {
            index,
            chain_step: chain_step.clone(),
            inputs,
            key,
            assumes,
        });
        states.push(state);
    }
    (planned, states)
}

fn reasons(
    recorded: &RecordedStep,
    new: &KeyInputs,
    index: usize,
    keys: &Keys,
    chain: &Chain,
    record: &BTreeMap<String, RecordedStep>,
) -> Vec<String> {
    let (old, keyed_at) = (&recorded.inputs, recorded.keyed_at);
    let mut reasons = Vec::new();
    for (old, new, what) in [
        (&old.definition, &new.definition, "its step file changed"),
        (&old.sources, &new.sources, "its sources changed"),
        (&old.patches, &new.patches, "its patches changed"),
        (&old.files, &new.files, "its files changed"),
        (&old.runner, &new.runner, "its runner settings changed"),
    ] {
        if old != new {
            reasons.push(what.to_string());
        }
    }
    if old.earlier != new.earlier {
        reasons.push(earlier_reason(old, keyed_at, index, keys, chain, record));
    }
    reasons
}

/// Why what a step sees of the earlier steps changed: the first of them that
/// is new, whose output changed after this step was keyed, or that produces
/// something else than its record says.
fn earlier_reason(
    old: &KeyInputs,
    keyed_at: u64,
    index: usize,
    keys: &Keys,
    chain: &Chain,
    record: &BTreeMap<String, RecordedStep>,
) -> String {
    if old.earlier.is_empty() {
        return "recorded by an older stagebuild, whose keys chained on the step before".into();
    }
    let seen = (0..index).filter(|&j| keys.sees_step(index, j));
    for j in seen {
        let id = &chain.steps[j].id;
        match record.get(id) {
            None => return format!("{id}, before it, is new"),
            Some(r) if r.changed_at > keyed_at || r.output.as_deref() != Some(keys.output(j)) => {
                return format!("the output of {id} changed");
            }
            Some(_) => {}
        }
    }
    "the steps before it changed".into()
}

#[cfg(test)]
#[path = "states_tests.rs"]
mod tests;
