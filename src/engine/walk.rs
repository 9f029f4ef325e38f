//! The one path from a planned step to its checkpoint, which `run` (new,
//! resumed or `--fresh`) and `audit` share: the chain in order, each step
//! restored from a sound checkpoint or given to its runner. A run commits
//! what its runner built; an audit compares it with the checkpoint instead.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Engine;
use super::forecast::Forecast;
use super::scope::Scope;
use crate::checkpoint::{Built, Checkpoint, Corrupt, Meta, Trust};
use crate::error::{Error, Result};
use crate::plan::{Keys, Plan, PlannedStep};
use crate::report::{Event, Unusable};
use crate::runner::{Earlier, StepJob, Variation};

/// What a walk does with each step.
pub enum Walk<'w> {
    /// `run`: a step whose checkpoint is sound and fits the steps before it
    /// is restored (with `restore`; with `pull`, one the shared cache gives
    /// too); any other is built and committed. `scope` says which steps.
    Run {
        jobs: usize,
        pull: bool,
        restore: bool,
        /// What restoring a checkpoint takes on trust (`--verify`: nothing).
        trust: Trust,
        scope: Scope,
        forecast: &'w Forecast,
    },
    /// `audit`: each step `chosen` says yes to is rebuilt under
    /// `variation`, in scratch under `dir`, beside its checkpoint, which must
    /// be there and sound. Nothing is committed, discarded or pulled.
    Audit {
        variation: &'w Variation,
        dir: &'w Path,
        jobs: usize,
        chosen: &'w dyn Fn(&PlannedStep) -> bool,
    },
}

/// What became of one step.
pub enum Outcome {
    Restored(Checkpoint),
    Built(Checkpoint),
    /// An audit rebuilt the step: its output is in `out`, unless `failed`
    /// says why the rebuild failed.
    Rebuilt {
        checkpoint: Checkpoint,
        out: PathBuf,
        failed: Option<Error>,
    },
    /// An audit left the step as its checkpoint has it.
    NotRebuilt(Checkpoint),
}

impl Outcome {
    /// The step's checkpoint, which the steps after it build on.
    pub fn checkpoint(&self) -> &Checkpoint {
        match self {
            Outcome::Restored(c) | Outcome::Built(c) | Outcome::NotRebuilt(c) => c,
            Outcome::Rebuilt { checkpoint, .. } => checkpoint,
        }
    }
}

/// What an audit's rebuild is told it is doing.
const REBUILDING: &str = "rebuilding with variations";

impl<'a> Engine<'a> {
    /// Takes each step of `plan` in order through `walk`, then hands its
    /// outcome to `each`, which may end the walk with an error.
    pub fn walk(
        &mut self,
        plan: &Plan,
        walk: &Walk,
        each: &mut dyn FnMut(&mut Engine<'a>, &PlannedStep, &Outcome) -> Result<()>,
    ) -> Result<()> {
        let mut earlier: Vec<Earlier> = Vec::new();
        let mut stage = None;
        // The keys the plan shows may assume outputs; these follow the real ones.
        let mut keys = Keys::new(&plan.chain, &self.project.lock);
        let scope = match walk {
            Walk::Run { scope, .. } => *scope,
            Walk::Audit { .. } => Scope::All,
        };
        for ahead in &plan.steps[..scope.steps(plan.steps.len())] {
            let inputs = keys.next();
            let resolved = PlannedStep {
                key: inputs.key(),
                inputs,
                assumes: None,
                ..ahead.clone()
            };
            let planned = &resolved;
            let chain_step = &planned.chain_step;
            if stage.as_ref() != Some(&chain_step.stage) {
                stage = Some(chain_step.stage.clone());
                let runner = self.runners.for_kind(chain_step.runner)?.name();
                self.reporter.event(Event::StageStarted {
                    stage: chain_step.stage.clone(),
                    runner,
                });
            }
            let outcome = match (walk, scope) {
                (Walk::Run { trust, .. }, Scope::Only(only)) if planned.index < only => {
                    self.restore_before_only(plan, planned, &earlier, *trust)?
                }
                (Walk::Run { .. }, Scope::Only(_)) => {
                    let later = (planned.index + 1..keys.len())
                        .filter(|&j| keys.sees_step(j, planned.index))
                        .map(|j| plan.steps[j].id().to_string())
                        .collect();
                    self.build_only(plan, planned, &earlier, walk, later)?
                }
                (
                    Walk::Run {
                        pull,
                        restore,
                        trust,
                        ..
                    },
                    _,
                ) => self.restore_or_build(
                    plan,
                    planned,
                    &earlier,
                    walk,
                    *restore && *pull,
                    restore.then_some(*trust),
                )?,
                (Walk::Audit { chosen, .. }, _) => {
                    self.rebuild(plan, planned, &earlier, walk, *chosen)?
                }
            };
            each(self, planned, &outcome)?;
            keys.produced(&outcome.checkpoint().meta.manifest_sha256);
            earlier.push(Earlier::new(chain_step, outcome.checkpoint().dir.clone()));
        }
        Ok(())
    }

    fn restore_or_build(
        &mut self,
        plan: &Plan,
        planned: &PlannedStep,
        earlier: &[Earlier],
        walk: &Walk,
        pull: bool,
        restore: Option<Trust>,
    ) -> Result<Outcome> {
        let (index, total, id) = (planned.index, plan.steps.len(), planned.id());
        let restored = match restore {
            Some(trust) => self.restore(planned, earlier, pull, trust)?,
            None => None,
        };
        if let Some(checkpoint) = restored {
            self.reporter.event(Event::StepRestored {
                index,
                total,
                id: id.to_string(),
                key: planned.key.clone(),
            });
            return Ok(Outcome::Restored(checkpoint));
        }
        let started = Instant::now();
        let job = self.job(plan, planned, earlier, walk)?;
        self.build(&job, walk, total, "building")?;
        let checkpoint = self.commit(&job, started)?;
        self.built_event(plan, planned, started);
        Ok(Outcome::Built(checkpoint))
    }

    fn rebuild(
        &mut self,
        plan: &Plan,
        planned: &PlannedStep,
        earlier: &[Earlier],
        walk: &Walk,
        chosen: &dyn Fn(&PlannedStep) -> bool,
    ) -> Result<Outcome> {
        let checkpoint = self.reference(planned)?;
        if !chosen(planned) {
            return Ok(Outcome::NotRebuilt(checkpoint));
        }
        let job = self.job(plan, planned, earlier, walk)?;
        let failed = match self.build(&job, walk, plan.steps.len(), REBUILDING) {
            Ok(()) => None,
            Err(e @ Error::Interrupted { .. }) => return Err(e),
            Err(e) => Some(e),
        };
        Ok(Outcome::Rebuilt {
            checkpoint,
            out: job.out(),
            failed,
        })
    }

    /// Tells the reporter a step was built and checkpointed.
    pub(super) fn built_event(&mut self, plan: &Plan, planned: &PlannedStep, started: Instant) {
        self.reporter.event(Event::StepBuilt {
            index: planned.index,
            total: plan.steps.len(),
            id: planned.id().to_string(),
            elapsed: started.elapsed(),
        });
    }

    /// The step's checkpoint, when the store has a sound one that fits the
    /// steps before it (with `pull`, after asking the shared cache for one
    /// the store lacks). One that is damaged or does not fit is discarded,
    /// and the step is built.
    pub(super) fn restore(
        &mut self,
        planned: &PlannedStep,
        earlier: &[Earlier],
        pull: bool,
        trust: Trust,
    ) -> Result<Option<Checkpoint>> {
        let id = planned.id().to_string();
        let store = self.state.store();
        if pull && !store.exists(&planned.key) {
            match self.cache.pull(&planned.key, &store) {
                Ok(true) => self.reporter.event(Event::Pulled { id: id.clone() }),
                Ok(false) => {}
                Err(why) => self.reporter.event(Event::NotPulled {
                    id: id.clone(),
                    why: why.to_string(),
                }),
            }
        }
        let why = match store.load_trusting(&planned.key, trust) {
            Ok(None) => return Ok(None),
            // A checkpoint may be sound and still not fit what came before
            // it: a VM step's disk is an overlay on the previous step's.
            Ok(Some(found)) => match (self.runners.for_kind(planned.chain_step.runner)?).fits(
                &planned.chain_step,
                &found,
                earlier,
            ) {
                Ok(()) => return Ok(Some(found)),
                Err(why) => Unusable::DoesNotFit(why.to_string()),
            },
            Err(Corrupt(why)) => Unusable::Damaged(why),
        };
        self.reporter.event(Event::Discarded {
            id,
            key: planned.key.clone(),
            why,
        });
        store.discard(&planned.key)?;
        Ok(None)
    }

    /// The checkpoint an audit compares a rebuild with: it must be there
    /// and sound, and is left as it is either way.
    fn reference(&self, planned: &PlannedStep) -> Result<Checkpoint> {
        let unusable = |problem: String| Error::CheckpointUnusable {
            step: planned.id().to_string(),
            problem,
        };
        match self.state.store().load(&planned.key) {
            Ok(Some(checkpoint)) => Ok(checkpoint),
            Ok(None) => Err(unusable("vanished".into())),
            Err(Corrupt(why)) => Err(unusable(format!("is damaged: {why}"))),
        }
    }

    /// What the step's runner gets: a run builds in the state's work
    /// directory and logs to the target's log; an audit keeps both under
    /// its own directory and varies the environment.
    pub(super) fn job<'p>(
        &self,
        plan: &Plan,
        planned: &'p PlannedStep,
        earlier: &[Earlier],
        walk: &Walk,
    ) -> Result<StepJob<'p>> {
        let id = planned.id();
        let (work, log, jobs, variation) = match walk {
            Walk::Run { jobs, .. } => (
                self.state.work_dir(id),
                self.state.log_path(&plan.chain.target.name, id),
                *jobs,
                None,
            ),
            Walk::Audit {
                variation,
                dir,
                jobs,
                ..
            } => (
                dir.join(id),
                dir.join(format!("{:02}-{id}.log", planned.index + 1)),
                *jobs,
                Some((*variation).clone()),
            ),
        };
        Ok(StepJob {
            planned,
            sources: self.sources(planned)?,
            earlier: earlier.to_vec(),
            source_date_epoch: plan.chain.target.source_date_epoch,
            jobs,
            work,
            log,
            variation,
        })
    }

    /// Runs the step's runner; on success its output is in `job.out()`.
    pub(super) fn build(
        &mut self,
        job: &StepJob,
        walk: &Walk,
        total: usize,
        action: &'static str,
    ) -> Result<()> {
        let (index, id) = (job.planned.index, job.planned.id());
        let (expected, eta) = match walk {
            Walk::Run {
                forecast, scope, ..
            } => {
                let last = scope.steps(total).saturating_sub(1);
                let (expected, eta) = forecast.at(index, last, id, &job.planned.key);
                (expected, Some(eta))
            }
            Walk::Audit { .. } => (None, None),
        };
        self.reporter.event(Event::StepStarted {
            index,
            total,
            id: id.to_string(),
            action,
            expected,
            eta,
        });
        (self.runners.for_kind(job.planned.chain_step.runner)?).run(job, &self.cancel)
    }

    /// Commits what the runner left in `job.out()` (and `job.extras()`)
    /// under the step's key, then removes its scratch.
    pub(super) fn commit(&mut self, job: &StepJob, started: Instant) -> Result<Checkpoint> {
        let planned = job.planned;
        let chain_step = &planned.chain_step;
        let definition = &chain_step.step.definition;
        let built = Built {
            runner: self.runners.for_kind(chain_step.runner)?.name(),
            millis: started.elapsed().as_millis() as u64,
        };
        let committing = Instant::now();
        let checkpoint = self.state.store().commit(
            &job.out(),
            Some(&job.extras()),
            Meta {
                key: planned.key.clone(),
                step: planned.id().to_string(),
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
        // The record names the step only after this: a kill here leaves a
        // checkpoint the record does not know.
        crate::faultpoint::reached("committed");
        note_in_log(
            &job.log,
            &format!(
                "# checkpoint committed in {:.3}s",
                committing.elapsed().as_secs_f64()
            ),
        );
        crate::fsutil::remove_tree(&job.work)?;
        Ok(checkpoint)
    }
}

/// Adds a line to a step's log. The log is a record for people, so failing
/// to extend it does not fail the step.
fn note_in_log(log: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = crate::statefs::open_append(log) {
        let _ = writeln!(file, "{line}");
    }
}
