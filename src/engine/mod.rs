//! A run, step by step: plan and cache keys → sources → runner → checkpoint →
//! report. A run, a resumed one, a `--fresh` one and an audit all take each
//! step through the same walk of the chain ([`walk`]).

mod forecast;
mod only;
mod scope;
mod walk;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cutoff;

use std::time::Instant;

pub use scope::Scope;
pub use walk::{Outcome, Walk};

use crate::cache::CheckpointCache;
use crate::checkpoint::Trust;
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
    /// `--until STEP`: stop after this step.
    pub until: Option<String>,
    /// `--only STEP`: build this step alone, against the checkpoints before it.
    pub only: Option<String>,
    /// `--verify`: re-hash every file of every checkpoint restored, instead
    /// of trusting the stamps of files nothing has written to since.
    pub verify: bool,
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
        let (record, plan, scope) = self.plan_run(opts)?;
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
        // An empty staging directory is left as it is (a no-op rerun writes
        // nothing there).
        let tmp = self.state.tmp();
        if std::fs::read_dir(&tmp).is_ok_and(|mut entries| entries.next().is_some()) {
            crate::fsutil::fresh_dir(&tmp)?;
        }
        if opts.fresh {
            self.start_over(&plan, &record)?;
        }

        let mut summary = Summary {
            built: 0,
            restored: 0,
            elapsed: Default::default(),
        };
        // What each step produced before this run: a step built again with
        // the same output keeps the steps after it as they were.
        let before = record.steps.clone();
        let mut record = record;
        let mut manifests = Vec::new();
        let forecast = forecast::Forecast::of(self.state, &plan, &record);
        let times_path = crate::times::path(self.state, &opts.target);
        let walk = Walk::Run {
            jobs: opts.jobs,
            pull: !opts.fresh,
            restore: !opts.fresh,
            trust: match opts.verify {
                true => Trust::Nothing,
                false => Trust::Stamps,
            },
            scope,
            forecast: &forecast,
        };
        self.walk(&plan, &walk, &mut |engine, planned, outcome| {
            let id = planned.id();
            let checkpoint = outcome.checkpoint();
            let output = &checkpoint.meta.manifest_sha256;
            let previous = before.get(id).and_then(|r| r.output.as_ref());
            let unchanged = matches!(outcome, Outcome::Built(_)) && previous == Some(output);
            match outcome {
                Outcome::Built(_) => summary.built += 1,
                _ => summary.restored += 1,
            }
            if let (Outcome::Built(_), Some(built)) = (outcome, &checkpoint.meta.built) {
                crate::times::append(
                    &times_path,
                    &crate::times::Timing {
                        step: id.to_string(),
                        key: planned.key.clone(),
                        millis: built.millis,
                        runner: built.runner.clone(),
                        finished: crate::times::now(),
                    },
                )?;
            }
            if unchanged {
                engine
                    .reporter
                    .event(Event::OutputUnchanged { id: id.to_string() });
            } else if let (Outcome::Built(_), Some(_), Scope::Only(at)) = (outcome, previous, scope)
            {
                let later = plan.steps[at + 1..]
                    .iter()
                    .filter(|p| plan.sees(p.index, at))
                    .map(|p| p.id().to_string())
                    .collect();
                engine.reporter.event(Event::Invalidates {
                    id: id.to_string(),
                    later,
                });
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
            let changed_at = match before.get(id) {
                Some(r) if r.output.as_ref() == Some(output) => r.changed_at,
                _ => {
                    record.changes += 1;
                    record.changes
                }
            };
            let entry = RecordedStep {
                key: planned.key.clone(),
                inputs: planned.inputs.clone(),
                output: Some(output.clone()),
                unchanged,
                changed_at,
                // The same key saw the same outputs as when it was keyed.
                keyed_at: match before.get(id) {
                    Some(r) if r.key == planned.key => r.keyed_at,
                    _ => record.changes,
                },
            };
            // A step restored as the record has it changes nothing: a no-op
            // rerun writes no record.
            if record.steps.get(id) != Some(&entry) {
                record.steps.insert(id.to_string(), entry);
                engine.state.save_record(&record)?;
            }
            engine.cache.offer(checkpoint);
            Ok(())
        })?;
        if scope == Scope::All {
            self.runners.run_complete()?;
        }
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

    /// The run's record, plan and scope, once every input is checked and
    /// before the state directory is touched.
    fn plan_run(&self, opts: &RunOptions) -> Result<(Record, Plan, Scope)> {
        let chain = self.project.chain(&opts.target, &opts.overrides)?;
        // --fresh is decided here, once: the earlier record (even one this
        // version cannot read) is not consulted, no checkpoint is reused and
        // none is pulled, so every step is built here.
        let (record, plan) = if opts.fresh {
            let record = Record {
                target: opts.target.clone(),
                ..Record::default()
            };
            let plan = Plan::of(self.project, chain, &record, |_| None);
            (record, plan)
        } else {
            let record = self.state.record(&opts.target)?;
            let store = self.state.store();
            let plan = Plan::of(self.project, chain, &record, |key| store.output(key));
            (record, plan)
        };
        let scope = scope(&plan, opts)?;
        let taken = scope.steps(plan.steps.len());
        for (planned, state) in plan.steps.iter().zip(&plan.states).take(taken) {
            let restored_only = matches!(scope, Scope::Only(at) if planned.index < at);
            if *state != StepState::Done && !restored_only {
                self.sources(planned)?;
            }
        }
        if !record.steps.is_empty() && !opts.resume && opts.only.is_none() {
            return Err(Error::Usage(format!(
                "{} already holds a run of target {} ({} of {} steps checkpointed).\n\
                 Continue it with --resume, or discard its checkpoints and start over with --fresh.",
                self.state.root.display(),
                opts.target,
                plan.done(),
                plan.steps.len(),
            )));
        }
        Ok((record, plan, scope))
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

/// Which steps `--until` or `--only` take; `--only` refuses a step with a
/// step before it that has no checkpoint under its current key.
fn scope(plan: &Plan, opts: &RunOptions) -> Result<Scope> {
    let find = |option: &'static str, step: &str| {
        plan.position(step).ok_or_else(|| Error::UnknownStep {
            option,
            step: step.to_string(),
            target: opts.target.clone(),
            known: (plan.steps.iter().map(|p| p.id()))
                .collect::<Vec<_>>()
                .join(", "),
        })
    };
    match (&opts.until, &opts.only) {
        (Some(step), _) => Ok(Scope::Until(find("--until", step)?)),
        (None, Some(step)) => {
            let at = find("--only", step)?;
            let missing = (plan.steps.iter().zip(&plan.states).take(at))
                .find(|(_, state)| **state != StepState::Done);
            match missing {
                Some((planned, state)) => Err(Error::NotCheckpointed {
                    step: step.clone(),
                    missing: planned.id().to_string(),
                    state: format!("{}{}", state.label(), state.detail()),
                }),
                None => Ok(Scope::Only(at)),
            }
        }
        (None, None) => Ok(Scope::All),
    }
}
