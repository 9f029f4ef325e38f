//! `stagebuild audit`: rebuild a completed run's steps under variations and
//! compare, host steps in the host sandbox and guest steps in the guest mode
//! asked for.

use super::{Paths, Session, cpus, sandbox};
use crate::audit::guests::{GuestChoice as Guests, GuestModes};
use crate::audit::{Auditor, Scope};
use crate::cli::{AccelChoice, AuditArgs, DirOrderChoice, GuestChoice};
use crate::error::{Error, Result};
use crate::runner::builddir::DirOrder;
use crate::runner::guest::GuestMode;
use crate::runner::guest_sandbox::GuestSandboxRunner;
use crate::runner::vm::{Accel, VmRunner};
use crate::target::RunnerKind;

pub fn audit(paths: &Paths, args: &AuditArgs, max_unpacked: u64) -> Result<()> {
    if !args.target.overrides.is_empty() {
        return Err(Error::Usage(
            "audit compares against the recorded run; it takes no --set".into(),
        ));
    }
    let Session {
        project,
        state,
        mirror,
        mut runners,
        mut reporter,
        cancel,
    } = Session::open(paths, args.sandbox, AccelChoice::Tcg, max_unpacked)?;
    let guests = match (args.compare_modes, args.guest) {
        (true, _) => Guests::CompareModes,
        (false, GuestChoice::Qemu) => Guests::Mode(GuestMode::Qemu),
        (false, GuestChoice::Sandbox) => Guests::Mode(GuestMode::Sandbox),
    };
    runners.add(
        RunnerKind::Vm,
        GuestModes {
            qemu: Box::new(VmRunner::new(
                project.agent_path(),
                Accel::Tcg,
                &paths.state,
                sandbox(args.sandbox)?,
                max_unpacked,
            )),
            sandbox: Box::new(GuestSandboxRunner::new(
                sandbox(args.sandbox)?,
                project.agent_path(),
                max_unpacked,
            )),
            choice: guests,
            checkpoints: state.store(),
        },
    );
    let jobs = cpus();
    let dir_order = match args.dir_order {
        DirOrderChoice::Auto => None,
        DirOrderChoice::HashSeed => Some(DirOrder::HashSeed),
        DirOrderChoice::Disorderfs => Some(DirOrder::Disorderfs),
    };
    let variation = crate::audit::audit_variation(jobs, dir_order)?;
    let mut auditor = Auditor {
        project: &project,
        state: &state,
        mirror: &mirror,
        runners: &mut runners,
        reporter: reporter.as_mut(),
        cancel,
    };
    let target = &args.target.target;
    let scope = Scope {
        only: args.only.clone(),
        guests,
    };
    let report = auditor.audit_scope(
        target,
        variation,
        jobs,
        &std::env::args().collect::<Vec<_>>().join(" "),
        &scope,
    )?;
    let dir = auditor.audit_dir(target);
    drop(reporter);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", crate::audit::report::text(&report));
        println!(
            "reports: {} (also report.json, report.txt)",
            dir.join("report.html").display()
        );
    }
    // Steps left out with --only are said in the headline and do not fail
    // the audit, as a test runner passes with the tests it was told to skip.
    match report.first_divergent {
        Some(step) => Err(Error::NotReproducible {
            step,
            report: dir.join("report.html"),
        }),
        None => Ok(()),
    }
}
