//! A project on disk: `sources.lock`, `steps/`, `steps/targets/`, `patches/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::step::Step;
use crate::target::{RunnerKind, Target, VmSettings};

#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub lock: Lock,
}

/// One step of a resolved chain, in order.
#[derive(Debug, Clone)]
pub struct ChainStep {
    pub id: String,
    pub stage: String,
    pub runner: RunnerKind,
    /// The stage's VM settings, for steps of a `vm` stage.
    pub vm: Option<VmSettings>,
    pub pass: Option<u32>,
    pub step: Arc<Step>,
}

/// A target with its conditions evaluated and its step files loaded.
#[derive(Debug, Clone)]
pub struct Chain {
    pub target: Target,
    pub steps: Vec<ChainStep>,
    /// sha256 of the guest agent (`vm/agent`), part of every VM step's key;
    /// empty when the chain has no VM stage.
    pub agent_sha256: String,
}

impl Project {
    pub fn open(root: &Path) -> Result<Self> {
        let lock_path = root.join("sources.lock");
        if !lock_path.exists() {
            return Err(Error::Usage(format!(
                "{} not found: run stagebuild in a project directory or pass --project DIR",
                lock_path.display()
            )));
        }
        Ok(Project {
            root: root.to_path_buf(),
            lock: Lock::load(&lock_path)?,
        })
    }

    pub fn target_path(&self, name: &str) -> PathBuf {
        self.root.join("steps/targets").join(format!("{name}.yaml"))
    }

    /// Loads a target and every step file it uses, and resolves the chain.
    pub fn chain(&self, target: &str, overrides: &[(String, String)]) -> Result<Chain> {
        let path = self.target_path(target);
        if !path.exists() {
            return Err(Error::Usage(format!(
                "no target {target:?}: {} does not exist (targets: {})",
                path.display(),
                self.target_names().join(", ")
            )));
        }
        let target = Target::load(&path, overrides)?;
        let mut loaded: BTreeMap<String, Arc<Step>> = BTreeMap::new();
        let mut steps = Vec::new();
        for stage in &target.stages {
            for step_ref in &stage.steps {
                let step = match loaded.get(&step_ref.step) {
                    Some(step) => step.clone(),
                    None => {
                        let step_path = self
                            .root
                            .join("steps")
                            .join(format!("{}.yaml", step_ref.step));
                        if !step_path.exists() {
                            return Err(Error::input(
                                &target.path,
                                step_ref.line,
                                format!(
                                    "step {:?} does not exist: no {}",
                                    step_ref.step,
                                    step_path.display()
                                ),
                            ));
                        }
                        let step = Arc::new(Step::load(&step_path, &self.root, &self.lock)?);
                        loaded.insert(step_ref.step.clone(), step.clone());
                        step
                    }
                };
                if step_ref.applies(&target.config) {
                    steps.push(ChainStep {
                        id: step_ref.id(),
                        stage: stage.name.clone(),
                        runner: stage.runner,
                        vm: stage.vm.clone(),
                        pass: step_ref.pass,
                        step,
                    });
                }
            }
        }
        let agent_sha256 = if steps.iter().any(|s| s.vm.is_some()) {
            let agent = self.agent_path();
            crate::digest::file_sha256(&agent)
                .map_err(|e| Error::Usage(format!("the guest agent {}: {e}", agent.display())))?
                .0
        } else {
            String::new()
        };
        Ok(Chain {
            target,
            steps,
            agent_sha256,
        })
    }

    /// The guest agent every VM step's guest runs as its first process.
    pub fn agent_path(&self) -> PathBuf {
        self.root.join("vm/agent")
    }

    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("steps/targets"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".yaml").map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }
}
