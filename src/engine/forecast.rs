//! What progress says a run has left: each step's expected time, from the
//! times of earlier builds ([`crate::times`]), and the sum over the steps
//! still to build.

use std::time::Duration;

use crate::plan::{Plan, StepState};
use crate::state::{Record, StateDir};
use crate::times::{self, Eta, Expected};

/// The steps a run expects to build and how long each should take.
#[derive(Default)]
pub struct Forecast {
    expected: Expected,
    /// By position: the plan's key of each step it says is to be built
    /// (a step that may be kept is counted only when it starts).
    to_build: Vec<Option<(String, String)>>,
}

impl Forecast {
    /// From the target's times file, with the build times of the recorded
    /// checkpoints of steps to build standing in for builds it lacks.
    pub fn of(state: &StateDir, plan: &Plan, record: &Record) -> Forecast {
        let mut expected = Expected::of(&times::read(&times::path(state, &record.target)));
        let store = state.store();
        let to_build: Vec<Option<(String, String)>> = (plan.steps.iter().zip(&plan.states))
            .map(|(p, s)| {
                let building = !matches!(s, StepState::Done | StepState::MayBeKept { .. });
                building.then(|| (p.id().to_string(), p.key.clone()))
            })
            .collect();
        for (id, _) in to_build.iter().flatten() {
            let Some(recorded) = record.steps.get(id) else {
                continue;
            };
            if let Some(built) = store.meta(&recorded.key).and_then(|m| m.built) {
                expected.add_if_unknown(id, &recorded.key, built.millis);
            }
        }
        Forecast { expected, to_build }
    }

    /// When step `index` (`id`, under `key`) starts: its expected time, and
    /// what is left of the run up to step `last` from its start.
    pub fn at(&self, index: usize, last: usize, id: &str, key: &str) -> (Option<Duration>, Eta) {
        let this = self.expected.get(id, key);
        let mut eta = Eta {
            left: this.unwrap_or_default(),
            unknown: usize::from(this.is_none()),
        };
        let later = self.to_build.iter().take(last + 1).skip(index + 1);
        for (id, key) in later.flatten() {
            match self.expected.get(id, key) {
                Some(d) => eta.left += d,
                None => eta.unknown += 1,
            }
        }
        (this, eta)
    }
}
