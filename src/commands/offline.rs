//! `--offline` for `mirror fetch` and `run`, and `run --from DIR`: the mirror
//! is filled from local directories only, and no network client is made.

use std::path::PathBuf;

use super::Paths;
use crate::cli::{FetchArgs, RunArgs};
use crate::error::{Error, Result};
use crate::lock::LockEntry;
use crate::mirror::Mirror;
use crate::mirror::fetch::{Fetcher, Outcome, fetch_all};
use crate::mirror::from::From;
use crate::mirror::offline::{LocalDirs, missing};
use crate::plan::{Plan, StepState};
use crate::project::Project;
use crate::report;
use crate::state::StateDir;

/// `mirror fetch --offline`.
pub fn fetch(project: &Project, mirror: &Mirror, args: &FetchArgs) -> Result<()> {
    let dirs = args
        .from
        .iter()
        .map(|f| match From::parse(f) {
            From::Dir(dir) => Ok(dir),
            From::Url(url) => Err(Error::Usage(format!(
                "--offline: --from {url} is a URL; give directories only"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let entries = super::mirror::wanted_entries(project, args.target.as_deref())?;
    let outcomes = fill(mirror, &entries, &dirs, args.jobs)?;
    let fetched = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Fetched { .. }))
        .count();
    let present = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Present)
        .count();
    let lacking = lacking(&entries, &outcomes);
    println!(
        "{fetched} copied from local directories, {present} already present, {} missing",
        lacking.len()
    );
    match lacking.is_empty() {
        true => Ok(()),
        false => Err(missing(&mirror.root, &lacking, &dirs)),
    }
}

/// Before `run`: copies the sources of the steps still to build from the
/// `--from` directories, and with `--offline` fails, naming each, if one is
/// still missing. Without `--offline` a missing source is left to the run's
/// own check.
pub fn prepare_run(paths: &Paths, args: &RunArgs) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let (target, overrides) = (&args.target.target, &args.target.overrides);
    // --fresh builds every step, and does not read the earlier record.
    let to_build: Vec<_> = if args.fresh {
        project.chain(target, overrides)?.steps
    } else {
        let state = StateDir::open(paths.state.clone())?;
        let plan = Plan::load(&project, &state, target, overrides)?;
        plan.steps
            .into_iter()
            .zip(plan.states)
            .filter(|(_, state)| *state != StepState::Done)
            .map(|(planned, _)| planned.chain_step)
            .collect()
    };
    let mut names: Vec<&str> = to_build
        .iter()
        .flat_map(|s| s.step.definition.sources.iter())
        .map(String::as_str)
        .collect();
    names.sort();
    names.dedup();
    let entries: Vec<&LockEntry> = names.iter().filter_map(|n| project.lock.get(n)).collect();
    let mirror = Mirror::new(paths.mirror.clone());
    let outcomes = fill(&mirror, &entries, &args.from, 4)?;
    let lacking = lacking(&entries, &outcomes);
    if args.offline && !lacking.is_empty() {
        return Err(missing(&mirror.root, &lacking, &args.from));
    }
    Ok(())
}

fn fill(
    mirror: &Mirror,
    entries: &[&LockEntry],
    dirs: &[PathBuf],
    jobs: usize,
) -> Result<Vec<(String, Outcome)>> {
    if dirs.is_empty() {
        // Nowhere to copy from: only say what the mirror lacks.
        return Ok(entries
            .iter()
            .map(|e| {
                let outcome = match mirror.has(e) {
                    true => Outcome::Present,
                    false => Outcome::Failed { errors: Vec::new() },
                };
                (e.name.clone(), outcome)
            })
            .collect());
    }
    let local = LocalDirs(dirs.to_vec());
    let fetchers: [&dyn Fetcher; 1] = [&local];
    let reporter = report::fetch_reporter();
    fetch_all(mirror, entries, &fetchers, jobs, reporter.as_ref())
}

fn lacking<'a>(entries: &[&'a LockEntry], outcomes: &[(String, Outcome)]) -> Vec<&'a LockEntry> {
    entries
        .iter()
        .filter(|e| {
            outcomes
                .iter()
                .any(|(name, o)| *name == e.name && matches!(o, Outcome::Failed { .. }))
        })
        .copied()
        .collect()
}
