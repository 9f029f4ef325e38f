//! Target manifests (`steps/targets/<name>.yaml`): ordered stages of steps.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::error::{Error, Result, Spot};
use crate::yaml::Doc;

/// A configuration value; conditions compare their text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerKind {
    /// A namespace sandbox on the build machine.
    Host,
    /// A qemu guest booted for each step, its root disk the previous
    /// checkpoint.
    Vm,
}

impl fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerKind::Host => f.write_str("host"),
            RunnerKind::Vm => f.write_str("vm"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    source_date_epoch: u64,
    #[serde(default)]
    config: BTreeMap<String, Scalar>,
    stages: Vec<Spanned<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    runner: RunnerKind,
    #[serde(default)]
    vm: Option<Spanned<RawVm>>,
    steps: Vec<Spanned<RawStepRef>>,
}

/// [`VmSettings`] as written, with where its files are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    kernel: Spanned<String>,
    #[serde(default)]
    initrd: Option<Spanned<String>>,
    #[serde(default = "default_memory")]
    memory: u32,
    #[serde(default = "default_disk")]
    disk: u32,
    #[serde(default = "default_boot_timeout")]
    boot_timeout: u64,
    #[serde(default = "default_step_timeout")]
    step_timeout: u64,
    #[serde(default)]
    append: Option<Spanned<String>>,
}

impl RawVm {
    fn settings(&self, machine: &str) -> VmSettings {
        VmSettings {
            kernel: self.kernel.value.clone(),
            initrd: self.initrd.as_ref().map(|i| i.value.clone()),
            memory: self.memory,
            disk: self.disk,
            boot_timeout: self.boot_timeout,
            step_timeout: self.step_timeout,
            append: self
                .append
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default(),
            machine: machine.to_string(),
        }
    }
}

/// How a `vm` stage's guest is made. Files are named `STEP:PATH`, a path in
/// the output of an earlier step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSettings {
    pub kernel: String,
    #[serde(default)]
    pub initrd: Option<String>,
    /// Guest memory in MiB.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Size of the root disk in MiB.
    #[serde(default = "default_disk")]
    pub disk: u32,
    /// Seconds the guest may take to announce itself.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: u64,
    /// Seconds a step may run, unless the step says otherwise.
    #[serde(default = "default_step_timeout")]
    pub step_timeout: u64,
    /// Extra kernel command line.
    #[serde(default)]
    pub append: String,
    /// The stage whose guest this is: a stage entered by a kexec runs on the
    /// machine of the stage before it, and continues its disk.
    #[serde(skip_deserializing, default)]
    pub machine: String,
}

fn default_memory() -> u32 {
    512
}
fn default_disk() -> u32 {
    1024
}
fn default_boot_timeout() -> u64 {
    120
}
fn default_step_timeout() -> u64 {
    3600
}

impl VmSettings {
    /// `STEP:PATH` split in two. PATH stays inside the step's output: it is
    /// relative, without `..`.
    pub fn file_ref(value: &str) -> Option<(&str, &str)> {
        value.split_once(':').filter(|(s, p)| {
            !s.is_empty()
                && !p.is_empty()
                && !p.contains('\0')
                && Path::new(p)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "each step must be a step name, or { step: NAME, pass: N, when: { VARIABLE: VALUES } }"
)]
enum RawStepRef {
    Name(String),
    Full(FullStepRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullStepRef {
    step: String,
    #[serde(default)]
    pass: Option<u32>,
    #[serde(default)]
    when: BTreeMap<String, OneOrMany>,
}

/// One use of a step file in a target. The same step file may be used more
/// than once with different passes (`gcc` pass 1 and pass 2).
#[derive(Debug, Clone)]
pub struct StepRef {
    pub step: String,
    pub pass: Option<u32>,
    /// Config variable → accepted values; all must match.
    pub when: BTreeMap<String, Vec<String>>,
    /// Where the target lists it, for errors found when the chain is made.
    pub at: Option<Spot>,
}

impl StepRef {
    /// The step's id in the chain: its name, with `-passN` for later passes.
    pub fn id(&self) -> String {
        match self.pass {
            Some(n) => format!("{}-pass{n}", self.step),
            None => self.step.clone(),
        }
    }

    pub fn applies(&self, config: &BTreeMap<String, String>) -> bool {
        self.when
            .iter()
            .all(|(var, values)| config.get(var).is_some_and(|v| values.contains(v)))
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub at: Option<Spot>,
    pub runner: RunnerKind,
    pub vm: Option<VmSettings>,
    pub steps: Vec<StepRef>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub source_date_epoch: u64,
    pub config: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

impl Target {
    /// Loads a target; `overrides` (from `--set var=value`) replace config values.
    pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Self> {
        let doc = Doc::read(path)?;
        let raw: RawTarget = doc.parse()?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if raw.name.value != stem {
            return Err(doc.error(
                &raw.name,
                format!(
                    "the target is named {:?} but its file is {stem}.yaml",
                    raw.name.value
                ),
            ));
        }

        let mut config: BTreeMap<String, String> = raw
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        for (var, value) in overrides {
            if !config.contains_key(var) {
                return Err(Error::Usage(format!(
                    "--set {var}: the target {} has no config variable {var} (it has: {})",
                    raw.name.value,
                    config.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            config.insert(var.clone(), value.clone());
        }

        if raw.stages.is_empty() {
            return Err(doc.error_at_line(1, "the target has no stages"));
        }
        let mut stages = Vec::new();
        let mut stage_names = Vec::new();
        let mut ids = BTreeMap::new();
        for stage in raw.stages {
            let stage_at = doc.spot_of(&stage);
            if stage_names.contains(&stage.value.name) {
                return Err(doc.error(
                    &stage,
                    format!("stage {:?} is listed twice", stage.value.name),
                ));
            }
            let stage = stage.value;
            stage_names.push(stage.name.clone());
            let mut steps = Vec::new();
            for entry in stage.steps {
                let at = doc.spot_of(&entry);
                let bad = |message: String| doc.error(&entry, message);
                let step_ref = match &entry.value {
                    RawStepRef::Name(step) => StepRef {
                        step: step.clone(),
                        pass: None,
                        when: BTreeMap::new(),
                        at: at.clone(),
                    },
                    RawStepRef::Full(full) => StepRef {
                        step: full.step.clone(),
                        pass: full.pass,
                        when: full
                            .when
                            .iter()
                            .map(|(var, values)| {
                                let values = match values {
                                    OneOrMany::One(v) => vec![v.to_string()],
                                    OneOrMany::Many(vs) => {
                                        vs.iter().map(Scalar::to_string).collect()
                                    }
                                };
                                (var.clone(), values)
                            })
                            .collect(),
                        at: at.clone(),
                    },
                };
                // The name becomes a step file, a work directory and a log.
                crate::names::identifier(&step_ref.step)
                    .map_err(|why| bad(format!("step {why}")))?;
                if step_ref.pass == Some(0) {
                    return Err(bad("passes count from 1".into()));
                }
                if let Some(var) = step_ref.when.keys().find(|v| !config.contains_key(*v)) {
                    return Err(bad(format!(
                        "condition on {var:?}, which is not in the target's config"
                    )));
                }
                let id = step_ref.id();
                if let Some(first) = ids.insert(id.clone(), at.as_ref().map(|a| a.line)) {
                    let first = first
                        .map(|l| format!(" (first at line {l})"))
                        .unwrap_or_default();
                    return Err(bad(format!(
                        "step {id} appears twice{first}; give each use its own pass"
                    )));
                }
                steps.push(step_ref);
            }
            let vm = match (stage.runner, stage.vm) {
                (RunnerKind::Vm, Some(vm)) => {
                    let raw = &vm.value;
                    for file in std::iter::once(&raw.kernel).chain(raw.initrd.iter()) {
                        let (step, _) = VmSettings::file_ref(&file.value).ok_or_else(|| {
                            doc.error(
                                file,
                                format!(
                                    "{:?} must be STEP:PATH, a file in an earlier step's output",
                                    file.value
                                ),
                            )
                        })?;
                        if !ids.contains_key(step) || steps.iter().any(|s: &StepRef| s.id() == step)
                        {
                            return Err(doc.error(
                                file,
                                format!(
                                    "{:?}: {step} is not a step of an earlier stage",
                                    file.value
                                ),
                            ));
                        }
                    }
                    // The kernel command line is one argument of qemu's.
                    if let Some(append) = raw.append.as_ref().filter(|a| a.value.contains('\0')) {
                        return Err(doc.error(append, "append may not hold a NUL byte"));
                    }
                    Some(raw.settings(&stage.name))
                }
                // Settings come from a kexec at the end of the stage before;
                // the chain checks that there is one.
                (RunnerKind::Vm, None) => None,
                (RunnerKind::Host, Some(vm)) => {
                    return Err(doc.error(&vm, "vm: settings belong to a stage with runner: vm"));
                }
                (RunnerKind::Host, None) => None,
            };
            stages.push(Stage {
                name: stage.name,
                at: stage_at,
                runner: stage.runner,
                vm,
                steps,
            });
        }

        Ok(Target {
            path: path.to_path_buf(),
            name: raw.name.value,
            description: raw.description,
            source_date_epoch: raw.source_date_epoch,
            config,
            stages,
        })
    }
}
