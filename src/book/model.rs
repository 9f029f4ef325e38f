//! What the book is made of: the chain as the step files define it, and, for
//! each step built, what its checkpoint says (manifest, build time) and what
//! the last audit found. Reads the state directory; never writes to it.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use crate::audit::{AuditReport, StepAudit};
use crate::checkpoint::Meta;
use crate::digest::hex_sha256;
use crate::elf;
use crate::error::Result;
use crate::lock::Lock;
use crate::manifest::{Entry, FileKind};
use crate::plan::{Plan, PlannedStep, StepState};
use crate::project::{Chain, ChainStep, Project};
use crate::state::StateDir;
use crate::target::RunnerKind;

pub struct Book {
    pub chain: Chain,
    pub lock: Lock,
    pub steps: Vec<StepInfo>,
    /// Where the last audit's report is, if the target was audited.
    pub audit_report: Option<String>,
}

pub struct StepInfo {
    pub planned: PlannedStep,
    pub chain_step: ChainStep,
    /// The checkpoint, if the step is built under its current key.
    pub built: Option<Built>,
    /// What `plan` says of it: why it would be rebuilt, if it would.
    pub state: StepState,
    pub verdict: Verdict,
    /// Earlier steps whose outputs this step can see (by index).
    pub sees: Vec<usize>,
    /// Later steps that can see this step's output.
    pub seen_by: Vec<usize>,
    /// Earlier steps this one names: in its commands (a path or program of
    /// theirs) or its kernel settings, with what names them.
    pub names: BTreeMap<usize, Vec<String>>,
}

impl StepInfo {
    pub fn id(&self) -> &str {
        &self.chain_step.id
    }
}

pub struct Built {
    pub meta: Meta,
    pub files: Vec<Produced>,
    /// The kernel a VM step's guest ran when its checkpoint was taken.
    pub guest_kernel: Option<String>,
}

/// One entry of a checkpoint's manifest, with what the book says of it.
pub struct Produced {
    pub entry: Entry,
    pub elf: Option<elf::Summary>,
    /// What kind of file it is, from its first bytes, when it is one the
    /// chain makes on purpose: a static library, a kernel, an initramfs.
    pub format: Option<&'static str>,
}

pub enum Verdict {
    NotAudited,
    /// The audit ran before this checkpoint was made: its verdict was for
    /// an earlier build.
    Stale,
    Skipped(String),
    Reproducible,
    NotReproducible {
        failure: Option<String>,
        files: Vec<String>,
    },
}

impl Book {
    pub fn load(
        project: &Project,
        state: &StateDir,
        target: &str,
        overrides: &[(String, String)],
    ) -> Result<Book> {
        let plan = Plan::load(project, state, target, overrides)?;
        let store = state.store();
        let report_path = state.root.join("audit").join(target).join("report.json");
        let report = read_report(&report_path);
        let mut steps: Vec<StepInfo> = Vec::new();
        for (planned, step_state) in plan.steps.iter().zip(&plan.states) {
            let dir = store.dir(&planned.key);
            let built = store.exists(&planned.key).then(|| read_checkpoint(&dir));
            let built = built.flatten();
            let verdict = match (&built, &report) {
                (Some(_), Some((report, audited))) => {
                    let made = modified(&dir.join("meta.json"));
                    match report.steps.iter().find(|s| s.id == planned.id()) {
                        None => Verdict::NotAudited,
                        Some(_) if made.zip(*audited).is_some_and(|(m, a)| m > a) => Verdict::Stale,
                        Some(audit) => verdict_of(audit),
                    }
                }
                _ => Verdict::NotAudited,
            };
            steps.push(StepInfo {
                planned: planned.clone(),
                chain_step: planned.chain_step.clone(),
                built,
                state: step_state.clone(),
                verdict,
                sees: Vec::new(),
                seen_by: Vec::new(),
                names: BTreeMap::new(),
            });
        }
        link_steps(&mut steps);
        Ok(Book {
            lock: project.lock.clone(),
            chain: plan.chain,
            steps,
            audit_report: report.map(|_| report_path.display().to_string()),
        })
    }

    pub fn step(&self, id: &str) -> Option<&StepInfo> {
        self.steps.iter().find(|s| s.id() == id)
    }

    /// The stages in order, each with its steps.
    pub fn stages(&self) -> Vec<(&str, Vec<&StepInfo>)> {
        let mut stages: Vec<(&str, Vec<&StepInfo>)> = Vec::new();
        for step in &self.steps {
            let stage = step.chain_step.stage.as_str();
            match stages.last_mut() {
                Some((name, steps)) if *name == stage => steps.push(step),
                _ => stages.push((stage, vec![step])),
            }
        }
        stages
    }
}

fn verdict_of(audit: &StepAudit) -> Verdict {
    match (&audit.skipped, audit.reproducible) {
        (Some(why), _) => Verdict::Skipped(why.clone()),
        (None, true) => Verdict::Reproducible,
        (None, false) => Verdict::NotReproducible {
            failure: audit.failure.clone(),
            files: audit.files.iter().map(|f| f.path.clone()).collect(),
        },
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The last audit's report and when it was written; an unreadable one (an
/// audit writing it right now) counts as none.
fn read_report(path: &Path) -> Option<(AuditReport, Option<SystemTime>)> {
    let report = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    Some((report, modified(path)))
}

/// A checkpoint's meta and manifest, the manifest checked against the
/// checksum in the meta. The tree is not re-hashed (a run does that before
/// it restores a checkpoint): only ELF headers are read from it.
fn read_checkpoint(dir: &Path) -> Option<Built> {
    let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
    let manifest = fs::read(dir.join("manifest.json")).ok()?;
    if hex_sha256(&manifest) != meta.manifest_sha256 {
        return None;
    }
    let manifest: Vec<Entry> = serde_json::from_slice(&manifest).ok()?;
    let tree = dir.join("tree");
    let files = manifest
        .into_iter()
        .map(|entry| {
            let head = (entry.kind == FileKind::File)
                .then(|| head_of(&tree.join(&entry.path)))
                .flatten()
                .unwrap_or_default();
            Produced {
                elf: elf::summary(&head, &entry.path),
                format: format_of(&head),
                entry,
            }
        })
        .collect();
    let guest_kernel = fs::read_to_string(dir.join(crate::runner::guest::KERNEL))
        .ok()
        .map(|k| k.trim().to_string());
    Some(Built {
        meta,
        files,
        guest_kernel,
    })
}

/// The first bytes of a file: enough for [`format_of`], and for an ELF
/// file its program headers.
fn head_of(path: &Path) -> Option<Vec<u8>> {
    let file = fs::File::open(path).ok()?;
    let mut head = Vec::new();
    let mut file = file.take(BZIMAGE_MAGIC.0 as u64 + 4);
    file.read_to_end(&mut head).ok()?;
    if head.starts_with(b"\x7fELF") {
        file.into_inner()
            .take(elf::HEAD as u64)
            .read_to_end(&mut head)
            .ok()?;
    }
    Some(head)
}

/// Where an x86 Linux boot image says so ("HdrS" in its setup header).
const BZIMAGE_MAGIC: (usize, &[u8]) = (0x202, b"HdrS");

fn format_of(head: &[u8]) -> Option<&'static str> {
    let (at, magic) = BZIMAGE_MAGIC;
    if head.starts_with(b"!<arch>\n") {
        Some("static library (ar archive)")
    } else if head.starts_with(b"070701") {
        Some("cpio archive (newc)")
    } else if head.get(at..at + magic.len()) == Some(magic) {
        Some("x86 Linux kernel image (bzImage)")
    } else {
        None
    }
}

/// Which earlier outputs each step sees, as the runners provide them: a host
/// step, those of the earlier steps of its stage under /sysroot; a VM step,
/// every earlier step's (the earlier stages' outputs on its guest's base
/// disk, the steps of its own guest through the disk chain). And which of
/// them it names.
fn link_steps(steps: &mut [StepInfo]) {
    let outputs: Vec<Option<HashSet<String>>> = steps
        .iter()
        .map(|s| {
            let built = s.built.as_ref()?;
            Some(built.files.iter().map(|f| f.entry.path.clone()).collect())
        })
        .collect();
    for i in 0..steps.len() {
        let sees: Vec<usize> = (0..i)
            .filter(|&j| match steps[i].chain_step.runner {
                RunnerKind::Host => steps[j].chain_step.stage == steps[i].chain_step.stage,
                RunnerKind::Vm => true,
            })
            .collect();
        let mut names: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for reference in kernel_refs(&steps[i].chain_step) {
            if let Some((from, _)) = crate::target::VmSettings::file_ref(&reference)
                && let Some(j) = (0..i).find(|&j| steps[j].id() == from)
            {
                names.entry(j).or_default().push(reference.clone());
            }
        }
        let words = command_words(&steps[i].chain_step);
        for &j in &sees {
            let Some(paths) = &outputs[j] else {
                continue;
            };
            for word in &words {
                if provides(&steps[i].chain_step, paths, word) {
                    let found = names.entry(j).or_default();
                    if !found.contains(word) {
                        found.push(word.clone());
                    }
                }
            }
        }
        for &j in &sees {
            steps[j].seen_by.push(i);
        }
        steps[i].sees = sees;
        steps[i].names = names;
    }
}

/// The `STEP:PATH` files a VM step boots or a kexec step jumps to.
fn kernel_refs(step: &ChainStep) -> Vec<String> {
    let mut refs = Vec::new();
    if let Some(kexec) = &step.step.definition.kexec {
        refs.extend(kexec.files().cloned());
    } else if let Some(vm) = &step.vm {
        refs.push(vm.kernel.clone());
        refs.extend(vm.initrd.clone());
    }
    refs
}

/// The words of a step's commands that could name another step's file: paths
/// and command names.
fn command_words(step: &ChainStep) -> Vec<String> {
    let def = &step.step.definition;
    let mut words: Vec<String> = [&def.configure, &def.build, &def.install]
        .into_iter()
        .flatten()
        .flat_map(|body| {
            body.split(|c: char| c.is_whitespace() || "\"'`;|&()<>=$".contains(c))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    words.sort();
    words.dedup();
    words
}

/// Whether `word` names one of `paths` (a step's outputs): a `/sysroot/…` path in a host
/// step; in a VM step (whose root holds every earlier output) an absolute
/// path, or a program in a bin directory.
fn provides(step: &ChainStep, paths: &HashSet<String>, word: &str) -> bool {
    let has = |path: &str| paths.contains(path);
    match step.runner {
        RunnerKind::Host => word.strip_prefix("/sysroot/").is_some_and(has),
        RunnerKind::Vm => match word.strip_prefix('/') {
            Some(path) => has(path),
            None => ["bin", "sbin", "usr/bin", "usr/sbin"]
                .iter()
                .any(|dir| has(&format!("{dir}/{word}"))),
        },
    }
}
