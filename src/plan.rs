//! Cache keys and the state of each step. Pure logic: no disk, no processes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::canonical_sha256;
use crate::lock::Lock;
use crate::project::{Chain, ChainStep};

/// What a step's cache key is made of, each part a sha256, so that a changed
/// key can be explained part by part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The step's normalised definition and its pass.
    pub definition: String,
    /// Names and checksums of its sources.
    pub sources: String,
    /// Names and contents of its patches.
    pub patches: String,
    /// Names and contents of its extra files.
    pub files: String,
    /// The runner kind and settings, the stage and SOURCE_DATE_EPOCH.
    pub runner: String,
    /// The key of the step before it in the chain.
    pub parent: Option<String>,
}

impl KeyInputs {
    pub fn key(&self) -> String {
        canonical_sha256(&("stagebuild-step-key", 1, self))
    }
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub index: usize,
    pub chain_step: ChainStep,
    pub inputs: KeyInputs,
    pub key: String,
}

impl PlannedStep {
    pub fn id(&self) -> &str {
        &self.chain_step.id
    }
}

/// Computes every step's cache key, in chain order.
pub fn keys(chain: &Chain, lock: &Lock) -> Vec<PlannedStep> {
    let mut parent: Option<String> = None;
    let mut planned = Vec::with_capacity(chain.steps.len());
    for (index, chain_step) in chain.steps.iter().enumerate() {
        let step = &chain_step.step;
        let sources: Vec<(&str, &str)> = step
            .definition
            .sources
            .iter()
            .map(|name| {
                let entry = lock
                    .get(name)
                    .expect("step sources were checked against the lock");
                (name.as_str(), entry.sha256.as_str())
            })
            .collect();
        let named = |files: &[crate::step::ProjectFile]| -> Vec<(String, String)> {
            files
                .iter()
                .map(|f| (f.file.clone(), f.sha256.clone()))
                .collect()
        };
        let inputs = KeyInputs {
            definition: canonical_sha256(&(&step.definition, chain_step.pass)),
            sources: canonical_sha256(&sources),
            patches: canonical_sha256(&named(&step.patches)),
            files: canonical_sha256(&named(&step.files)),
            runner: canonical_sha256(&(
                chain_step.runner,
                &chain_step.stage,
                chain.target.source_date_epoch,
                &chain_step.vm,
                chain_step.vm.as_ref().map(|_| &chain.agent_sha256),
            )),
            parent: parent.clone(),
        };
        let key = inputs.key();
        parent = Some(key.clone());
        planned.push(PlannedStep {
            index,
            chain_step: chain_step.clone(),
            inputs,
            key,
        });
    }
    planned
}

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

    #[test]
    fn keys_are_stable_and_depend_on_every_input() {
        let base = inputs("d", Some("p"));
        // A fixed value: if this changes, every user's checkpoints are invalidated.
        assert_eq!(
            base.key(),
            "34692ef5b8cf316ac1053694d725bcb735fe6baaac5e5b54311530d5daaa51df"
        );
        for changed in [
            KeyInputs {
                definition: "x".into(),
                ..base.clone()
            },
            KeyInputs {
                sources: "x".into(),
                ..base.clone()
            },
            KeyInputs {
                patches: "x".into(),
                ..base.clone()
            },
            KeyInputs {
                files: "x".into(),
                ..base.clone()
            },
            KeyInputs {
                runner: "x".into(),
                ..base.clone()
            },
            KeyInputs {
                parent: None,
                ..base.clone()
            },
        ] {
            assert_ne!(changed.key(), base.key());
        }
    }
}

/// Literal keys of a real project on disk, through the real loaders: any
/// change to how a key is derived (normalisation, any of its parts, the
/// chaining) changes one of these, and would invalidate every user's
/// checkpoints, so it must be deliberate.
#[cfg(test)]
mod pinned_keys {
    use std::fs;

    use crate::project::Project;

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn keys_of_a_fixed_project_are_pinned_and_each_input_moves_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "sources.lock",
            "version: 1\nsources:\n  - name: a-1.tar.gz\n    sha256: \
             0000000000000000000000000000000000000000000000000000000000000001\n    \
             size: 1\n    urls: [\"https://example.org/a-1.tar.gz\"]\n",
        );
        write(
            root,
            "steps/a.yaml",
            "name: a\nversion: \"1\"\ndescription: A.\nsources: [a-1.tar.gz]\n\
             patches: [fix.patch]\nfiles: [extra.conf]\nbuild: |\n  true\n",
        );
        write(root, "patches/a/fix.patch", "--- a/x\n+++ b/x\n");
        write(root, "files/a/extra.conf", "setting = 1\n");
        write(
            root,
            "steps/b.yaml",
            "name: b\nversion: \"2\"\ndescription: B.\nbuild: |\n  true\n",
        );
        write(
            root,
            "steps/targets/t.yaml",
            "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    \
             runner: host\n    steps: [a, b]\n",
        );
        let keys = || {
            let project = Project::open(root).unwrap();
            let chain = project.chain("t", &[]).unwrap();
            super::keys(&chain, &project.lock)
                .into_iter()
                .map(|p| p.key)
                .collect::<Vec<_>>()
        };
        let pinned = keys();
        assert_eq!(
            pinned,
            [
                "c8634b7400700f85f62db4b54be7cfdf9a9b8dd8e603ff9e56cfdb9f21aed2da".to_string(),
                "5fab84d9c131136ed10366320203812b666dee64c21fa2370c6b6464421f3400".to_string(),
            ]
        );
        // Each input moves the first key, and through the parent the second.
        for (rel, text) in [
            ("files/a/extra.conf", "setting = 2\n"),
            ("patches/a/fix.patch", "--- a/y\n+++ b/y\n"),
        ] {
            let before = fs::read_to_string(root.join(rel)).unwrap();
            write(root, rel, text);
            let moved = keys();
            assert_ne!(moved[0], pinned[0], "{rel}");
            assert_ne!(moved[1], pinned[1], "{rel}");
            write(root, rel, &before);
        }
        assert_eq!(keys(), pinned);
    }
}
