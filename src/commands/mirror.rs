//! `stagebuild mirror …`

use std::collections::BTreeSet;
use std::time::Duration;

use super::Paths;
use crate::cli::{FetchArgs, MirrorCommand};
use crate::color::{Stream, Style, paint};
use crate::error::{Error, Result};
use crate::lock::LockEntry;
use crate::mirror::fetch::{Fetcher, Outcome, fetch_all};
use crate::mirror::from::{From, FromMirrors};
use crate::mirror::verify::{FileState, verify};
use crate::mirror::{Mirror, apt::AptFetcher, git::GitFetcher, http::HttpFetcher, pack};
use crate::project::Project;
use crate::report;

pub fn run(paths: &Paths, command: &MirrorCommand) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let mirror = Mirror::new(paths.mirror.clone());
    match command {
        MirrorCommand::Fetch(args) => fetch(&project, &mirror, args),
        MirrorCommand::Verify { target, json, jobs } => {
            let entries = wanted_entries(&project, target.as_deref())?;
            let all: BTreeSet<&str> = project
                .lock
                .entries
                .values()
                .map(|e| e.sha256.as_str())
                .collect();
            let report = verify(&mirror, &entries, &all, jobs.unwrap_or_else(super::cpus));
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serializes")
                );
            } else {
                let label = |style, text| paint(Stream::Stdout, style, text);
                for (name, state) in &report.files {
                    match state {
                        FileState::Ok => println!("{}       {name}", label(Style::Good, "ok")),
                        FileState::Missing => {
                            println!("{}  {name}", label(Style::Error, "MISSING"))
                        }
                        FileState::Corrupt { actual } => println!(
                            "{}  {name}  (sha256 {actual})",
                            label(Style::Error, "CORRUPT")
                        ),
                    }
                }
                for file in &report.unreferenced {
                    println!("unreferenced  {file}");
                }
            }
            if report.is_complete() {
                Ok(())
            } else {
                let bad = report
                    .files
                    .iter()
                    .filter(|(_, s)| *s != FileState::Ok)
                    .count();
                Err(Error::MirrorIncomplete {
                    mirror: mirror.root.clone(),
                    count: bad,
                })
            }
        }
        MirrorCommand::Import { dir } => {
            let entries: Vec<&LockEntry> = project.lock.entries.values().collect();
            let adopted = mirror.import(dir, &entries)?;
            for (name, file) in &adopted {
                println!("imported {name}  (from {})", file.display());
            }
            println!("{} file(s) matched the lock", adopted.len());
            Ok(())
        }
        MirrorCommand::Pack { out, target } => {
            let entries = wanted_entries(&project, target.as_deref())?;
            let count = pack::pack(&mirror, &entries, out)?;
            println!("packed {count} file(s) into {}", out.display());
            Ok(())
        }
        MirrorCommand::Unpack { input } => {
            let names = pack::unpack(&mirror, input)?;
            for name in &names {
                println!("unpacked {name}");
            }
            println!(
                "{} file(s) verified and unpacked into {}",
                names.len(),
                mirror.root.display()
            );
            Ok(())
        }
    }
}

fn fetch(project: &Project, mirror: &Mirror, args: &FetchArgs) -> Result<()> {
    if args.offline {
        return super::offline::fetch(project, mirror, args);
    }
    let entries = wanted_entries(project, args.target.as_deref())?;
    let http = HttpFetcher::new(
        Duration::from_secs(args.timeout),
        args.tries,
        Duration::from_millis(args.backoff_ms),
    )
    .map_err(|e| Error::Host {
        context: "setting up HTTP".into(),
        problem: e.to_string(),
    })?;
    let from = FromMirrors {
        mirrors: args.from.iter().map(|f| From::parse(f)).collect(),
        http: &http,
    };
    // A file's own URLs first, then other mirrors, then the ways of making or
    // asking for it.
    let fetchers: [&dyn Fetcher; 4] = [&http, &from, &GitFetcher, &AptFetcher];
    let reporter = report::fetch_reporter();
    let outcomes = fetch_all(mirror, &entries, &fetchers, args.jobs, reporter.as_ref())?;
    drop(reporter);

    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let fetched = count(|o| matches!(o, Outcome::Fetched { .. }));
    let present = count(|o| matches!(o, Outcome::Present));
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
        .collect();
    println!(
        "{fetched} fetched, {present} already present, {} failed",
        failed.len()
    );
    for (name, outcome) in &failed {
        if let Outcome::Failed { errors } = outcome {
            println!("failed: {name}");
            for e in errors {
                println!("  {e}");
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Fetch(format!(
            "{} source(s) could not be fetched; the mirror holds none of them",
            failed.len()
        )))
    }
}

pub(super) fn wanted_entries<'a>(
    project: &'a Project,
    target: Option<&str>,
) -> Result<Vec<&'a LockEntry>> {
    let Some(target) = target else {
        return Ok(project.lock.entries.values().collect());
    };
    let chain = project.chain(target, &[])?;
    let mut names: Vec<&str> = chain
        .steps
        .iter()
        .flat_map(|s| s.step.definition.sources.iter().map(String::as_str))
        .collect();
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .filter_map(|n| project.lock.get(n))
        .collect())
}
