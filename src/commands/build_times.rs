//! `stagebuild report --target T`: each step's build times across runs, as
//! a table or as JSON, from the target's times file ([`crate::times`]); a
//! recorded checkpoint whose build the file lacks (made before it existed)
//! adds its own time from its meta.json.

use std::time::Duration;

use serde::Serialize;

use super::Paths;
use crate::cli::ReportArgs;
use crate::error::Result;
use crate::project::Project;
use crate::state::StateDir;
use crate::times::{self, Timing, human};

#[derive(Serialize)]
struct StepTimes {
    id: String,
    /// Oldest first.
    runs: Vec<Timing>,
}

pub fn report(paths: &Paths, args: &ReportArgs) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let state = StateDir::open(paths.state.clone())?;
    let target = &args.target.target;
    let chain = project.chain(target, &args.target.overrides)?;
    let record = state.record(target)?;
    let all = times::read(&times::path(&state, target));
    let store = state.store();
    let steps: Vec<StepTimes> = (chain.steps.iter())
        .map(|step| {
            let mut runs: Vec<Timing> = (all.iter().filter(|t| t.step == step.id))
                .cloned()
                .collect();
            let recorded = record.steps.get(&step.id);
            let older = (recorded.filter(|r| !runs.iter().any(|t| t.key == r.key)))
                .and_then(|r| Some((r, store.meta(&r.key)?.built?)))
                .map(|(r, built)| Timing {
                    step: step.id.clone(),
                    key: r.key.clone(),
                    millis: built.millis,
                    runner: built.runner,
                    finished: None,
                });
            runs.splice(0..0, older);
            StepTimes {
                id: step.id.clone(),
                runs,
            }
        })
        .collect();
    if args.json {
        let doc = serde_json::json!({ "target": target, "steps": steps });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("report serializes")
        );
        return Ok(());
    }
    print!("{}", table(target, &steps));
    Ok(())
}

/// One row per step: how many builds, the last, the fastest and slowest,
/// and the last few in order.
fn table(target: &str, steps: &[StepTimes]) -> String {
    const SHOWN: usize = 5;
    let width = (steps.iter().map(|s| s.id.chars().count()).max())
        .unwrap_or(4)
        .max(4);
    let mut out = format!("target {target}: build times across runs (oldest first)\n");
    out += &format!(
        "  {:<width$}  {:>4}  {:>8}  {:>8}  {:>8}  last {SHOWN}\n",
        "step", "runs", "last", "fastest", "slowest"
    );
    for step in steps {
        let ms: Vec<Duration> = (step.runs.iter())
            .map(|t| Duration::from_millis(t.millis))
            .collect();
        let cell = |d: Option<&Duration>| d.map(|d| human(*d)).unwrap_or_else(|| "-".into());
        let recent: Vec<String> = (ms.iter().skip(ms.len().saturating_sub(SHOWN)))
            .map(|d| human(*d))
            .collect();
        out += &format!(
            "  {:<width$}  {:>4}  {:>8}  {:>8}  {:>8}  {}\n",
            step.id,
            ms.len(),
            cell(ms.last()),
            cell(ms.iter().min()),
            cell(ms.iter().max()),
            recent.join(" ")
        );
    }
    out
}
