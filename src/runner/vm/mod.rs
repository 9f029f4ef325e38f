//! The VM runner: each step of a `vm` stage runs in a qemu guest booted for
//! it. The guest's root disk is a qcow2 overlay on the previous step's disk
//! (on a base disk made from the earlier stages' outputs, for the first
//! step), so a step's checkpoint is its output tree plus that overlay, and
//! resuming is booting from the last good overlay. See docs/vm-checkpoints.md
//! for why a cold boot per step rather than live snapshots.
//!
//! The guest agent (`vm/agent`) reads the step from a disk with serial
//! `job`, reports over a virtio-serial port, and writes the step's output as
//! a tar to a disk with serial `out`. QMP tells stagebuild about panics and
//! lets it stop the guest.
//!
//! Its parts: the step's disks ([`disks`], on a [`basedisk`]), the qemu
//! process ([`qemu`]), what the agent says ([`agent`]), what becomes of the
//! guest ([`supervisor`]) and the loop that feeds that and acts on it ([`drive`]).

mod agent;
pub mod basedisk;
mod console;
mod disks;
mod drive;
mod qemu;
mod shell;
mod supervisor;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::basedisk::BaseDisks;
use self::disks::BACKING;
use self::drive::Ended;
pub use self::qemu::Accel;
use self::qemu::{Boot, kvm_boots};
use self::supervisor::{Limits, Supervisor};
use super::guest::{Backing, DISK, GuestMode, KERNEL, backing, built_in, earlier_file};
use super::job::{Earlier, Runner, StepJob};
use super::steplog::{log_tail, open_log};
use crate::cancel::Cancel;
use crate::checkpoint::Checkpoint;
use crate::error::runner::{Misfit, RunnerError};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::fresh_dir;
use crate::project::ChainStep;
use crate::runner::interrupt::interrupted_or;

pub struct VmRunner {
    /// The guest agent, copied into every base disk.
    pub agent: PathBuf,
    pub accel: Accel,
    bases: BaseDisks,
    /// What a probe found, once per run.
    probed: Option<&'static str>,
    /// Where a step's patches are applied, and how much a source may unpack to.
    sandbox: Box<dyn crate::sandbox::Sandbox>,
    max_unpacked: u64,
}

impl VmRunner {
    /// `state_root` is where base disks are kept while a run needs them.
    pub fn new(
        agent: PathBuf,
        accel: Accel,
        state_root: &Path,
        sandbox: Box<dyn crate::sandbox::Sandbox>,
        max_unpacked: u64,
    ) -> VmRunner {
        VmRunner {
            sandbox,
            max_unpacked,
            agent,
            accel,
            bases: BaseDisks::new(state_root),
            probed: None,
        }
    }

    fn accelerator(&mut self, kernel: &Path, work: &Path) -> &'static str {
        if self.accel == Accel::Tcg {
            return "tcg";
        }
        self.probed.get_or_insert_with(|| {
            if kvm_boots(kernel, work) {
                "kvm"
            } else {
                "tcg"
            }
        })
    }
}

impl Runner for VmRunner {
    fn name(&self) -> String {
        "vm (qemu)".to_string()
    }

    /// A step's disk is an overlay: it fits only on the very disk it was
    /// made on, the previous step's (or its own base).
    fn fits(
        &self,
        step: &ChainStep,
        checkpoint: &Checkpoint,
        earlier: &[Earlier],
    ) -> std::result::Result<(), Misfit> {
        // Built in sandbox mode: a tree and no disk, which fits like a host output.
        if built_in(&checkpoint.meta) == Some(GuestMode::Sandbox) {
            return Ok(());
        }
        let recorded = fs::read_to_string(checkpoint.dir.join(BACKING)).map_err(|source| {
            Misfit::NoBackingRecord {
                file: BACKING,
                source,
            }
        })?;
        let recorded = recorded.trim();
        let settings = step.vm.as_ref().expect("a vm stage has vm settings");
        let actual = match backing(earlier, settings) {
            Backing::Overlay(previous) => {
                crate::digest::file_sha256(&previous.dir.join(DISK))
                    .map_err(Misfit::BackingDisk)?
                    .0
            }
            // The base disk is made again from the earlier outputs; it is
            // the same disk if they are the same files.
            Backing::Base(trees) => self
                .bases
                .ensure(Some(recorded), &trees, &self.agent, settings.disk)
                .map_err(|e| Misfit::BaseDisk(Box::new(e)))?,
        };
        if recorded == actual {
            Ok(())
        } else {
            Err(Misfit::Rebuilt)
        }
    }

    fn run_complete(&mut self) -> Result<()> {
        self.bases.clear()
    }

    fn run(&mut self, job: &StepJob, cancel: &Cancel) -> Result<()> {
        let chain_step = &job.planned.chain_step;
        let settings = chain_step.vm.clone().expect("a vm stage has vm settings");
        let id = job.planned.id();
        fresh_dir(&job.work)?;
        for dir in ["extras", "build", "out"] {
            fs::create_dir(job.work.join(dir))
                .io_context(|| format!("creating {}", job.work.join(dir).display()))?;
        }

        let kernel = earlier_file(job, &settings.kernel)?;
        let initrd = settings
            .initrd
            .as_deref()
            .map(|r| earlier_file(job, r))
            .transpose()?;
        let root = disks::make_root(job, &settings, &self.bases, &self.agent)?;
        let job_disk = disks::make_job(job, self.sandbox.as_ref(), self.max_unpacked, cancel)
            .map_err(|e| interrupted_or(cancel, id, e))?;
        let out_disk = disks::make_out(job, settings.disk)?;
        // An audit's rebuild: a disk of its own to build on, and a clock ahead.
        let variation = job.variation.clone().unwrap_or_default();
        let scratch = match variation.build_root {
            Some(_) => Some(disks::make_scratch(job, settings.disk)?),
            None => None,
        };
        let rtc_base = variation.clock_ahead_days.map(|days| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            super::guest_variation::rtc_base(now, days)
        });

        let console = job.log.with_extension("console.log");
        crate::logs::keep_earlier(&console)?;
        let mut log = open_log(&job.log)?;
        let accel = self.accelerator(&kernel, &job.work);
        writeln!(
            log,
            "# stagebuild step {id} in a VM ({accel})\n# key {}\n# kernel {}\n# console {}",
            job.planned.key,
            kernel.display(),
            console.display()
        )
        .io_context(|| format!("writing {}", job.log.display()))?;

        let limits = Limits {
            boot: Duration::from_secs(settings.boot_timeout),
            step: Duration::from_secs(
                chain_step
                    .step
                    .definition
                    .timeout
                    .unwrap_or(settings.step_timeout),
            ),
        };
        let started = Boot {
            step: id,
            settings: &settings,
            accel,
            kernel: &kernel,
            initrd: initrd.as_deref(),
            root: &root.disk,
            job: &job_disk,
            out: &out_disk,
            console: &console,
            work: &job.work,
            interactive: false,
            scratch: scratch.as_deref(),
            rtc_base,
        }
        .start()?;
        let kexec_step = chain_step.step.definition.kexec.is_some();
        let machine = Supervisor::new(limits, kexec_step, Instant::now());
        let ended_in = match drive::supervise(id, &console, machine, started, &mut log, cancel)? {
            Ended::Succeeded(kernel) => kernel,
            Ended::Failed(code) => {
                return Err(Error::StepFailed {
                    step: id.to_string(),
                    status: format!("exit code {code} in the guest"),
                    tail: log_tail(&job.log, 30),
                    log: job.log.clone(),
                });
            }
        };

        // The output tar the agent wrote, checked like any archive.
        let out =
            fs::File::open(&out_disk).io_context(|| format!("opening {}", out_disk.display()))?;
        crate::archive::unpack_tar(std::io::BufReader::new(out), &job.out()).map_err(|source| {
            RunnerError::GuestOutput {
                step: id.to_string(),
                source,
            }
        })?;
        root.detach()?;
        fs::write(job.extras().join(KERNEL), format!("{ended_in}\n"))
            .io_context(|| "recording the guest's kernel")?;
        for scratch in [Some(job_disk), Some(out_disk), scratch]
            .into_iter()
            .flatten()
        {
            let _ = fs::remove_file(scratch);
        }
        fresh_dir(&job.work.join("build"))
    }
}
