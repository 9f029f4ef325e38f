//! The state of each planned step, and why a step must be built again.
//! Pure logic: no disk, no processes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{KeyInputs, PlannedStep};

/// What the state directory last recorded for a step of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStep {
    pub key: String,
    pub inputs: KeyInputs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// A checkpoint exists under the current key.
    Done,
    /// Never built for this target.
    ToBuild,
    /// Built before, but an input changed (or its checkpoint is gone).
    Invalidated { reasons: Vec<String> },
}

impl StepState {
    pub fn label(&self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::ToBuild => "to build",
            StepState::Invalidated { .. } => "invalidated",
        }
    }
}

/// The state of each planned step, given what was recorded and which
/// checkpoints exist.
pub fn states(
    planned: &[PlannedStep],
    record: &BTreeMap<String, RecordedStep>,
    has_checkpoint: impl Fn(&str) -> bool,
) -> Vec<StepState> {
    let mut out = Vec::with_capacity(planned.len());
    // The first earlier step whose key differs from its record: the reason its
    // successors' parent keys changed.
    let mut first_changed: Option<&str> = None;
    for step in planned {
        let recorded = record.get(step.id());
        let key_changed = recorded.is_none_or(|r| r.key != step.key);
        let state = if has_checkpoint(&step.key) {
            StepState::Done
        } else {
            match recorded {
                None => StepState::ToBuild,
                Some(r) if r.key == step.key => StepState::Invalidated {
                    reasons: vec!["its checkpoint is missing".into()],
                },
                Some(r) => StepState::Invalidated {
                    reasons: reasons(&r.inputs, &step.inputs, first_changed),
                },
            }
        };
        if key_changed && first_changed.is_none() {
            first_changed = Some(step.id());
        }
        out.push(state);
    }
    out
}

fn reasons(old: &KeyInputs, new: &KeyInputs, first_changed: Option<&str>) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.definition != new.definition {
        reasons.push("its step file changed".to_string());
    }
    if old.sources != new.sources {
        reasons.push("its sources changed".to_string());
    }
    if old.patches != new.patches {
        reasons.push("its patches changed".to_string());
    }
    if old.files != new.files {
        reasons.push("its files changed".to_string());
    }
    if old.runner != new.runner {
        reasons.push("its runner settings changed".to_string());
    }
    if old.parent != new.parent {
        reasons.push(match first_changed {
            Some(id) => format!("an earlier step changed ({id})"),
            None => "an earlier step changed".to_string(),
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::ChainStep;

    fn inputs(def: &str, parent: Option<&str>) -> KeyInputs {
        KeyInputs {
            definition: def.into(),
            sources: "s".into(),
            patches: "p".into(),
            files: "f".into(),
            runner: "r".into(),
            parent: parent.map(str::to_string),
        }
    }

    fn chain_step(id: &str) -> ChainStep {
        let step = crate::step::Step {
            path: format!("{id}.yaml").into(),
            description: String::new(),
            prose: Default::default(),
            definition: crate::step::Definition {
                name: id.into(),
                version: "1".into(),
                sources: vec![],
                unpack: Default::default(),
                patches: vec![],
                files: vec![],
                workdir: None,
                env: Default::default(),
                configure: None,
                build: Some("true".into()),
                kexec: None,
                install: None,
                timeout: None,
            },
            patches: vec![],
            files: vec![],
        };
        ChainStep {
            id: id.into(),
            stage: "host".into(),
            runner: crate::target::RunnerKind::Host,
            vm: None,
            pass: None,
            step: std::sync::Arc::new(step),
        }
    }

    /// A three-step chain whose definitions are given; keys chain through parents.
    fn plan(defs: [&str; 3]) -> Vec<PlannedStep> {
        let mut parent = None;
        ["a", "b", "c"]
            .iter()
            .zip(defs)
            .enumerate()
            .map(|(index, (id, def))| {
                let inputs = inputs(def, parent.as_deref());
                let key = inputs.key();
                parent = Some(key.clone());
                PlannedStep {
                    index,
                    chain_step: chain_step(id),
                    inputs,
                    key,
                }
            })
            .collect()
    }

    fn record(planned: &[PlannedStep]) -> BTreeMap<String, RecordedStep> {
        planned
            .iter()
            .map(|p| {
                (
                    p.id().to_string(),
                    RecordedStep {
                        key: p.key.clone(),
                        inputs: p.inputs.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_edit_invalidates_the_step_and_its_successors_only() {
        let built = plan(["1", "1", "1"]);
        let existing: Vec<String> = built.iter().map(|p| p.key.clone()).collect();
        let edited = plan(["1", "2", "1"]);
        let states = states(&edited, &record(&built), |k| {
            existing.iter().any(|e| e == k)
        });
        assert_eq!(states[0], StepState::Done);
        assert_eq!(
            states[1],
            StepState::Invalidated {
                reasons: vec!["its step file changed".into()]
            }
        );
        assert_eq!(
            states[2],
            StepState::Invalidated {
                reasons: vec!["an earlier step changed (b)".into()]
            }
        );
    }

    #[test]
    fn unbuilt_steps_are_to_build_and_lost_checkpoints_are_named() {
        let built = plan(["1", "1", "1"]);
        let states_new = states(&built, &BTreeMap::new(), |_| false);
        assert!(states_new.iter().all(|s| *s == StepState::ToBuild));
        let first = built[0].key.clone();
        let states_lost = states(&built, &record(&built), |k| k == first);
        assert_eq!(states_lost[0], StepState::Done);
        assert_eq!(
            states_lost[1],
            StepState::Invalidated {
                reasons: vec!["its checkpoint is missing".into()]
            }
        );
    }
}
