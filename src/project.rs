//! A project on disk: `sources.lock`, `steps/`, `steps/targets/`, `patches/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::step::{Kexec, Step};
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
        // It becomes a record, a log directory and an outputs file.
        crate::names::identifier(target).map_err(|why| Error::Usage(format!("target {why}")))?;
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
        let mut steps: Vec<ChainStep> = Vec::new();
        // The guest of the last VM stage, and a kexec that ended the stage
        // before this one: the next stage runs on the kernel it loaded.
        let mut machine: Option<VmSettings> = None;
        let mut hop: Option<(String, Kexec)> = None;
        for stage in &target.stages {
            let bad = |message: String| Error::input(&target.path, stage.at.clone(), message);
            let vm = match (stage.runner, &stage.vm, hop.take()) {
                (RunnerKind::Vm, None, Some((_, kexec))) => {
                    let previous = machine.clone().expect("a kexec step runs in a VM stage");
                    Some(VmSettings {
                        kernel: kexec.kernel,
                        initrd: kexec.initrd,
                        append: kexec.append,
                        ..previous
                    })
                }
                (_, _, Some((id, _))) => {
                    return Err(bad(format!(
                        "stage {:?} follows the kexec step {id}, so it runs on the kernel that \
                         step loaded: make it a vm stage without vm: settings",
                        stage.name
                    )));
                }
                (RunnerKind::Vm, None, None) => {
                    return Err(bad(format!(
                        "stage {:?} runs in a VM: give its vm: settings (kernel at least), \
                         or end the stage before it with a kexec step",
                        stage.name
                    )));
                }
                (RunnerKind::Vm, Some(vm), None) => Some(vm.clone()),
                (RunnerKind::Host, _, None) => None,
            };
            if vm.is_some() {
                machine = vm.clone();
            }
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
                                step_ref.at.clone(),
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
                if !step_ref.applies(&target.config) {
                    continue;
                }
                let bad =
                    |message: String| Error::input(&target.path, step_ref.at.clone(), message);
                if let Some((id, _)) = &hop {
                    return Err(bad(format!(
                        "the kexec step {id} must end its stage: the steps after it run on \
                         the new kernel, in a stage of their own"
                    )));
                }
                if let Some(kexec) = &step.definition.kexec {
                    if vm.is_none() {
                        return Err(bad(format!(
                            "{} is a kexec step: it runs in a guest, in a stage with runner: vm",
                            step_ref.step
                        )));
                    }
                    for file in kexec.files() {
                        let (from, _) = VmSettings::file_ref(file).expect("checked on load");
                        if !steps.iter().any(|s| s.id == from) {
                            return Err(bad(format!(
                                "{}: kexec {file:?}: {from} is not a step before it",
                                step_ref.step
                            )));
                        }
                    }
                    hop = Some((step_ref.id(), kexec.clone()));
                }
                steps.push(ChainStep {
                    id: step_ref.id(),
                    stage: stage.name.clone(),
                    runner: stage.runner,
                    vm: vm.clone(),
                    pass: step_ref.pass,
                    step,
                });
            }
        }
        if let Some((id, _)) = hop {
            return Err(Error::input(
                &target.path,
                None,
                format!("the kexec step {id} ends the target: add the stage that runs after it"),
            ));
        }
        check_needs(&steps)?;
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

/// `needs:` (see docs/design.md, "Plan and cache keys"): which steps come
/// earlier is known only in a resolved chain, so it is checked here,
/// pointing at the entry in the step file.
/// Each step's `needs:` names an earlier step of its own stage, in a host
/// stage: a guest's root disk holds every earlier output, so a step of a
/// VM stage cannot see fewer.
fn check_needs(steps: &[ChainStep]) -> Result<()> {
    for (index, chain_step) in steps.iter().enumerate() {
        let step = &chain_step.step;
        let needs = step.definition.needs.iter().zip(&step.needs_at);
        for (need, at) in needs {
            let bad = |message: String| Error::input(&step.path, at.clone(), message);
            if chain_step.runner != RunnerKind::Host {
                return Err(bad(format!(
                    "{}: needs: only steps of host stages may name what they see; in stage \
                     {:?} (runner {}) a step sees every earlier output on its guest's disk",
                    chain_step.id, chain_step.stage, chain_step.runner
                )));
            }
            let found = steps.iter().position(|s| s.id == *need);
            let message = match found {
                None => format!(
                    "{}: needs: {need} is not a step of this target",
                    chain_step.id
                ),
                Some(at) if at >= index => format!(
                    "{}: needs: {need} comes after it in the target; a step can only need \
                     earlier steps",
                    chain_step.id
                ),
                Some(at) if steps[at].stage != chain_step.stage => format!(
                    "{}: needs: {need} is in stage {:?}, not in {:?}; a host step sees only \
                     its own stage's outputs",
                    chain_step.id, steps[at].stage, chain_step.stage
                ),
                Some(_) => continue,
            };
            return Err(bad(message));
        }
    }
    Ok(())
}
