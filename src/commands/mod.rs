//! What each subcommand does, given parsed arguments. Output for people goes
//! to stderr (progress) and stdout (tables, JSON).

use std::path::PathBuf;

mod audit;
mod book;
mod build_times;
mod cache;
mod init;
mod lock;
mod lock_apt;
mod manual;
mod mirror;
mod offline;
mod resume;
mod shell;
mod status;
mod table;

use crate::cli::{AccelChoice, Cli, Command, GuestChoice, PlanArgs, RunArgs, SandboxChoice};
use crate::engine::{Engine, RunOptions};
use crate::error::{Error, Result};
use crate::mirror::Mirror;
use crate::plan::{Plan, StepState};
use crate::project::Project;
use crate::report;
use crate::runner::Cancel;
use crate::runner::Runners;
use crate::runner::guest::built_in_dir;
use crate::runner::guest_sandbox::GuestSandboxRunner;
use crate::runner::host::HostRunner;
use crate::runner::vm::{Accel, VmRunner};
use crate::sandbox::{Sandbox, bwrap::Bwrap, namespaces::Namespaces};
use crate::state::StateDir;
use crate::target::RunnerKind;

pub(crate) struct Paths {
    pub project: PathBuf,
    pub state: PathBuf,
    pub mirror: PathBuf,
}

impl Paths {
    /// Absolute paths, so that sandboxes and messages do not depend on the
    /// current directory.
    fn of(cli: &Cli) -> Paths {
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        Paths {
            state: absolute(
                cli.state
                    .clone()
                    .unwrap_or_else(|| cli.project.join("state")),
            ),
            mirror: absolute(
                cli.mirror
                    .clone()
                    .unwrap_or_else(|| cli.project.join("mirror")),
            ),
            project: absolute(cli.project.clone()),
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let paths = Paths::of(&cli);
    match &cli.command {
        Command::Run(args) => run(&cli, &paths, args),
        Command::Plan(args) => plan(&paths, args),
        Command::Status(args) => status::run(&paths, args),
        Command::Report(args) => build_times::report(&paths, args),
        Command::Audit(args) => audit::audit(&paths, args, cli.max_unpacked),
        Command::Mirror(command) => mirror::run(&paths, command),
        Command::Lock(command) => lock::run(&paths, command),
        Command::Init { dir } => {
            let dir = dir.as_ref().unwrap_or(&cli.project);
            init::run(dir, cli.mirror.as_deref().unwrap_or(&dir.join("mirror")))
        }
        Command::Completions { shell } => manual::completions(*shell),
        Command::Man { dir } => manual::man(dir.as_deref()),
        Command::Schema { kind } => {
            let schema = crate::schema::schema(*kind);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a schema serializes")
            );
            Ok(())
        }
        Command::Cache(command) => cache::run(&paths, cli.cache.as_deref(), command),
        Command::Book(args) => book::book(&paths, args),
        Command::Explain(args) => book::explain(&paths, args),
        Command::Shell(args) => shell::run(&paths, args, cli.max_unpacked),
        Command::SandboxExec { spec_json } => {
            let spec = serde_json::from_str(spec_json)
                .map_err(|e| Error::Usage(format!("bad sandbox spec: {e}")))?;
            match crate::sandbox::namespaces::enter(&spec) {
                Ok(never) => match never {},
                Err(e) => Err(Error::Host {
                    context: "sandbox".into(),
                    problem: e.to_string(),
                }),
            }
        }
    }
}

pub(crate) fn sandbox(choice: SandboxChoice) -> Result<Box<dyn Sandbox>> {
    let namespaces = || -> Result<Box<dyn Sandbox>> {
        let exe = std::env::current_exe().map_err(|e| Error::Host {
            context: "finding stagebuild's own binary".into(),
            problem: e.to_string(),
        })?;
        Ok(Box::new(Namespaces { exe }))
    };
    match choice {
        SandboxChoice::Bwrap => Bwrap::find()
            .map(|b| Box::new(b) as Box<dyn Sandbox>)
            .ok_or_else(|| {
                Error::Usage(
                    "--sandbox bwrap: bwrap is not installed (Debian: apt-get install bubblewrap)"
                        .into(),
                )
            }),
        SandboxChoice::Namespaces => namespaces(),
        SandboxChoice::Auto => match Bwrap::find() {
            Some(b) => Ok(Box::new(b)),
            None => namespaces(),
        },
    }
}

/// What a building command needs: the project, its state and mirror, a
/// runner, a reporter and the interrupt flag.
pub(crate) struct Session {
    pub project: Project,
    pub state: StateDir,
    pub mirror: Mirror,
    pub runners: Runners,
    pub reporter: Box<dyn report::Reporter>,
    pub cancel: Cancel,
}

impl Session {
    pub(crate) fn open(
        paths: &Paths,
        choice: SandboxChoice,
        accel: AccelChoice,
        max_unpacked: u64,
    ) -> Result<Session> {
        let project = Project::open(&paths.project)?;
        let state = StateDir::open(paths.state.clone())?;
        let accel = match accel {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Auto => Accel::Auto,
        };
        let mut runners = Runners::default();
        runners.add(
            RunnerKind::Host,
            HostRunner {
                sandbox: sandbox(choice)?,
                max_unpacked,
            },
        );
        runners.add(
            RunnerKind::Vm,
            VmRunner::new(
                project.agent_path(),
                accel,
                &paths.state,
                sandbox(choice)?,
                max_unpacked,
            ),
        );
        Ok(Session {
            runners,
            project,
            state,
            mirror: Mirror::new(paths.mirror.clone()),
            reporter: report::for_stderr(),
            cancel: Cancel::on_signals().map_err(|e| Error::Host {
                context: "installing signal handlers".into(),
                problem: e.to_string(),
            })?,
        })
    }
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run(cli: &Cli, paths: &Paths, args: &RunArgs) -> Result<()> {
    if args.offline || !args.from.is_empty() {
        offline::prepare_run(paths, args)?;
    }
    let Session {
        project,
        state,
        mirror,
        mut runners,
        mut reporter,
        cancel,
    } = Session::open(paths, args.sandbox, args.accel, cli.max_unpacked)?;
    if args.guest == GuestChoice::Sandbox {
        let agent = project.agent_path();
        runners.add(
            RunnerKind::Vm,
            GuestSandboxRunner::new(sandbox(args.sandbox)?, agent, cli.max_unpacked),
        );
    }
    let resume = resume::command(cli, args);
    let opts = RunOptions {
        target: args.target.target.clone(),
        overrides: args.target.overrides.clone(),
        resume: args.resume,
        fresh: args.fresh,
        update_checksums: args.update_checksums,
        jobs: args.jobs.unwrap_or_else(cpus),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        until: args.until.clone(),
        only: args.only.clone(),
        verify: args.verify,
    };
    let mut shared = cache::for_run(&paths.project, cli.cache.as_deref(), &state)?;
    let mut no_cache = crate::cache::NoCache;
    let mut engine = Engine {
        project: &project,
        state: &state,
        mirror: &mirror,
        runners: &mut runners,
        reporter: reporter.as_mut(),
        cancel,
        cache: match shared.as_mut() {
            Some(shared) => shared,
            None => &mut no_cache,
        },
    };
    let outcome = engine.run(&opts);
    if let Some(shared) = shared.as_mut() {
        cache::report_uploads(shared, reporter.as_mut());
    }
    match outcome {
        Ok(summary) => {
            reporter.info(&format!(
                "target {}: {} built, {} restored from checkpoints, in {:.1}s",
                opts.target,
                summary.built,
                summary.restored,
                summary.elapsed.as_secs_f64()
            ));
            Ok(())
        }
        Err(e) if e.resumable() => {
            let shell = match &e {
                Error::StepFailed { step, .. } | Error::Vm { step, .. } => {
                    Some(resume::shell_command(cli, args, step))
                }
                _ => None,
            };
            Err(Error::Resumable {
                inner: Box::new(e),
                command: resume,
                shell,
            })
        }
        Err(e) => Err(e),
    }
}

fn plan(paths: &Paths, args: &PlanArgs) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let state = StateDir::open(paths.state.clone())?;
    let plan = Plan::load(
        &project,
        &state,
        &args.target.target,
        &args.target.overrides,
    )?;
    let mut rows = plan.rows();
    let store = state.store();
    for row in rows.iter_mut().filter(|r| r.state == StepState::Done) {
        row.built_in = built_in_dir(&store.dir(&row.key));
    }
    if args.json {
        let doc = serde_json::json!({
            "target": plan.chain.target.name,
            "config": plan.chain.target.config,
            "steps": rows,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("plan serializes")
        );
        return Ok(());
    }
    println!("target {} ({} steps)", plan.chain.target.name, rows.len());
    let columns = table::Columns::of(&rows);
    let mut stage = None;
    let mut hop: Option<&str> = None;
    for row in &rows {
        if stage != Some(&row.stage) {
            stage = Some(&row.stage);
            let kernel = match (&row.kernel, hop.take()) {
                (Some(kernel), Some(kexec)) => format!(", kernel {kernel} after {kexec}"),
                (Some(kernel), None) => format!(", kernel {kernel}"),
                (None, _) => String::new(),
            };
            println!("stage {} (runner {}{kernel})", row.stage, row.runner);
        }
        let why = match row.note {
            Some(note) => format!(" ({note})"),
            None => row.state.detail(),
        };
        let jump = match &row.kexec {
            Some(kernel) => {
                hop = Some(&row.id);
                format!("  (kexec into {kernel})")
            }
            None => String::new(),
        };
        let built = (row.built_in.map(|m| format!(" (in {m})"))).unwrap_or_default();
        println!(
            "  {}  {}{built}{why}{jump}",
            columns.cells(row),
            table::state_label(&row.state)
        );
    }
    Ok(())
}
