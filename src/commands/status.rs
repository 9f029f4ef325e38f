//! `stagebuild status`: what the state directory holds, whether a run holds
//! it, and each step's latest and earlier logs.

use super::Paths;
use crate::cli::StatusArgs;
use crate::color::{Stream, Style, paint};
use crate::error::Result;
use crate::report;
use crate::runner::guest::built_in_dir;
use crate::state::StateDir;

pub fn run(paths: &Paths, args: &StatusArgs) -> Result<()> {
    let state = StateDir::open(paths.state.clone())?;
    let holder = state.holder();
    let targets = state.recorded_targets();
    let store = state.store();
    if args.json {
        let doc = serde_json::json!({
            "state": paths.state,
            "running": holder,
            "targets": targets.iter().map(|r| serde_json::json!({
                "target": r.target,
                "logs": state.log_dir(&r.target),
                "steps": r.steps.iter().map(|(id, s)| serde_json::json!({
                    "id": id, "key": s.key, "checkpoint": store.exists(&s.key),
                    "kernel": recorded_kernel(&store, &s.key),
                    "built_in": built_in_dir(&store.dir(&s.key)),
                    "log": Some(state.log_path(&r.target, id)).filter(|p| p.exists()),
                    "earlier_logs": crate::logs::earlier(&state.log_dir(&r.target), id),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("status serializes")
        );
        return Ok(());
    }
    println!("state directory {}", paths.state.display());
    match holder {
        Some(holder) => println!("in use by {holder}"),
        None => println!("no run in progress"),
    }
    for record in targets {
        let logs = state.log_dir(&record.target);
        println!(
            "target {}: {} steps recorded; logs in {} (earlier runs' in {}/)",
            record.target,
            record.steps.len(),
            logs.display(),
            crate::logs::HISTORY
        );
        for (id, step) in &record.steps {
            let present = if store.exists(&step.key) {
                paint(Stream::Stdout, Style::Good, "checkpoint")
            } else {
                paint(Stream::Stdout, Style::Error, "checkpoint missing")
            };
            let kernel = built_in_dir(&store.dir(&step.key))
                .zip(recorded_kernel(&store, &step.key))
                .map(|(mode, k)| format!(" (built in {mode}, uname: {k})"))
                .unwrap_or_default();
            let earlier = match crate::logs::earlier(&logs, id).len() {
                0 => String::new(),
                n => format!(", {n} earlier"),
            };
            let log = match state.log_path(&record.target, id).exists() {
                true => format!("  log {id}.log{earlier}"),
                false => String::new(),
            };
            println!(
                "  {id:<20} {}  {present}{kernel}{log}",
                report::short(&step.key)
            );
        }
    }
    Ok(())
}

/// The kernel a VM step's guest ended in, as its checkpoint recorded it.
fn recorded_kernel(store: &crate::checkpoint::Store, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(store.dir(key).join(crate::runner::guest::KERNEL)).ok()?;
    Some(text.trim().to_string())
}
