//! Reproducibility audits: each step rebuilt from the same inputs (its
//! sources and the checkpoints of the steps before it) in a deliberately
//! different environment, and its output compared file by file with the
//! checkpoint. The first step that diverges is where to look.

pub mod inspect;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::NoCache;
use crate::engine::{Engine, Outcome, Walk};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, Entry};
use crate::mirror::Mirror;
use crate::plan::{Plan, StepState};
use crate::project::Project;
use crate::report::Reporter;
use crate::runner::builddir::DirOrder;
use crate::runner::{Cancel, Runners, Variation};
use crate::state::StateDir;
use crate::target::RunnerKind;
use inspect::Detail;

/// Files larger than this get a first differing offset but no detail.
const DETAIL_LIMIT: usize = 8 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    /// What differs, in words.
    pub change: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepAudit {
    pub id: String,
    pub stage: String,
    pub reproducible: bool,
    /// Why the step could not be compared (its rebuild failed), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Why the step was not rebuilt at all, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub files: Vec<FileDiff>,
}

impl StepAudit {
    /// A step that was not compared; `failure` or `skipped` is to say why.
    fn uncompared(id: &str, stage: &str) -> StepAudit {
        StepAudit {
            id: id.to_string(),
            stage: stage.to_string(),
            reproducible: false,
            failure: None,
            skipped: None,
            files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub target: String,
    /// How the rebuild's environment differed from the original build's.
    pub variations: Vec<String>,
    /// Variations this machine could not apply, and why.
    pub not_varied: Vec<String>,
    pub steps: Vec<StepAudit>,
    pub first_divergent: Option<String>,
}

/// The variation an audit applies, with a description of each part, and
/// the parts this machine cannot apply. `dir_order` is the user's choice of
/// how to change directory order; without one, the fastest this machine
/// can apply is taken. A choice the machine cannot apply is an error.
pub fn audit_variation(
    normal_jobs: usize,
    dir_order: Option<DirOrder>,
) -> Result<(Variation, Vec<String>, Vec<String>)> {
    // One more job than normal changes the order in which make finishes
    // things as well as one fewer would, without making the rebuild of a
    // kernel or a compiler take twice as long on a small machine.
    let jobs = normal_jobs + 1;
    let mut variation = Variation {
        build_root: Some("/audit/elsewhere/build".into()),
        umask: Some(0o002),
        locale: Some("C.UTF-8".into()),
        tz: Some("Pacific/Kiritimati".into()),
        hostname: Some("audit-rebuild".into()),
        jobs: Some(jobs),
        faketime: None,
        dir_order: None,
    };
    let mut varied = vec![
        "build path: /audit/elsewhere/build instead of /build".to_string(),
        "umask: 0002 instead of 0022".to_string(),
        "locale: LC_ALL=C.UTF-8 instead of C".to_string(),
        "TZ: Pacific/Kiritimati (UTC+14) instead of UTC".to_string(),
        "hostname: audit-rebuild instead of stagebuild".to_string(),
        format!("jobs: {jobs} instead of {normal_jobs}"),
    ];
    let mut not_varied = Vec::new();
    match find_libfaketime() {
        Some(lib) => {
            variation.faketime = Some((lib, "+397d".into()));
            varied.push(
                "wall clock: 397 days ahead (libfaketime); SOURCE_DATE_EPOCH unchanged".into(),
            );
        }
        None => {
            not_varied.push("wall clock: libfaketime is not installed (Debian: faketime)".into())
        }
    }
    match dir_order {
        Some(chosen) => {
            chosen.check().map_err(|why| {
                Error::Usage(format!("cannot vary the directory order that way: {why}"))
            })?;
            variation.dir_order = Some(chosen);
            varied.push(chosen.describe().into());
        }
        None => {
            let mut missing = Vec::new();
            for candidate in [DirOrder::HashSeed, DirOrder::Disorderfs] {
                match candidate.check() {
                    Ok(()) => {
                        variation.dir_order = Some(candidate);
                        varied.push(candidate.describe().into());
                        break;
                    }
                    Err(why) => missing.push(why),
                }
            }
            if variation.dir_order.is_none() {
                not_varied.push(format!("directory order: {}", missing.join("; ")));
            }
        }
    }
    Ok((variation, varied, not_varied))
}

fn find_libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.is_file())
}

pub struct Auditor<'a> {
    pub project: &'a Project,
    pub state: &'a StateDir,
    pub mirror: &'a Mirror,
    pub runners: &'a mut Runners,
    pub reporter: &'a mut dyn Reporter,
    pub cancel: Cancel,
}

/// Why a step of a VM stage has no audit.
const VM_NOT_AUDITED: &str =
    "steps in VM stages are not audited yet; their outputs are checked against recorded checksums";

impl Auditor<'_> {
    /// Rebuilds every step of a completed run under `variation` and compares.
    pub fn audit(
        &mut self,
        target: &str,
        variation: (Variation, Vec<String>, Vec<String>),
        jobs: usize,
        command: &str,
    ) -> Result<AuditReport> {
        let plan = Plan::load(self.project, self.state, target, &[])?;
        if let Some((step, _)) = plan
            .steps
            .iter()
            .zip(&plan.states)
            .find(|(_, s)| **s != StepState::Done)
        {
            return Err(Error::Usage(format!(
                "step {} of {target} is not built; an audit compares against a complete run (stagebuild run --target {target} --resume)",
                step.id()
            )));
        }
        let _lock = self.state.lock(command)?;
        let (variation, variations, not_varied) = variation;
        let dir = self.audit_dir(target);
        crate::fsutil::detach_mounts_under(&dir)?;
        crate::fsutil::fresh_dir(&dir)?;
        let total = plan.steps.len();
        let mut steps = Vec::new();
        let walk = Walk::Audit {
            variation: &variation,
            dir: &dir,
            jobs,
            kinds: &[RunnerKind::Host],
        };
        let mut engine = Engine {
            project: self.project,
            state: self.state,
            mirror: self.mirror,
            runners: self.runners,
            reporter: self.reporter,
            cancel: self.cancel.clone(),
            cache: &mut NoCache,
        };
        engine.walk(&plan, &walk, &mut |engine, planned, outcome| {
            let (id, stage) = (planned.id(), &planned.chain_step.stage);
            let audit = match outcome {
                Outcome::Rebuilt {
                    checkpoint,
                    out,
                    failed: None,
                } => compare(id, stage, &checkpoint.tree, &checkpoint.manifest, out)?,
                Outcome::Rebuilt {
                    failed: Some(e), ..
                } => StepAudit {
                    failure: Some(format!("the rebuild failed: {e}")),
                    ..StepAudit::uncompared(id, stage)
                },
                Outcome::NotRebuilt(_) => StepAudit {
                    skipped: Some(VM_NOT_AUDITED.into()),
                    ..StepAudit::uncompared(id, stage)
                },
                Outcome::Restored(_) | Outcome::Built(_) => {
                    unreachable!("an audit's walk restores and builds nothing")
                }
            };
            let verdict = match (&audit.skipped, audit.reproducible) {
                (Some(why), _) => format!("not audited ({why})"),
                (None, true) => "reproducible".to_string(),
                (None, false) => format!("DIFFERS ({} files)", audit.files.len()),
            };
            let position = planned.index + 1;
            engine
                .reporter
                .info(&format!("[{position}/{total}] {id}: {verdict}"));
            steps.push(audit);
            Ok(())
        })?;
        let first_divergent = steps
            .iter()
            .find(|s| !s.reproducible && s.skipped.is_none())
            .map(|s| s.id.clone());
        let report = AuditReport {
            target: target.to_string(),
            variations,
            not_varied,
            steps,
            first_divergent,
        };
        self.write(&report)?;
        Ok(report)
    }

    pub fn audit_dir(&self, target: &str) -> PathBuf {
        self.state.root.join("audit").join(target)
    }

    fn write(&self, report: &AuditReport) -> Result<()> {
        let dir = self.audit_dir(&report.target);
        for (name, body) in [
            ("report.txt", report::text(report)),
            (
                "report.json",
                serde_json::to_string_pretty(report).expect("report serializes"),
            ),
            ("report.html", report::html(report)),
        ] {
            crate::fsutil::atomic_write(&dir.join(name), body.as_bytes())?;
        }
        Ok(())
    }
}

/// Compares a rebuild's output tree with the original checkpoint's.
pub fn compare(
    id: &str,
    stage: &str,
    before: &Path,
    manifest: &[Entry],
    after: &Path,
) -> Result<StepAudit> {
    let rebuilt = match manifest::of_tree(after) {
        Ok(rebuilt) => rebuilt,
        Err(e) => {
            return Ok(StepAudit {
                failure: Some(format!("the rebuild's output cannot be compared: {e}")),
                ..StepAudit::uncompared(id, stage)
            });
        }
    };
    let old: BTreeMap<&str, &Entry> = manifest.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &Entry> = rebuilt.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut files = Vec::new();
    for (path, a) in &old {
        let diff = |change: String| FileDiff {
            path: path.to_string(),
            change,
            size_before: a.size,
            size_after: None,
            first_difference: None,
            detail: None,
        };
        match new.get(path) {
            None => files.push(diff("missing from the rebuild".into())),
            Some(b) if a.kind != b.kind => files.push(diff(format!(
                "{:?} in the original, {:?} in the rebuild",
                a.kind, b.kind
            ))),
            Some(b) if a.link != b.link => files.push(diff(format!(
                "link to {} in the original, to {} in the rebuild",
                a.link.as_deref().unwrap_or("?"),
                b.link.as_deref().unwrap_or("?")
            ))),
            Some(b) if a.sha256 != b.sha256 => {
                // Both trees are outputs: nothing on the way may be followed.
                let read = |root: &Path| {
                    let mut bytes = Vec::new();
                    crate::beneath::Root::open(root)
                        .and_then(|tree| tree.open_file(Path::new(path)))
                        .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut bytes))
                        .io_context(|| format!("reading {path}"))?;
                    Ok::<_, Error>(bytes)
                };
                let (x, y) = (read(before)?, read(after)?);
                let detail = (x.len() <= DETAIL_LIMIT && y.len() <= DETAIL_LIMIT)
                    .then(|| inspect::detail(path, &x, &y));
                files.push(FileDiff {
                    size_after: b.size,
                    first_difference: inspect::first_difference(&x, &y),
                    detail,
                    ..diff("content differs".into())
                });
                if a.mode != b.mode {
                    files.push(diff(format!(
                        "mode {:04o} in the original, {:04o} in the rebuild",
                        a.mode, b.mode
                    )));
                }
            }
            Some(b) if a.mode != b.mode => files.push(diff(format!(
                "mode {:04o} in the original, {:04o} in the rebuild",
                a.mode, b.mode
            ))),
            Some(_) => {}
        }
    }
    for (path, b) in &new {
        if !old.contains_key(path) {
            files.push(FileDiff {
                path: path.to_string(),
                change: "only in the rebuild".into(),
                size_before: None,
                size_after: b.size,
                first_difference: None,
                detail: None,
            });
        }
    }
    Ok(StepAudit {
        id: id.to_string(),
        stage: stage.to_string(),
        reproducible: files.is_empty(),
        failure: None,
        skipped: None,
        files,
    })
}
