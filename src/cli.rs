//! The command line, as clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stagebuild",
    version,
    about = "Build a system from source in stages, with a checkpoint after every step"
)]
pub struct Cli {
    /// The project directory (holding sources.lock and steps/).
    #[arg(long, global = true, default_value = ".")]
    pub project: PathBuf,
    /// Where checkpoints, logs and records live [default: PROJECT/state].
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    /// Where source files live [default: PROJECT/mirror].
    #[arg(long, global = true)]
    pub mirror: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a target, step by step, checkpointing after each.
    Run(RunArgs),
    /// Show each step of a target, its cache key and whether it is done, to build, or invalidated (and why).
    Plan(PlanArgs),
    /// Show what the state directory holds and whether a run is using it.
    Status(StatusArgs),
    /// Fill and inspect the source mirror.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Internal: run a sandbox spec in fresh namespaces (the fallback when bwrap is missing).
    #[command(hide = true)]
    SandboxExec {
        #[arg(long)]
        spec_json: String,
    },
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The target, a file under steps/targets/.
    #[arg(long, short)]
    pub target: String,
    /// Override a config variable of the target: --set arch=i686.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_assignment)]
    pub overrides: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Continue an earlier run: restore every step whose checkpoint is valid, build the rest.
    #[arg(long, conflicts_with = "fresh")]
    pub resume: bool,
    /// Discard this target's checkpoints and build everything again.
    #[arg(long)]
    pub fresh: bool,
    /// Parallel jobs inside each step (JOBS) [default: the number of CPUs].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The sandbox for host steps.
    #[arg(long, value_enum, default_value_t = SandboxChoice::Auto)]
    pub sandbox: SandboxChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxChoice {
    /// bubblewrap if it is installed, else namespaces.
    Auto,
    Bwrap,
    /// Enter the namespaces directly, without bubblewrap.
    Namespaces,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Fetch the sources a target needs (or the whole lock) into the mirror, verifying each.
    Fetch {
        /// Only the sources of this target.
        #[arg(long, short)]
        target: Option<String>,
    },
    /// Adopt every file in DIR whose sha256 matches a lock entry, whatever its name.
    Import { dir: PathBuf },
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected VAR=VALUE, got {s:?}"))
}
