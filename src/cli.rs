//! The command line, as clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::color::ColorChoice;
pub use crate::schema::SchemaKind;

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
    /// Colour in progress, reports and errors. auto: on a terminal, unless
    /// NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// A shared checkpoint cache: s3://BUCKET/PREFIX, https://HOST/PATH to pull from a
    /// read-only mirror, or off [else $STAGEBUILD_CACHE, else url: in PROJECT/cache.yaml].
    #[arg(long, global = true, value_name = "URL")]
    pub cache: Option<String>,
    /// The most one source may unpack to (its uncompressed tar): 8G, 500M…
    // 8G is about six times the largest source the demo unpacks (Linux's tar).
    #[arg(long, global = true, env = "STAGEBUILD_MAX_UNPACKED", value_name = "SIZE",
          default_value = "8G", value_parser = crate::archive::parse_size)]
    pub max_unpacked: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a target, step by step, checkpointing after each.
    Run(RunArgs),
    /// Show each step of a target, its cache key and whether it is done, to build, or invalidated (and why).
    Plan(PlanArgs),
    /// Rebuild each step of a completed run in a varied environment and compare its output.
    Audit(AuditArgs),
    /// Show what the state directory holds and whether a run is using it.
    Status(StatusArgs),
    /// Show each step's build times across runs, as a table or JSON.
    Report(ReportArgs),
    /// Fill and inspect the source mirror.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Edit sources.lock.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Write a new project with an example step that builds: `init`, then `plan`, then `run`.
    Init {
        /// Where to write it [default: --project]; it must not hold a project yet.
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script: `stagebuild completions bash > /etc/bash_completion.d/stagebuild`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `stagebuild man | man -l -`; or write one per subcommand.
    Man {
        /// Write stagebuild.1 and a page for each subcommand into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of step or target files, for a YAML language server.
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// Share checkpoints through an object store: push, pull, ls, verify, gc.
    #[command(subcommand)]
    Cache(crate::cache::args::CacheCommand),
    /// Write the chain as a book: static HTML, and its Markdown in mdBook's layout.
    Book(BookArgs),
    /// Tell one step's story in the terminal: its page of the book.
    Explain(ExplainArgs),
    /// Open an interactive shell in a step's environment: a failed host
    /// step's sandbox as the failure left it, or a guest booted from the last
    /// good checkpoint. Leaving it changes no checkpoint.
    Shell(ShellArgs),
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
    #[arg(long, short, value_parser = target_name)]
    pub target: String,
    /// Override a config variable of the target: --set arch=i686.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = crate::assignment::parse)]
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
    /// Stop after this step (by its id in the target).
    #[arg(long, value_name = "STEP", conflicts_with = "only")]
    pub until: Option<String>,
    /// Build only this step, against the checkpoints before it (each must
    /// have one); its checkpoint is replaced only if that invalidates no
    /// later step, or the run says which it invalidates.
    #[arg(long, value_name = "STEP", conflicts_with_all = ["fresh", "update_checksums"])]
    pub only: Option<String>,
    /// Re-hash every file of each checkpoint restored. Without it, a file is
    /// hashed only if its inode, size or modification time changed since the
    /// checkpoint was committed (any write moves the time), so a no-op rerun
    /// reads metadata, not gigabytes; --verify also finds damage no write
    /// made (a failing disk, or a time set back on purpose).
    #[arg(long)]
    pub verify: bool,
    /// Record every step's output manifest in steps/targets/TARGET.outputs (instead of checking against it).
    #[arg(long)]
    pub update_checksums: bool,
    /// Parallel jobs inside each step (JOBS) [default: the number of CPUs].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The sandbox for host steps.
    #[arg(long, value_enum, default_value_t = SandboxChoice::Auto)]
    pub sandbox: SandboxChoice,
    /// How VM stages run their guests: tcg (software, always works) or auto
    /// (KVM if a probe boot shows guests run under it, else tcg).
    #[arg(long, value_enum, default_value_t = AccelChoice::Tcg)]
    pub accel: AccelChoice,
    /// Use no network: sources come from the mirror, or from the --from
    /// directories, and a missing one is an error that says how to import it.
    #[arg(long)]
    pub offline: bool,
    /// A directory to import missing sources from (matched by sha256) before the run.
    #[arg(long = "from", value_name = "DIR")]
    pub from: Vec<PathBuf>,
    /// Where the steps of vm stages run: qemu (a guest booted per step on the
    /// stage's kernel) or sandbox (the host sandbox on the same root files,
    /// under the host's kernel: native speed, but none of the chain's own
    /// kernels, no real kexec, no guest devices). Both give the same outputs
    /// and checkpoints, so a resume may switch.
    #[arg(long, value_enum, default_value_t = GuestChoice::Qemu)]
    pub guest: GuestChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestChoice {
    Qemu,
    Sandbox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    Tcg,
    Auto,
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
pub struct AuditArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The sandbox for host steps.
    #[arg(long, value_enum, default_value_t = SandboxChoice::Auto)]
    pub sandbox: SandboxChoice,
    /// How to change the order directories list their entries in.
    #[arg(long, value_enum, default_value_t = DirOrderChoice::Auto)]
    pub dir_order: DirOrderChoice,
    /// Where guest steps (of vm stages) are rebuilt: qemu (a guest booted on
    /// the previous step's checkpoint disk) or sandbox (the host sandbox on
    /// the same root files; fast, but the clock is not varied).
    #[arg(long, value_enum, default_value_t = GuestChoice::Qemu)]
    pub guest: GuestChoice,
    /// Rebuild each guest step in the other mode than the one that built its
    /// checkpoint (qemu-built in the sandbox, sandbox-built in qemu).
    #[arg(long, conflicts_with = "guest")]
    pub compare_modes: bool,
    /// Rebuild only these steps (repeat, or separate with commas); the
    /// others are reported as not audited.
    #[arg(long, value_name = "STEP", value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirOrderChoice {
    /// hash-seed where it works, else disorderfs.
    Auto,
    /// Build on a fresh ext4 with its own hash seed (native speed; needs
    /// root and loop devices).
    HashSeed,
    /// Build through disorderfs, which shuffles every listing (no root
    /// needed; slower).
    Disorderfs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
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
    Fetch(FetchArgs),
    /// Re-hash every file; report missing, corrupt and unreferenced files.
    Verify {
        /// Only the sources of this target.
        #[arg(long, short, value_parser = target_name)]
        target: Option<String>,
        #[arg(long)]
        json: bool,
        /// Files hashed at once [default: the number of CPUs].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Adopt every file in DIR whose sha256 matches a lock entry, whatever its name.
    Import { dir: PathBuf },
    /// Write the mirror's files (all, or a target's) to one tar with a manifest, for an air gap.
    Pack {
        out: PathBuf,
        #[arg(long, short, value_parser = target_name)]
        target: Option<String>,
    },
    /// Verify and adopt every file of a pack made by `mirror pack`.
    Unpack { input: PathBuf },
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Only the sources of this target.
    #[arg(long, short)]
    pub target: Option<String>,
    /// Downloads at once.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Another mirror to try after a file's own URLs: a directory or a URL base.
    #[arg(long = "from", value_name = "DIR|URL")]
    pub from: Vec<String>,
    /// Seconds a transfer may make no progress before it is retried.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Tries per URL for transient failures (connection errors, stalls, 5xx).
    #[arg(long, default_value_t = 4)]
    pub tries: u32,
    /// Milliseconds before the first retry; each retry waits twice as long.
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
    /// Use no network: only the --from directories; a URL or apt or git source is not tried.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Record a completed run's output manifests in steps/targets/TARGET.outputs.
    Outputs {
        #[arg(long, short, value_parser = target_name)]
        target: String,
    },
    /// Pin a file: compute its sha256 and size and add it to sources.lock (and the mirror).
    Add {
        /// A URL to download, or a local file; with --apt, the file of the
        /// source package to pin [default: its orig tarball].
        #[arg(required_unless_present = "apt")]
        source: Option<String>,
        /// Fetch through apt: `apt-get source --download-only PKG=VERSION`,
        /// and record that as the entry's apt source.
        #[arg(long, value_name = "PKG=VERSION")]
        apt: Option<String>,
        /// The entry's name [default: the file name].
        #[arg(long)]
        name: Option<String>,
        /// Where a local file (or an apt one) is published upstream; a URL source is its own.
        #[arg(long)]
        url: Option<String>,
        /// Allow changing the checksum of an existing entry.
        #[arg(long)]
        update: bool,
    },
}

#[derive(Debug, Args)]
pub struct BookArgs {
    /// The target, a file under steps/targets/.
    #[arg(long, short, required_unless_present = "check")]
    pub target: Option<String>,
    /// Override a config variable of the target: --set arch=i686.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = crate::assignment::parse)]
    pub overrides: Vec<(String, String)>,
    /// Where to write the book [default: STATE/book/TARGET].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write nothing: fail (exit 2) if a step has no description or a patch
    /// no reason, naming file:line.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The step [default: the first without a checkpoint, which is the one
    /// that failed if a run failed].
    pub step: Option<String>,
    /// The sandbox for host steps (and guest steps with --guest sandbox).
    #[arg(long, value_enum, default_value_t = SandboxChoice::Auto)]
    pub sandbox: SandboxChoice,
    /// For a step of a vm stage: a qemu guest on the stage's kernel, its
    /// console on this terminal, or the host sandbox on the same root files.
    #[arg(long, value_enum, default_value_t = GuestChoice::Qemu)]
    pub guest: GuestChoice,
    /// The guest's accelerator: tcg, or auto (KVM when a probe boot works).
    #[arg(long, value_enum, default_value_t = AccelChoice::Tcg)]
    pub accel: AccelChoice,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The step, by its id in the target (`gcc-pass2` for a second pass).
    pub step: String,
    /// The target [default: the project's only target].
    #[arg(long, short)]
    pub target: Option<String>,
    /// Override a config variable of the target: --set arch=i686.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = crate::assignment::parse)]
    pub overrides: Vec<(String, String)>,
}

/// A target name becomes a file name in the project and the state
/// directory, so it is a plain name, never a path.
fn target_name(s: &str) -> Result<String, crate::names::Refused> {
    crate::names::identifier(s).map(|()| s.to_string())
}
