//! `stagebuild shell --target T [STEP]`: an interactive shell in a step's
//! environment. A host step whose run failed gets its sandbox over the work
//! directory the failure left (kept until the next run of that step); any
//! other host step gets that sandbox over its sources prepared afresh. A
//! step of a VM stage gets a guest booted from the last good checkpoint, its
//! console on the terminal (or, with `--guest sandbox`, the sandbox that
//! stands in for its guest). The shell holds the state's lock, so no run
//! changes checkpoints under it, and whatever it writes is scratch: no
//! checkpoint, record or log changes.

use std::path::{Path, PathBuf};

use super::{Paths, cpus, sandbox};
use crate::cli::{AccelChoice, GuestChoice, ShellArgs};
use crate::error::{Error, Result};
use crate::fsutil::remove_tree;
use crate::mirror::Mirror;
use crate::plan::{Plan, StepState};
use crate::project::Project;
use crate::runner::guest_sandbox::GuestSandboxRunner;
use crate::runner::host::{HostRunner, WORK_KEY};
use crate::runner::vm::{Accel, VmRunner};
use crate::runner::{Earlier, StepJob, terminal};
use crate::state::StateDir;
use crate::target::RunnerKind;

pub fn run(paths: &Paths, args: &ShellArgs, max_unpacked: u64) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let state = StateDir::open(paths.state.clone())?;
    let target = &args.target.target;
    let plan = Plan::load(&project, &state, target, &args.target.overrides)?;
    let index = pick(&plan, args.step.as_deref(), target)?;
    let planned = &plan.steps[index];
    let id = planned.id();
    if let Some(missing) = (0..index).find(|&i| plan.states[i] != StepState::Done) {
        let missing = plan.steps[missing].id();
        return Err(Error::Usage(format!(
            "{missing}, before {id}, has no checkpoint, so {id}'s environment cannot be made; \
             build it first (`stagebuild run --target {target} --resume`), or open a shell in \
             {missing}"
        )));
    }
    let store = state.store();
    let earlier = (plan.steps[..index].iter())
        .map(|p| Earlier::new(&p.chain_step, store.dir(&p.key)))
        .collect();
    let _lock = state.lock(&std::env::args().collect::<Vec<_>>().join(" "))?;
    let scratch = state.tmp().join(format!("shell-{id}"));
    let mut job = StepJob {
        planned,
        sources: Vec::new(),
        earlier,
        source_date_epoch: plan.chain.target.source_date_epoch,
        jobs: cpus(),
        work: scratch.clone(),
        log: scratch.join("shell.log"),
        variation: None,
    };
    let prompt = format!("stagebuild:{id}$ ");
    let kept = state.work_dir(id);
    let mirror = Mirror::new(paths.mirror.clone());
    let sources = || mirror.step_sources(&project.lock, &planned.chain_step.step);
    if planned.chain_step.runner == RunnerKind::Host && is_kept(&kept) {
        job.work = kept;
        let runner = host_runner(args, max_unpacked)?;
        eprintln!("{}", kept_banner(id, &job.work, &planned.key));
        let argv = runner.command_in_sandbox(&job, host_shell(), &[("PS1", &prompt)]);
        terminal::run(&argv, None)?;
        return Ok(());
    }
    job.sources = sources()?;
    let opened = match (planned.chain_step.runner, args.guest) {
        (RunnerKind::Host, _) => {
            let runner = host_runner(args, max_unpacked)?;
            drop(runner.prepare(&job, &crate::cancel::Cancel::default())?);
            eprintln!(
                "stagebuild shell: {id} in its sandbox, its sources unpacked and patched afresh \
                 in /build (no failed run left a build directory); its script is \
                 /stagebuild/step.sh (sh -e /stagebuild/step.sh runs it); exit leaves, and \
                 this scratch is removed; no checkpoint changes"
            );
            let argv = runner.command_in_sandbox(&job, host_shell(), &[("PS1", &prompt)]);
            terminal::run(&argv, None).map(drop)
        }
        (RunnerKind::Vm, GuestChoice::Sandbox) => {
            let runner =
                GuestSandboxRunner::new(sandbox(args.sandbox)?, project.agent_path(), max_unpacked);
            let (argv, persona) = runner.shell_command(&job, &prompt)?;
            eprintln!(
                "stagebuild shell: {id} in the sandbox that stands in for its guest, on the \
                 root its guest would have; its script is /build/.stagebuild/step.sh; exit \
                 leaves; no checkpoint changes"
            );
            terminal::run(&argv, Some(persona)).map(drop)
        }
        (RunnerKind::Vm, GuestChoice::Qemu) => {
            let accel = match args.accel {
                AccelChoice::Tcg => Accel::Tcg,
                AccelChoice::Auto => Accel::Auto,
            };
            let mut runner = VmRunner::new(
                project.agent_path(),
                accel,
                &paths.state,
                sandbox(args.sandbox)?,
                max_unpacked,
            );
            let from = match index.checked_sub(1) {
                Some(before) => format!("on the checkpoints up to {}", plan.steps[before].id()),
                None => "on an empty root".to_string(),
            };
            eprintln!(
                "stagebuild shell: booting {id}'s guest {from}, its console on this terminal; \
                 its root disk is a scratch overlay, discarded when the guest is off"
            );
            runner.shell(&job, &prompt)
        }
    };
    let removed = remove_tree(&scratch);
    opened.and(removed)
}

/// The step named, or the first one without a checkpoint (said on stderr).
fn pick(plan: &Plan, step: Option<&str>, target: &str) -> Result<usize> {
    if let Some(step) = step {
        return plan
            .steps
            .iter()
            .position(|p| p.id() == step)
            .ok_or_else(|| {
                let ids: Vec<&str> = plan.steps.iter().map(|p| p.id()).collect();
                Error::Usage(format!(
                    "target {target} has no step {step}; its steps: {}",
                    ids.join(", ")
                ))
            });
    }
    let first = (plan.states.iter().position(|s| *s != StepState::Done)).ok_or_else(|| {
        Error::Usage(format!(
            "every step of {target} has a checkpoint; name the step to open a shell in: \
             stagebuild shell --target {target} STEP"
        ))
    })?;
    eprintln!(
        "stagebuild shell: {}, the first step of {target} without a checkpoint",
        plan.steps[first].id()
    );
    Ok(first)
}

/// Whether a failed run left the host step's work directory.
fn is_kept(work: &Path) -> bool {
    work.join("build").is_dir() && work.join("step.sh").is_file()
}

fn kept_banner(id: &str, work: &Path, key: &str) -> String {
    let left_by = std::fs::read_to_string(work.join(WORK_KEY)).unwrap_or_default();
    let stale = if left_by.trim() == key {
        String::new()
    } else {
        format!(" (left by an earlier definition of {id}: its inputs have changed since)")
    };
    format!(
        "stagebuild shell: {id} in its sandbox as its failed run left it{stale}: /build is \
         {build}, /out {out}, /sysroot what it saw; its script is /stagebuild/step.sh \
         (sh -e /stagebuild/step.sh runs it again). The directory stays until the next run of \
         {id}. exit leaves; no checkpoint changes",
        build = work.join("build").display(),
        out = work.join("out").display(),
    )
}

fn host_runner(args: &ShellArgs, max_unpacked: u64) -> Result<HostRunner> {
    Ok(HostRunner {
        sandbox: sandbox(args.sandbox)?,
        max_unpacked,
    })
}

/// The host's bash if it has one (without its startup files, which would
/// change the step's environment), else its sh.
fn host_shell() -> Vec<String> {
    let bash = PathBuf::from("/bin/bash");
    let argv: &[&str] = if bash.is_file() {
        &["/bin/bash", "--norc", "--noprofile", "-i"]
    } else {
        &["/bin/sh", "-i"]
    };
    argv.iter().map(|s| s.to_string()).collect()
}
