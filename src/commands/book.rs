//! `book` and `explain`: the chain as a book, and one step's page in the
//! terminal.

use std::io::IsTerminal;

use super::Paths;
use crate::book::{self, model::Book};
use crate::cli::{BookArgs, ExplainArgs};
use crate::error::{Error, Result};
use crate::project::Project;
use crate::state::StateDir;

pub fn book(paths: &Paths, args: &BookArgs) -> Result<()> {
    let project = Project::open(&paths.project)?;
    if args.check {
        let problems = book::check::problems(&project)?;
        if problems.is_empty() {
            println!("every step has a description and every patch a reason");
            return Ok(());
        }
        return Err(Error::Usage(format!(
            "the chain is not teachable yet:\n{}",
            problems.join("\n")
        )));
    }
    let target = args.target.as_deref().expect("clap requires --target");
    let state = StateDir::open(paths.state.clone())?;
    let loaded = Book::load(&project, &state, target, &args.overrides)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| paths.state.join("book").join(target));
    let pages = book::write(&loaded, &out)?;
    let built = loaded.steps.iter().filter(|s| s.built.is_some()).count();
    println!(
        "wrote {pages} pages ({built} of {} steps built) to {}",
        loaded.steps.len(),
        out.display()
    );
    println!("open {}", out.join("index.html").display());
    Ok(())
}

pub fn explain(paths: &Paths, args: &ExplainArgs) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let target = match &args.target {
        Some(target) => target.clone(),
        None => target_of_step(&project, args)?,
    };
    let state = StateDir::open(paths.state.clone())?;
    let loaded = Book::load(&project, &state, &target, &args.overrides)?;
    let Some(step) = loaded.step(&args.step) else {
        let ids: Vec<&str> = loaded.steps.iter().map(|s| s.id()).collect();
        return Err(Error::Usage(format!(
            "target {target} has no step {:?} (its steps: {})",
            args.step,
            ids.join(", ")
        )));
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let page = book::page::render(&loaded, step);
    print!("{}", book::explain::render(&page, color));
    Ok(())
}

/// The one target whose chain has the step, when `--target` is not given.
fn target_of_step(project: &Project, args: &ExplainArgs) -> Result<String> {
    let names = project.target_names();
    if let [only] = names.as_slice() {
        // Its own message names the steps it has.
        return Ok(only.clone());
    }
    let having: Vec<&String> = names
        .iter()
        .filter(|t| {
            project
                .chain(t, &args.overrides)
                .is_ok_and(|c| c.steps.iter().any(|s| s.id == args.step))
        })
        .collect();
    match having.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err(Error::Usage(format!(
            "no target has a step {:?} (targets: {})",
            args.step,
            names.join(", ")
        ))),
        several => Err(Error::Usage(format!(
            "which target? step {:?} is in {}: pass --target",
            args.step,
            several
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}
