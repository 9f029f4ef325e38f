//! A run, step by step: plan and cache keys → sources → runner → checkpoint →
//! report. A run, a resumed one, a `--fresh` one and an audit all take each
//! step through the same walk of the chain ([`walk`]).

mod walk;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::time::Instant;

pub use walk::{Outcome, Walk};

use crate::cache::CheckpointCache;
use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::mirror::Mirror;
use crate::outputs;
use crate::plan::{Plan, PlannedStep, RecordedStep, StepState};
use crate::project::Project;
use crate::report::{Event, Reporter};
use crate::runner::{Cancel, Runners};
use crate::state::{Record, StateDir};

pub struct RunOptions {
    pub target: String,
    pub overrides: Vec<(String, String)>,
    pub resume: bool,
    pub fresh: bool,
    pub jobs: usize,
    /// Write every step's output manifest to the target's outputs file
    /// instead of checking against it.
    pub update_checksums: bool,
    /// How the user runs stagebuild, for the lock holder's description.
    pub command: String,
}

pub struct Summary {
    pub built: usize,
    pub restored: usize,
    pub elapsed: std::time::Duration,
}

pub struct Engine<'a> {
    pub project: &'a Project,
    pub state: &'a StateDir,
    pub mirror: &'a Mirror,
    pub runners: &'a mut Runners,
    pub reporter: &'a mut dyn Reporter,
    pub cancel: Cancel,
    /// A shared cache to pull missing checkpoints from and push new ones to.
    pub cache: &'a mut dyn CheckpointCache,
}

impl Engine<'_> {
    pub fn run(&mut self, opts: &RunOptions) -> Result<Summary> {
        let started = Instant::now();
        let (record, plan) = self.plan_run(opts)?;
        let outputs_path = outputs::path_for(&self.project.root, &opts.target);
        let expected = if opts.update_checksums {
            None
        } else {
            outputs::load(&outputs_path)?
        };

        let _lock = self.state.lock(&opts.command)?;
        crate::logs::retire_stale(
            &self.state.log_dir(&opts.target),
            plan.steps.iter().map(|p| p.id()),
        )?;
        // Half-finished commits of a run that was killed: never checkpoints.
        crate::fsutil::fresh_dir(&self.state.tmp())?;
        if opts.fresh {
            self.start_over(&plan, &record)?;
        }

        let mut summary = Summary {
            built: 0,
            restored: 0,
            elapsed: Default::default(),
        };
        let mut record = record;
        let mut manifests = Vec::new();
        let walk = Walk::Run {
            jobs: opts.jobs,
            pull: !opts.fresh,
        };
        self.walk(&plan, &walk, &mut |engine, planned, outcome| {
            let id = planned.id();
            let checkpoint = outcome.checkpoint();
            match outcome {
                Outcome::Built(_) => summary.built += 1,
                _ => summary.restored += 1,
            }
            if let Some(recorded) = expected.as_ref().and_then(|e| e.get(id)) {
                let files = outputs::differences(recorded, &checkpoint.manifest);
                if !files.is_empty() {
                    return Err(Error::OutputsDiffer {
                        step: id.to_string(),
                        record: outputs_path.clone(),
                        files,
                    });
                }
            }
            manifests.push((id.to_string(), checkpoint.manifest.clone()));
            record.steps.insert(
                id.to_string(),
                RecordedStep {
                    key: planned.key.clone(),
                    inputs: planned.inputs.clone(),
                },
            );
            engine.state.save_record(&record)?;
            engine.cache.offer(checkpoint);
            Ok(())
        })?;
        self.runners.run_complete()?;
        if opts.update_checksums {
            atomic_write(
                &outputs_path,
                outputs::render(&opts.target, &manifests).as_bytes(),
            )?;
            self.reporter.event(Event::OutputsRecorded {
                steps: manifests.len(),
                path: outputs_path,
            });
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// The run's record and plan, once every input is checked and before
    /// the state directory is touched.
    fn plan_run(&self, opts: &RunOptions) -> Result<(Record, Plan)> {
        let chain = self.project.chain(&opts.target, &opts.overrides)?;
        // --fresh is decided here, once: the earlier record (even one this
        // version cannot read) is not consulted, no checkpoint is reused and
        // none is pulled, so every step is built here.
        let (record, plan) = if opts.fresh {
            let record = Record {
                target: opts.target.clone(),
                steps: Default::default(),
            };
            let plan = Plan::of(self.project, chain, &record, |_| false);
            (record, plan)
        } else {
            let record = self.state.record(&opts.target)?;
            let store = self.state.store();
            let plan = Plan::of(self.project, chain, &record, |key| store.exists(key));
            (record, plan)
        };
        for (planned, state) in plan.steps.iter().zip(&plan.states) {
            if *state != StepState::Done {
                self.sources(planned)?;
            }
        }
        if !record.steps.is_empty() && !opts.resume {
            return Err(Error::Usage(format!(
                "{} already holds a run of target {} ({} of {} steps checkpointed).\n\
                 Continue it with --resume, or discard its checkpoints and start over with --fresh.",
                self.state.root.display(),
                opts.target,
                plan.done(),
                plan.steps.len(),
            )));
        }
        Ok((record, plan))
    }

    /// `--fresh`, once the run holds the lock: discards the checkpoints of
    /// the earlier run, as far as its record can be read, and those under the
    /// plan's keys, and empties the record.
    fn start_over(&mut self, plan: &Plan, empty: &Record) -> Result<()> {
        let store = self.state.store();
        let earlier = (self.state.record(&empty.target))
            .map(|r| r.steps)
            .unwrap_or_default();
        for key in (earlier.values().map(|r| &r.key)).chain(plan.steps.iter().map(|p| &p.key)) {
            store.discard(key)?;
        }
        self.state.save_record(empty)
    }

    fn sources(&self, planned: &PlannedStep) -> Result<Vec<(String, std::path::PathBuf)>> {
        self.mirror
            .step_sources(&self.project.lock, &planned.chain_step.step)
    }
}
