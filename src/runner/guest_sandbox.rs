//! Sandbox mode for guest stages (`run --guest sandbox`): a step of a `vm`
//! stage runs in the host sandbox instead of a qemu guest, at native speed.
//!
//! It sees what its guest would: `/` holds every earlier output (what the
//! base disk is made from, plus what the agent copied into the root after
//! each earlier guest step), linked like a host step's sysroot and mounted
//! read-only, with the agent at `/stagebuild/agent`; nothing of the host's
//! `/usr`. The step's job is the one qemu mode ships to the guest (its
//! prepared build directory with `.stagebuild/step.sh` and `.stagebuild/env`),
//! mounted at `/build`, and the guest's own busybox shell runs it as the
//! agent does: the same environment, working directory, umask and `OUT`
//! (`/stagebuild/out`). A stage whose kernel is 32-bit runs under the 32-bit
//! personality, so `uname -m` says `i686` as in its guest.
//!
//! What it gives up: the stage's own kernel (the host's runs the programs,
//! and `uname -r` names it), the kernel hop itself (a kexec step loads
//! nothing; its output is empty, as in the guest), the guest's devices, and
//! a writable root. See docs/design.md, "Guest stages in the sandbox".

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::personality::Persona;

use super::builddir::BuildDir;
use super::group::{self, Ended};
use super::guest::{GuestMode, KERNEL, earlier_file, install_copy, own_dirs, root_trees};
use super::guest_job::{self, GUEST_PATH};
use super::job::{Runner, StepJob};
use super::machine::Machine;
use super::shell;
use super::steplog::{log_tail, open_log};
use crate::cancel::Cancel;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fresh_dir, link_tree, remove_tree};
use crate::runner::interrupt::interrupted_or;
use crate::sandbox::{Mount, Sandbox, SandboxSpec};

/// What the agent does before the step's script (vm/agent): read the
/// environment the host wrote, enter the working directory, set the umask.
/// Its own environment at that point is the kernel's for init (`HOME`,
/// `TERM`) and the `PATH` it exports; busybox counts shells in `SHLVL`, and
/// the agent is the second of the boot (the initramfs's `init` runs it).
const AGENT_STEP: &str = "SHLVL=2; . /build/.stagebuild/env; cd \"$STAGEBUILD_WORKDIR\" || exit 125; \
                          umask 022; sh -e /build/.stagebuild/step.sh 2>&1";

/// The same, with an interactive shell in the step's script's place.
const AGENT_SHELL: &str = "SHLVL=2; . /build/.stagebuild/env; cd \"$STAGEBUILD_WORKDIR\" || exit 125; \
                           umask 022; exec sh -i";

/// Top-level directories of the guest's root that are mounted afresh rather
/// than taken from the earlier outputs, as the agent mounts them in the guest.
const MOUNTED: [&str; 4] = ["proc", "dev", "tmp", "build"];

pub struct GuestSandboxRunner {
    sandbox: Box<dyn Sandbox>,
    /// The guest agent, at `/stagebuild/agent` as on a base disk.
    agent: PathBuf,
    /// The most one source may unpack to.
    max_unpacked: u64,
}

impl Runner for GuestSandboxRunner {
    fn name(&self) -> String {
        format!(
            "vm, in the {} sandbox on the host's kernel",
            self.sandbox.name()
        )
    }

    fn run(&mut self, job: &StepJob, cancel: &Cancel) -> Result<()> {
        let chain_step = &job.planned.chain_step;
        let settings = chain_step.vm.clone().expect("a vm stage has vm settings");
        let id = job.planned.id();
        if std::env::consts::ARCH != "x86_64" {
            return Err(Error::Usage(format!(
                "step {id}: --guest sandbox runs the guest's x86 programs on this machine's \
                 CPU, and this is {}; use --guest qemu",
                std::env::consts::ARCH
            )));
        }
        fresh_dir(&job.work)?;
        for dir in ["extras", "out", "tmp"] {
            fs::create_dir(job.work.join(dir))
                .io_context(|| format!("creating {}", job.work.join(dir).display()))?;
        }
        let mut log = open_log(&job.log)?;
        let mut note = |text: String| {
            writeln!(log, "{text}").io_context(|| format!("writing {}", job.log.display()))
        };

        // A hop boots nothing here: the stages after it run under the
        // personality of the kernel it would have loaded. In the guest its
        // output is empty too (the new kernel's agent sends an empty tar).
        if let Some(hop) = &chain_step.step.definition.kexec {
            let kernel = earlier_file(job, &hop.kernel)?;
            if let Some(initrd) = &hop.initrd {
                earlier_file(job, initrd)?;
            }
            let machine = Machine::of_kernel(&kernel)?;
            note(format!(
                "# stagebuild step {id}: a kernel hop in sandbox mode\n# key {key}\n\
                 # no kernel is loaded; {kernel} is an {machine} kernel, so the stages after \
                 this step run as {machine}, on the host's kernel\n# output: none, as in the guest",
                key = job.planned.key,
                kernel = hop.kernel,
                machine = machine.name()
            ))?;
            return record_machine(job, machine);
        }

        // The files qemu would boot must be there, though nothing boots them.
        let machine = Machine::of_kernel(&earlier_file(job, &settings.kernel)?)?;
        if let Some(initrd) = &settings.initrd {
            earlier_file(job, initrd)?;
        }
        let tools = crate::buildtree::Tools {
            sandbox: self.sandbox.as_ref(),
            max_unpacked: self.max_unpacked,
            cancel,
        };
        // An audit may list the build directory's entries in another order,
        // as for a host step.
        let dir_order = job.variation.as_ref().and_then(|v| v.dir_order);
        let (mut build_dir, build_note) = BuildDir::create(&job.work, dir_order, &job.planned.key)?;
        guest_job::prepare(job, &tools, GuestMode::Sandbox)
            .map_err(|e| interrupted_or(cancel, id, e))?;
        let build = build_dir.show()?;
        let root = make_root(&job.work, &root_trees(&job.earlier), &self.agent)?;
        let spec = spec(job, &root, &build)?;
        let argv = self.sandbox.command(&spec);
        note(format!(
            "# stagebuild step {id} in sandbox mode ({}), as its guest would run it: {}\n\
             # key {}\n{}# {}",
            self.sandbox.name(),
            machine.name(),
            job.planned.key,
            build_note.map_or_else(String::new, |note| format!("# {note}\n")),
            shell::words(&argv)
        ))?;
        let timeout = chain_step
            .step
            .definition
            .timeout
            .unwrap_or(settings.step_timeout);
        let ended = group::run(
            &argv,
            &log,
            cancel,
            Some(machine.persona()),
            Some(Duration::from_secs(timeout)),
        )?;
        match ended {
            Ended::Exited(status) if status.success() => {}
            Ended::Exited(status) => return Err(group::step_failed(id, status, &job.log)),
            Ended::Interrupted => {
                let _ = writeln!(log, "# stagebuild: interrupted");
                return Err(Error::Interrupted {
                    step: id.to_string(),
                });
            }
            Ended::TimedOut => {
                let _ = writeln!(log, "# stagebuild: the step ran past its timeout");
                return Err(Error::StepFailed {
                    step: id.to_string(),
                    status: format!("ran past its timeout of {timeout}s"),
                    tail: log_tail(&job.log, 30),
                    log: job.log.clone(),
                });
            }
        }
        record_machine(job, machine)?;
        remove_tree(&root)?;
        build_dir.remove()
    }
}

impl GuestSandboxRunner {
    /// The sandbox the step would run in, over `job.work` made afresh, with
    /// an interactive shell (prompt `prompt`) where the agent runs the
    /// step's script: the same root, environment, working directory and
    /// umask. Returns the host command and the personality to run it under.
    pub fn shell_command(&self, job: &StepJob, prompt: &str) -> Result<(Vec<String>, Persona)> {
        let settings = (job.planned.chain_step.vm.clone()).expect("a vm stage has vm settings");
        fresh_dir(&job.work)?;
        for dir in ["extras", "build", "out", "tmp"] {
            fs::create_dir(job.work.join(dir))
                .io_context(|| format!("creating {}", job.work.join(dir).display()))?;
        }
        let machine = Machine::of_kernel(&earlier_file(job, &settings.kernel)?)?;
        let tools = crate::buildtree::Tools {
            sandbox: self.sandbox.as_ref(),
            max_unpacked: self.max_unpacked,
            cancel: &Cancel::default(),
        };
        let build = guest_job::prepare(job, &tools, GuestMode::Sandbox)?;
        let root = make_root(&job.work, &root_trees(&job.earlier), &self.agent)?;
        let mut spec = spec(job, &root, &build)?;
        spec.argv = vec!["/bin/sh".into(), "-c".into(), AGENT_SHELL.into()];
        spec.env.insert("PS1".into(), prompt.into());
        Ok((self.sandbox.command(&spec), machine.persona()))
    }

    pub fn new(sandbox: Box<dyn Sandbox>, agent: PathBuf, max_unpacked: u64) -> GuestSandboxRunner {
        GuestSandboxRunner {
            sandbox,
            agent,
            max_unpacked,
        }
    }
}

/// `work/root`: the guest's root, linked from `trees` in order, with the
/// directories and agent a base disk has; and `work/tmp` with the mode of
/// the guest's `/tmp`.
fn make_root(work: &Path, trees: &[PathBuf], agent_file: &Path) -> Result<PathBuf> {
    let root = work.join("root");
    fresh_dir(&root)?;
    for tree in trees {
        link_tree(tree, &root)?;
    }
    // What mke2fs and basedisk.rs add, and the agent makes at boot.
    own_dirs(
        &root,
        &[
            "proc",
            "sys",
            "dev",
            "tmp",
            "build",
            "lost+found",
            "stagebuild",
            "stagebuild/out",
        ],
    )?;
    install_copy(agent_file, &root.join("stagebuild/agent"), 0o755)?;
    // The modes the guest shows: mke2fs's lost+found, sysfs's root,
    // the agent's tmpfs on /tmp.
    for (path, mode) in [
        (root.join("lost+found"), 0o700),
        (root.join("sys"), 0o555),
        (work.join("tmp"), 0o1777),
    ] {
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .io_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(root)
}

/// The sandbox: each top-level entry of `root` read-only at `/` (the
/// sandbox's own root is an empty tmpfs made read-only, so nothing else is
/// there), then what the agent mounts or makes writable. `/tmp` is the
/// step's own directory, with the mode of the guest's tmpfs. An audit's
/// build path binds the build directory there too (the agent's commands
/// read `/build/.stagebuild`), and its hostname names the sandbox's host.
fn spec(job: &StepJob, root: &Path, build: &Path) -> Result<SandboxSpec> {
    let variation = job.variation.clone().unwrap_or_default();
    let mut names: Vec<String> = fs::read_dir(root)
        .io_context(|| format!("reading {}", root.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .io_context(|| format!("reading {}", root.display()))?;
    names.sort();
    let mut mounts = Vec::new();
    for name in names.iter().filter(|n| !MOUNTED.contains(&n.as_str())) {
        let src = root.join(name);
        let dst = Path::new("/").join(name);
        match fs::read_link(&src) {
            Ok(target) => mounts.push(Mount::Symlink { target, link: dst }),
            Err(_) => mounts.push(Mount::RoBind { src, dst }),
        }
    }
    mounts.extend([
        Mount::Proc {
            dst: "/proc".into(),
        },
        Mount::Dev { dst: "/dev".into() },
        Mount::Bind {
            src: job.work.join("tmp"),
            dst: "/tmp".into(),
        },
        Mount::Bind {
            src: build.to_path_buf(),
            dst: "/build".into(),
        },
        Mount::Bind {
            src: job.out(),
            dst: "/stagebuild/out".into(),
        },
    ]);
    if let Some(varied) = &variation.build_root {
        mounts.push(Mount::Bind {
            src: build.to_path_buf(),
            dst: varied.into(),
        });
    }
    Ok(SandboxSpec {
        mounts,
        env: [("HOME", "/"), ("TERM", "linux"), ("PATH", GUEST_PATH)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: "/".into(),
        // The kernel's default: the agent sets no hostname.
        hostname: variation.hostname.unwrap_or_else(|| "(none)".into()),
        umask: 0o022,
        argv: vec!["/bin/sh".into(), "-c".into(), AGENT_STEP.into()],
    })
}

/// Records what `uname` said to the step, as a qemu step records the kernel
/// its agent announced: the machine, and the release of the host's kernel.
fn record_machine(job: &StepJob, machine: Machine) -> Result<()> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .io_context(|| "reading the host kernel's release")?;
    fs::write(
        job.extras().join(KERNEL),
        format!("{} {}\n", machine.name(), release.trim()),
    )
    .io_context(|| "recording the step's machine")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An earlier output holding the root's fixed names as links or files
    /// makes nothing outside the root and writes into no checkpoint.
    #[test]
    fn the_root_replaces_what_an_earlier_output_put_in_its_fixed_places() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().unwrap();
        let path = |p: &str| scratch.path().join(p);
        let outside = path("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o750)).unwrap();
        let agent = path("agent");
        fs::write(&agent, "#!/bin/sh\n").unwrap();

        // A checkpoint with a file where the agent goes.
        let with_agent = path("tree-agent");
        fs::create_dir_all(with_agent.join("stagebuild")).unwrap();
        fs::write(with_agent.join("stagebuild/agent"), "an output\n").unwrap();
        // One with links to outside where the root has directories.
        let with_links = path("tree-links");
        fs::create_dir_all(&with_links).unwrap();
        for name in ["stagebuild", "sys", "lost+found"] {
            std::os::unix::fs::symlink(&outside, with_links.join(name)).unwrap();
        }
        for trees in [[with_agent.clone()], [with_links]] {
            let work = path("work");
            fresh_dir(&work.join("tmp")).unwrap();
            let root = make_root(&work, &trees, &agent).unwrap();
            assert_eq!(
                fs::read_to_string(root.join("stagebuild/agent")).unwrap(),
                "#!/bin/sh\n"
            );
            for dir in ["stagebuild/out", "sys", "lost+found"] {
                assert!(
                    fs::symlink_metadata(root.join(dir)).unwrap().is_dir(),
                    "{dir}"
                );
            }
        }
        assert_eq!(
            fs::read_to_string(with_agent.join("stagebuild/agent")).unwrap(),
            "an output\n"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        let mode = fs::metadata(&outside).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o750);
    }
}
