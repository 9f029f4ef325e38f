//! Each step's cache key and what it is made of. Pure logic: no disk, no
//! processes.
//!
//! A key covers the step's own inputs and what the earlier steps it sees
//! produced (their output manifests' digests), never how those were asked
//! to produce it: a rebuilt step whose output is unchanged leaves every
//! later key as it was (early cut-off). So a key is known only once the
//! outputs before it are; [`Keys`] computes them in chain order, one output
//! at a time.

use crate::digest::canonical_sha256;
use crate::lock::Lock;
use crate::project::{Chain, ChainStep};
pub use crate::record::KeyInputs;

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub index: usize,
    pub chain_step: ChainStep,
    pub inputs: KeyInputs,
    pub key: String,
    /// The first earlier step, still to be built, whose output this key
    /// assumes: the output its record names, or, when it has none, a stand-in
    /// (the key is then only a placeholder). `None`: the key is certain.
    pub assumes: Option<String>,
}

impl PlannedStep {
    pub fn id(&self) -> &str {
        &self.chain_step.id
    }
}

/// The earlier steps a step sees: all before it, or those its `needs:`
/// names (their positions in the chain, ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sees {
    All,
    Needs(Vec<usize>),
}

/// The keys of a chain, computed step by step as each step's output becomes
/// known.
pub struct Keys {
    ids: Vec<String>,
    own: Vec<KeyInputs>,
    sees: Vec<Sees>,
    /// `folds[i]`: the digest of the outputs of steps `0..i`, chained.
    folds: Vec<String>,
    outputs: Vec<String>,
}

impl Keys {
    pub fn new(chain: &Chain, lock: &Lock) -> Keys {
        let ids: Vec<String> = chain.steps.iter().map(|s| s.id.clone()).collect();
        let sees = chain
            .steps
            .iter()
            .map(|s| match &s.step.definition.needs[..] {
                [] => Sees::All,
                needs => {
                    let mut at: Vec<usize> = needs
                        .iter()
                        .filter_map(|n| ids.iter().position(|id| id == n))
                        .collect();
                    at.sort_unstable();
                    Sees::Needs(at)
                }
            })
            .collect();
        Keys {
            own: chain
                .steps
                .iter()
                .map(|s| own_inputs(chain, s, lock))
                .collect(),
            ids,
            sees,
            folds: vec![canonical_sha256(&("stagebuild-earlier", ()))],
            outputs: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// How many outputs are known: the step whose key is next.
    pub fn known(&self) -> usize {
        self.outputs.len()
    }

    pub fn sees(&self, index: usize) -> &Sees {
        &self.sees[index]
    }

    /// Whether step `later` sees step `earlier`'s output directly.
    pub fn sees_step(&self, later: usize, earlier: usize) -> bool {
        earlier < later
            && match &self.sees[later] {
                Sees::All => true,
                Sees::Needs(at) => at.contains(&earlier),
            }
    }

    /// The key inputs of the next step, from the outputs given so far.
    pub fn next(&self) -> KeyInputs {
        let index = self.outputs.len();
        let earlier = match &self.sees[index] {
            Sees::All => self.folds[index].clone(),
            Sees::Needs(at) => canonical_sha256(&(
                "stagebuild-needs",
                at.iter()
                    .map(|&i| (&self.ids[i], &self.outputs[i]))
                    .collect::<Vec<_>>(),
            )),
        };
        KeyInputs {
            earlier,
            ..self.own[index].clone()
        }
    }

    /// The output given for step `index`.
    pub fn output(&self, index: usize) -> &str {
        &self.outputs[index]
    }

    /// The next step produced `output` (its manifest's sha256).
    pub fn produced(&mut self, output: &str) {
        let index = self.outputs.len();
        let fold = canonical_sha256(&(
            "stagebuild-earlier",
            &self.folds[index],
            &self.ids[index],
            output,
        ));
        self.folds.push(fold);
        self.outputs.push(output.to_string());
    }
}

/// The parts of a step's key that are its own: everything but `earlier`.
fn own_inputs(chain: &Chain, chain_step: &ChainStep, lock: &Lock) -> KeyInputs {
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
    KeyInputs {
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
        earlier: String::new(),
    }
}

/// Every step's key when each step produces what `output_of` gives for its
/// key (`None`: not built; later keys then take a stand-in). For tests and
/// for listing what a project references.
pub fn keys_with(
    chain: &Chain,
    lock: &Lock,
    output_of: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut keys = Keys::new(chain, lock);
    let mut out = Vec::with_capacity(keys.len());
    while keys.known() < keys.len() {
        let key = keys.next().key();
        keys.produced(&output_of(&key).unwrap_or_default());
        out.push(key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(def: &str, earlier: &str) -> KeyInputs {
        KeyInputs {
            definition: def.into(),
            sources: "s".into(),
            patches: "p".into(),
            files: "f".into(),
            runner: "r".into(),
            earlier: earlier.into(),
        }
    }

    #[test]
    fn keys_are_stable_and_depend_on_every_input() {
        let base = inputs("d", "e");
        // A fixed value: if this changes, every user's checkpoints are invalidated.
        assert_eq!(
            base.key(),
            "852339eae718487108b8165fac8c4cbc3223891558ca84ef51389729bfb7edd0"
        );
        for changed in [
            inputs("x", "e"),
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
            inputs("d", "x"),
        ] {
            assert_ne!(changed.key(), base.key());
        }
    }
}
