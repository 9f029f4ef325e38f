//! The host runner: a step in a namespace sandbox on the build machine, with
//! the host's toolchain read-only, no network, and only its own output and
//! build directory writable.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::builddir::BuildDir;
use super::group::{self, Ended};
use super::job::{Runner, StepJob};
use super::shell;
use super::steplog::open_log;
use crate::buildtree;
use crate::cancel::Cancel;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fresh_dir, link_tree};
use crate::runner::interrupt::interrupted_or;
use crate::sandbox::{Mount, Sandbox, SandboxSpec, host_toolchain_mounts};

/// The fixed search path inside the sandbox: the host's tools, then the
/// stage's own.
pub const SANDBOX_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin:/sysroot/usr/bin:/sysroot/bin";

pub struct HostRunner {
    pub sandbox: Box<dyn Sandbox>,
    /// The most one source may unpack to.
    pub max_unpacked: u64,
}

/// The environment every host step starts from; the step's own `env` is
/// added, and an audit's variation applied last.
pub fn base_env(job: &StepJob) -> BTreeMap<String, String> {
    let chain_step = &job.planned.chain_step;
    let variation = job.variation.clone().unwrap_or_default();
    let build_root = variation.build_root.as_deref().unwrap_or("/build");
    let mut env: BTreeMap<String, String> = [
        ("PATH", SANDBOX_PATH.to_string()),
        ("HOME", build_root.to_string()),
        ("TZ", variation.tz.clone().unwrap_or_else(|| "UTC".into())),
        (
            "LC_ALL",
            variation.locale.clone().unwrap_or_else(|| "C".into()),
        ),
        ("SOURCE_DATE_EPOCH", job.source_date_epoch.to_string()),
        ("SYSROOT", "/sysroot".to_string()),
        ("OUT", "/out".to_string()),
        ("JOBS", variation.jobs.unwrap_or(job.jobs).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(pass) = chain_step.pass {
        env.insert("PASS".into(), pass.to_string());
    }
    env.extend(chain_step.step.definition.env.clone());
    if let Some((lib, offset)) = &variation.faketime {
        env.insert("LD_PRELOAD".into(), lib.display().to_string());
        env.insert("FAKETIME".into(), offset.clone());
        // Shift the clock only: libfaketime would also shift the times stat()
        // reports, so a step copying file times (cpio, tar) would differ
        // because of the audit itself, not because of the build.
        env.insert("NO_FAKE_STAT".into(), "1".into());
        env.insert("DONT_FAKE_MONOTONIC".into(), "1".into());
    }
    env
}

/// A step's work directory, ready for its script.
pub struct Prepared {
    pub build_dir: BuildDir,
    /// What an audit did to the build directory, for the log.
    pub note: Option<String>,
    /// The step's script, `work/step.sh`.
    pub script: PathBuf,
}

/// The file in a host step's work directory naming the key it was prepared
/// for: after a failure the directory is kept, and `stagebuild shell` tells
/// whether it is still of the step's current definition.
pub const WORK_KEY: &str = "key";

impl HostRunner {
    /// Makes `job.work` afresh: the sources unpacked and patched in
    /// `build/`, the stage's earlier outputs linked into `sysroot/`, an empty
    /// `out/` and the script.
    pub fn prepare(&self, job: &StepJob, cancel: &Cancel) -> Result<Prepared> {
        let step = &job.planned.chain_step.step;
        fresh_dir(&job.work)?;
        for dir in ["out", "sysroot"] {
            fs::create_dir(job.work.join(dir))
                .io_context(|| format!("creating {}", job.work.join(dir).display()))?;
        }
        fs::write(job.work.join(WORK_KEY), format!("{}\n", job.planned.key))
            .io_context(|| format!("writing {}", job.work.join(WORK_KEY).display()))?;
        let dir_order = job.variation.as_ref().and_then(|v| v.dir_order);
        let (build_dir, note) = BuildDir::create(&job.work, dir_order, &job.planned.key)?;
        let tools = buildtree::Tools {
            sandbox: self.sandbox.as_ref(),
            max_unpacked: self.max_unpacked,
            cancel,
        };
        buildtree::prepare(step, &job.sources, build_dir.path(), &tools)?;
        for tree in job.stage_trees() {
            link_tree(&tree, &job.work.join("sysroot"))?;
        }
        let script = job.work.join("step.sh");
        fs::write(&script, step.script()).io_context(|| format!("writing {}", script.display()))?;
        Ok(Prepared {
            build_dir,
            note,
            script,
        })
    }

    /// The host command of the step's sandbox over its work directory (as
    /// [`HostRunner::prepare`] made it, or a failure left it), running
    /// `argv` instead of the step's script, with `extra_env` added.
    pub fn command_in_sandbox(
        &self,
        job: &StepJob,
        argv: Vec<String>,
        extra_env: &[(&str, &str)],
    ) -> Vec<String> {
        let mut spec = self.spec(job, &job.work.join("step.sh"), &job.work.join("build"));
        spec.argv = argv;
        spec.env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.sandbox.command(&spec)
    }

    fn spec(&self, job: &StepJob, script: &Path, build: &Path) -> SandboxSpec {
        let step = &job.planned.chain_step.step;
        let variation = job.variation.clone().unwrap_or_default();
        let build_root = variation.build_root.as_deref().unwrap_or("/build");
        let mut mounts = host_toolchain_mounts();
        mounts.extend([
            Mount::Tmpfs { dst: "/tmp".into() },
            Mount::Proc {
                dst: "/proc".into(),
            },
            Mount::Dev { dst: "/dev".into() },
            Mount::RoBind {
                src: job.work.join("sysroot"),
                dst: "/sysroot".into(),
            },
            Mount::Bind {
                src: build.to_path_buf(),
                dst: build_root.into(),
            },
            Mount::Bind {
                src: job.out(),
                dst: "/out".into(),
            },
            Mount::RoBind {
                src: script.to_path_buf(),
                dst: "/stagebuild/step.sh".into(),
            },
        ]);
        SandboxSpec {
            mounts,
            env: base_env(job),
            cwd: match &step.definition.workdir {
                Some(workdir) => Path::new(build_root).join(workdir),
                None => build_root.into(),
            },
            hostname: variation.hostname.unwrap_or_else(|| "stagebuild".into()),
            umask: variation.umask.unwrap_or(0o022),
            argv: vec!["/bin/sh".into(), "-e".into(), "/stagebuild/step.sh".into()],
        }
    }
}

impl Runner for HostRunner {
    fn name(&self) -> String {
        format!("host ({})", self.sandbox.name())
    }

    fn run(&mut self, job: &StepJob, cancel: &Cancel) -> Result<()> {
        let step = &job.planned.chain_step.step;
        let id = job.planned.id();
        let Prepared {
            mut build_dir,
            note: build_note,
            script,
        } = self
            .prepare(job, cancel)
            .map_err(|e| interrupted_or(cancel, id, e))?;
        let build = build_dir.show()?;
        let spec = self.spec(job, &script, &build);
        let argv = self.sandbox.command(&spec);
        let mut log = open_log(&job.log)?;
        writeln!(
            log,
            "# stagebuild step {id} ({} {})\n# key {}\n# sandbox {}\n{}# {}",
            step.definition.name,
            step.definition.version,
            job.planned.key,
            self.sandbox.name(),
            build_note.map_or_else(String::new, |note| format!("# {note}\n")),
            shell::words(&argv)
        )
        .io_context(|| format!("writing {}", job.log.display()))?;
        let status = match group::run(&argv, &log, cancel, None, None)? {
            Ended::Exited(status) => status,
            Ended::Interrupted | Ended::TimedOut => {
                let _ = writeln!(log, "# stagebuild: interrupted");
                return Err(Error::Interrupted {
                    step: id.to_string(),
                });
            }
        };
        if status.success() {
            build_dir.remove()?;
            return Ok(());
        }
        drop(build_dir);
        Err(group::step_failed(id, status, &job.log))
    }
}
