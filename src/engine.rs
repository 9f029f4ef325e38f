//! A run, step by step: plan and cache keys → sources → runner → checkpoint →
//! report.

use std::path::PathBuf;
use std::time::Instant;

use crate::checkpoint::{Built, Corrupt, Meta};
use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::mirror::Mirror;
use crate::outputs;
use crate::plan::{Plan, PlannedStep, RecordedStep, StepState};
use crate::project::Project;
use crate::report::{Reporter, short};
use crate::runner::{Cancel, Earlier, Runners, StepJob};
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
    pub cache: &'a mut dyn crate::cache::CheckpointCache,
}

impl Engine<'_> {
    pub fn run(&mut self, opts: &RunOptions) -> Result<Summary> {
        let started = Instant::now();
        let chain = self.project.chain(&opts.target, &opts.overrides)?;
        // --fresh starts over: an earlier record, even one this version
        // cannot read, is not consulted.
        let record = if opts.fresh {
            Record {
                target: opts.target.clone(),
                steps: Default::default(),
            }
        } else {
            self.state.record(&opts.target)?
        };
        let store = self.state.store();
        let plan = Plan::of(self.project, chain, &record, |key| store.exists(key));
        let total = plan.steps.len();

        // Every input is checked before the state directory is touched.
        for (planned, state) in plan.steps.iter().zip(&plan.states) {
            if opts.fresh || *state != StepState::Done {
                self.sources(planned)?;
            }
        }
        let outputs_path = outputs::path_for(&self.project.root, &opts.target);
        let expected = if opts.update_checksums {
            None
        } else {
            outputs::load(&outputs_path)?
        };
        if !record.steps.is_empty() && !opts.resume && !opts.fresh {
            let done = plan
                .states
                .iter()
                .filter(|s| **s == StepState::Done)
                .count();
            return Err(Error::Usage(format!(
                "{} already holds a run of target {} ({done} of {total} steps checkpointed).\n\
                 Continue it with --resume, or discard its checkpoints and start over with --fresh.",
                self.state.root.display(),
                opts.target
            )));
        }

        let _lock = self.state.lock(&opts.command)?;
        crate::logs::retire_stale(
            &self.state.log_dir(&opts.target),
            plan.steps.iter().map(|p| p.id()),
        )?;
        // Half-finished commits of a run that was killed: never checkpoints.
        crate::fsutil::fresh_dir(&self.state.tmp())?;
        let store = self.state.store();
        let mut record = record;
        if opts.fresh {
            // The earlier run's checkpoints too, as far as its record can be read.
            let earlier = self
                .state
                .record(&opts.target)
                .map(|r| r.steps)
                .unwrap_or_default();
            for key in earlier
                .values()
                .map(|r| &r.key)
                .chain(plan.steps.iter().map(|p| &p.key))
            {
                store.discard(key)?;
            }
            self.state.save_record(&record)?;
        }

        let mut summary = Summary {
            built: 0,
            restored: 0,
            elapsed: Default::default(),
        };
        let mut earlier: Vec<Earlier> = Vec::new();
        let mut manifests = Vec::new();
        let mut current_stage = None;
        for planned in &plan.steps {
            let id = planned.id();
            let chain_step = &planned.chain_step;
            if current_stage != Some(&chain_step.stage) {
                current_stage = Some(&chain_step.stage);
                self.reporter.info(&format!(
                    "stage {} (runner: {})",
                    chain_step.stage,
                    self.runners.for_kind(chain_step.runner)?.name()
                ));
            }

            // --fresh means built here, so it takes nothing from a cache.
            if !opts.fresh && !store.exists(&planned.key) {
                match self.cache.pull(&planned.key, &store) {
                    Ok(true) => self.reporter.info(&format!("{id}: pulled from the cache")),
                    Ok(false) => {}
                    Err(why) => self.reporter.warn(&format!(
                        "{id}: not pulled from the cache ({why}); building it"
                    )),
                }
            }
            let checkpoint = match store.load(&planned.key) {
                // A checkpoint may be sound and still not fit what came before
                // it: a VM step's disk is an overlay on the previous step's.
                Ok(Some(found)) => match self
                    .runners
                    .for_kind(chain_step.runner)?
                    .fits(chain_step, &found, &earlier)
                {
                    Ok(()) => Some(found),
                    Err(why) => {
                        self.reporter.warn(&format!(
                            "the checkpoint of {id} ({}) no longer fits: {why}; discarding it and rebuilding",
                            short(&planned.key)
                        ));
                        store.discard(&planned.key)?;
                        None
                    }
                },
                Ok(None) => None,
                Err(Corrupt(why)) => {
                    self.reporter.warn(&format!(
                        "the checkpoint of {id} ({}) is damaged: {why}; discarding it and rebuilding",
                        short(&planned.key)
                    ));
                    store.discard(&planned.key)?;
                    None
                }
            };
            let checkpoint = match checkpoint {
                Some(checkpoint) => {
                    self.reporter
                        .step_restored(planned.index, total, id, &planned.key);
                    summary.restored += 1;
                    checkpoint
                }
                None => {
                    self.reporter
                        .step_started(planned.index, total, id, "building");
                    let step_started = Instant::now();
                    let job = StepJob {
                        planned,
                        sources: self.sources(planned)?,
                        earlier: earlier.clone(),
                        source_date_epoch: plan.chain.target.source_date_epoch,
                        jobs: opts.jobs,
                        work: self.state.work_dir(id),
                        log: self.state.log_path(&opts.target, id),
                        variation: None,
                    };
                    self.runners
                        .for_kind(chain_step.runner)?
                        .run(&job, &self.cancel)?;
                    let definition = &chain_step.step.definition;
                    let built = Built {
                        runner: self.runners.for_kind(chain_step.runner)?.name(),
                        millis: step_started.elapsed().as_millis() as u64,
                    };
                    let committing = Instant::now();
                    let checkpoint = store.commit(
                        &job.out(),
                        Some(&job.extras()),
                        Meta {
                            key: planned.key.clone(),
                            step: id.to_string(),
                            name: definition.name.clone(),
                            version: definition.version.clone(),
                            stage: chain_step.stage.clone(),
                            runner: chain_step.runner.to_string(),
                            inputs: planned.inputs.clone(),
                            manifest_sha256: String::new(),
                            extras: Default::default(),
                            built: Some(built),
                        },
                    )?;
                    // The record names the step only below: a kill here
                    // leaves a checkpoint the record does not know.
                    crate::faultpoint::reached("committed");
                    note_in_log(
                        &job.log,
                        &format!(
                            "# checkpoint committed in {:.3}s",
                            committing.elapsed().as_secs_f64()
                        ),
                    );
                    crate::fsutil::remove_tree(&job.work)?;
                    self.reporter
                        .step_built(planned.index, total, id, step_started.elapsed());
                    summary.built += 1;
                    checkpoint
                }
            };
            if let Some(recorded) = expected.as_ref().and_then(|e| e.get(id)) {
                let files = outputs::differences(recorded, &checkpoint.manifest);
                if !files.is_empty() {
                    return Err(Error::OutputsDiffer {
                        step: id.to_string(),
                        record: outputs_path,
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
            self.state.save_record(&record)?;
            self.cache.offer(&checkpoint);
            earlier.push(Earlier::new(chain_step, checkpoint.dir));
        }
        self.runners.run_complete()?;
        if opts.update_checksums {
            atomic_write(
                &outputs_path,
                outputs::render(&opts.target, &manifests).as_bytes(),
            )?;
            self.reporter.info(&format!(
                "recorded the outputs of {} steps in {}",
                manifests.len(),
                outputs_path.display()
            ));
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    fn sources(&self, planned: &PlannedStep) -> Result<Vec<(String, PathBuf)>> {
        self.mirror
            .step_sources(&self.project.lock, &planned.chain_step.step)
    }
}

/// Adds a line to a step's log. The log is a record for people, so failing
/// to extend it does not fail the step.
fn note_in_log(log: &std::path::Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = crate::statefs::open_append(log) {
        let _ = writeln!(file, "{line}");
    }
}
