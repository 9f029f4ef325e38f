//! `run --only STEP`: every step before it is restored as it is (none is
//! built), the step itself is built, and its checkpoint replaced only when
//! that invalidates nothing, or names what it invalidates.

use std::time::Instant;

use super::{Engine, Outcome, Walk};
use crate::checkpoint::{Trust, output_of_tree};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlannedStep};
use crate::report::Event;
use crate::runner::Earlier;

/// What `--only` tells the runner it does.
const ONLY: &str = "rebuilding this step only";

impl Engine<'_> {
    /// A step before the one `--only` builds: its checkpoint, restored, or
    /// the refusal (the plan checked each has one; this is the checkpoint
    /// found damaged, or not fitting, after that).
    pub(super) fn restore_before_only(
        &mut self,
        plan: &Plan,
        planned: &PlannedStep,
        earlier: &[Earlier],
        trust: Trust,
    ) -> Result<Outcome> {
        match self.restore(planned, earlier, false, trust)? {
            Some(checkpoint) => {
                self.reporter.event(Event::StepRestored {
                    index: planned.index,
                    total: plan.steps.len(),
                    id: planned.id().to_string(),
                    key: planned.key.clone(),
                });
                Ok(Outcome::Restored(checkpoint))
            }
            None => Err(Error::NotCheckpointed {
                step: plan
                    .steps
                    .last()
                    .map(|p| p.id().to_string())
                    .unwrap_or_default(),
                missing: planned.id().to_string(),
                state: "its checkpoint could not be used".into(),
            }),
        }
    }

    /// Builds the step `--only` names. Under a key that already has a
    /// checkpoint, another output is refused, the checkpoint kept and the
    /// rebuild dropped: `later` are the steps that see it, which replacing
    /// it would invalidate.
    pub(super) fn build_only(
        &mut self,
        plan: &Plan,
        planned: &PlannedStep,
        earlier: &[Earlier],
        walk: &Walk,
        later: Vec<String>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let job = self.job(plan, planned, earlier, walk)?;
        self.build(&job, walk, plan.steps.len(), ONLY)?;
        let store = self.state.store();
        if let Some(existing) = store.output(&planned.key) {
            let rebuilt = output_of_tree(&job.out()).map_err(|e| Error::Output {
                step: planned.id().to_string(),
                problem: e.to_string(),
            })?;
            if rebuilt != existing {
                crate::fsutil::remove_tree(&job.work)?;
                return Err(Error::WouldInvalidate {
                    step: planned.id().to_string(),
                    later,
                });
            }
        }
        let checkpoint = self.commit(&job, started)?;
        self.built_event(plan, planned, started);
        Ok(Outcome::Built(checkpoint))
    }
}
