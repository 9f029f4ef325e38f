//! Reproducibility audits: each step rebuilt from the same inputs (its
//! sources and the checkpoints of the steps before it) in a deliberately
//! different environment, and its output compared file by file with the
//! checkpoint. The first step that diverges is where to look.

mod compare;
pub mod guests;
pub mod inspect;
pub mod report;
pub mod summary;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cache::NoCache;
use crate::engine::{Engine, Outcome, Walk};
use crate::error::{Error, Result};
use crate::mirror::Mirror;
use crate::plan::{Plan, PlannedStep, StepState};
use crate::project::Project;
use crate::report::Reporter;
use crate::runner::builddir::DirOrder;
use crate::runner::guest::{GuestMode, built_in_dir};
use crate::runner::{Cancel, Runners, Variation, guest_variation};
use crate::state::StateDir;
use crate::target::RunnerKind;
pub use compare::compare;
use guests::{GuestChoice, rebuild_mode};
use inspect::Detail;
use summary::Summary;

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
    /// For a guest step: the mode its rebuild ran in, and the mode that
    /// built its checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_in: Option<GuestMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_built_in: Option<GuestMode>,
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
            rebuilt_in: None,
            checkpoint_built_in: None,
            files: Vec::new(),
        }
    }
}

/// The variations of guest rebuilds in one mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeVariations {
    pub mode: GuestMode,
    pub variations: Vec<String>,
    pub not_varied: Vec<String>,
}

/// Which steps an audit rebuilds, and how it rebuilds guest steps.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Only these steps (by id); empty: every step.
    pub only: Vec<String>,
    /// The caller registers a runner for vm stages that rebuilds each guest
    /// step as this says ([`guests::GuestModes`]).
    pub guests: GuestChoice,
}

impl Default for Scope {
    fn default() -> Scope {
        Scope {
            only: Vec::new(),
            guests: GuestChoice::Mode(GuestMode::Qemu),
        }
    }
}

/// Why a step an audit was not asked for is not audited.
const NOT_CHOSEN: &str = "not chosen with --only";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub target: String,
    /// What was counted, and the sentence every report leads with.
    #[serde(default)]
    pub summary: Summary,
    /// How a host step's rebuild environment differed from the original build's.
    pub variations: Vec<String>,
    /// Variations this machine could not apply to host steps, and why.
    pub not_varied: Vec<String>,
    /// The same for guest steps, for each mode a guest step was rebuilt in.
    #[serde(default)]
    pub guest_variations: Vec<ModeVariations>,
    /// Whether each guest step was rebuilt in the other mode than its checkpoint's.
    #[serde(default)]
    pub compare_modes: bool,
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
        clock_ahead_days: Some(CLOCK_AHEAD_DAYS),
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
            variation.faketime = Some((lib, format!("+{CLOCK_AHEAD_DAYS}d")));
            varied.push(format!(
                "wall clock: {CLOCK_AHEAD_DAYS} days ahead (libfaketime); SOURCE_DATE_EPOCH unchanged"
            ));
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

/// How far ahead a rebuild's clock runs: more than a year, so that a date
/// embedded to the day, month or year differs, and not a round number.
const CLOCK_AHEAD_DAYS: u32 = 397;

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

impl Auditor<'_> {
    /// Rebuilds every step of a completed run under `variation` and compares.
    pub fn audit(
        &mut self,
        target: &str,
        variation: (Variation, Vec<String>, Vec<String>),
        jobs: usize,
        command: &str,
    ) -> Result<AuditReport> {
        self.audit_scope(target, variation, jobs, command, &Scope::default())
    }

    /// Rebuilds the steps of a completed run that `scope` names under
    /// `variation` and compares; the others are reported as not audited.
    pub fn audit_scope(
        &mut self,
        target: &str,
        variation: (Variation, Vec<String>, Vec<String>),
        jobs: usize,
        command: &str,
        scope: &Scope,
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
        if let Some(unknown) =
            (scope.only.iter()).find(|id| !plan.steps.iter().any(|p| p.id() == *id))
        {
            let ids: Vec<&str> = plan.steps.iter().map(|p| p.id()).collect();
            return Err(Error::Usage(format!(
                "--only {unknown}: target {target} has no such step (its steps: {})",
                ids.join(", ")
            )));
        }
        let _lock = self.state.lock(command)?;
        let (variation, variations, not_varied) = variation;
        let dir = self.audit_dir(target);
        crate::fsutil::detach_mounts_under(&dir)?;
        crate::fsutil::fresh_dir(&dir)?;
        let total = plan.steps.len();
        let chosen = |planned: &PlannedStep| {
            scope.only.is_empty() || scope.only.iter().any(|id| id == planned.id())
        };
        let store = self.state.store();
        let guest_modes = |planned: &PlannedStep| {
            (planned.chain_step.runner == RunnerKind::Vm).then(|| {
                let built = built_in_dir(&store.dir(&planned.key));
                (rebuild_mode(scope.guests, built), built)
            })
        };
        let mut guest_variations: Vec<ModeVariations> = Vec::new();
        for planned in plan.steps.iter().filter(|p| chosen(p)) {
            if let Some((mode, _)) = guest_modes(planned)
                && !guest_variations.iter().any(|m| m.mode == mode)
            {
                let (variations, not_varied) = guest_variation::describe(&variation, mode);
                guest_variations.push(ModeVariations {
                    mode,
                    variations,
                    not_varied,
                });
            }
        }
        let mut steps = Vec::new();
        let walk = Walk::Audit {
            variation: &variation,
            dir: &dir,
            jobs,
            chosen: &chosen,
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
            let mut audit = match outcome {
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
                    skipped: Some(NOT_CHOSEN.into()),
                    ..StepAudit::uncompared(id, stage)
                },
                Outcome::Restored(_) | Outcome::Built(_) => {
                    unreachable!("an audit's walk restores and builds nothing")
                }
            };
            if let Some((mode, built)) = guest_modes(planned) {
                audit.checkpoint_built_in = built;
                if audit.skipped.is_none() {
                    audit.rebuilt_in = Some(mode);
                }
            }
            let verdict = match (&audit.skipped, audit.reproducible) {
                (Some(why), _) => format!("not audited ({why})"),
                (None, true) => "reproducible".to_string(),
                (None, false) => format!("DIFFERS ({} files)", audit.files.len()),
            };
            let mode =
                (audit.rebuilt_in).map_or_else(String::new, |m| format!(" (rebuilt in {m})"));
            let position = planned.index + 1;
            engine
                .reporter
                .info(&format!("[{position}/{total}] {id}: {verdict}{mode}"));
            steps.push(audit);
            Ok(())
        })?;
        // Base disks an audit's qemu rebuilds made are not kept.
        self.runners.run_complete()?;
        let first_divergent = steps
            .iter()
            .find(|s| !s.reproducible && s.skipped.is_none())
            .map(|s| s.id.clone());
        let report = AuditReport {
            target: target.to_string(),
            summary: Summary::of(&steps, first_divergent.as_deref()),
            variations,
            not_varied,
            guest_variations,
            compare_modes: scope.guests == GuestChoice::CompareModes,
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
