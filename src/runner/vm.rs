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

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::basedisk::BaseDisks;
use super::guest::{Backing, GuestMode, backing, built_in};
use super::host::log_tail;
use super::tool::run_tool;
use super::{Cancel, Earlier, Runner, StepJob};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::fresh_dir;
use crate::project::ChainStep;
use crate::qmp::Qmp;
use crate::target::VmSettings;

/// The name the agent looks for among the virtio-serial ports.
const CONTROL_PORT: &str = "org.stagebuild.ctl";
/// The file in a VM step's checkpoint naming the sha256 of its overlay's backing disk.
const BACKING: &str = "backing.sha256";
/// The file in a VM step's checkpoint naming the kernel its guest ended in,
/// as the agent announced it (`uname -m` and `uname -r`).
pub const KERNEL: &str = "kernel";
/// Lines of the guest console shown when something goes wrong.
const CONSOLE_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    /// KVM if a probe boot shows that guests run under it, else TCG.
    Auto,
}

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

/// Whether a kernel starts printing under KVM within a few seconds. On some
/// hosts /dev/kvm opens but guests hang before their first instruction.
fn kvm_boots(kernel: &Path, work: &Path) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let log = work.join("kvm-probe.log");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35",
            "-accel",
            "kvm",
            "-m",
            "256M",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut booted = false;
    while Instant::now() < deadline && !booted {
        booted = fs::read_to_string(&log).is_ok_and(|l| l.contains("Linux version"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(&log);
    booted
}

/// qemu, killed when this is dropped (and, through PDEATHSIG, when
/// stagebuild itself dies).
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    ) -> std::result::Result<(), String> {
        // Built in sandbox mode: a tree and no disk, which fits like a host output.
        if built_in(&checkpoint.meta) == Some(GuestMode::Sandbox) {
            return Ok(());
        }
        let recorded = fs::read_to_string(checkpoint.dir.join(BACKING))
            .map_err(|e| format!("{BACKING}: {e}"))?;
        let recorded = recorded.trim();
        let settings = step.vm.as_ref().expect("a vm stage has vm settings");
        let actual = match backing(earlier, settings) {
            Backing::Overlay(previous) => {
                crate::digest::file_sha256(&previous.dir.join("disk.qcow2"))
                    .map_err(|e| format!("its backing disk: {e}"))?
                    .0
            }
            // The base disk is made again from the earlier outputs; it is
            // the same disk if they are the same files.
            Backing::Base(trees) => self
                .bases
                .ensure(Some(recorded), &trees, &self.agent, settings.disk)
                .map_err(|e| format!("its base disk: {e}"))?,
        };
        if recorded == actual {
            Ok(())
        } else {
            Err("its disk was made on a disk that has since been rebuilt".into())
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

        // The root disk: an overlay on the disk of the previous step in this
        // guest, or on a new base disk made from the earlier outputs.
        let (backing, backing_relative) = match backing(&job.earlier, &settings) {
            Backing::Overlay(e) => {
                let key = e
                    .dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                (e.dir.join("disk.qcow2"), format!("../{key}/disk.qcow2"))
            }
            Backing::Base(trees) => {
                let sha256 = self
                    .bases
                    .ensure(None, &trees, &self.agent, settings.disk)?;
                (
                    self.bases.path(&sha256),
                    BaseDisks::name_from_checkpoint(&sha256),
                )
            }
        };
        // Which disk this overlay sits on, so a restore can tell whether that
        // disk is still the one underneath (see `fits`).
        let (backing_sha256, _) = crate::digest::file_sha256(&backing)
            .io_context(|| format!("reading {}", backing.display()))?;
        fs::write(job.extras().join(BACKING), backing_sha256)
            .io_context(|| "writing the overlay's backing checksum")?;
        // Small clusters: a step changes a few scattered blocks (inodes,
        // bitmaps, directories), and with qcow2's default 64 KiB clusters
        // each of them cost a whole cluster in the checkpoint.
        let disk = job.extras().join("disk.qcow2");
        run_tool(
            Command::new("qemu-img")
                .args([
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-o",
                    "cluster_size=4096",
                    "-F",
                    "qcow2",
                    "-b",
                ])
                .arg(&backing)
                .arg(&disk),
        )?;

        let job_disk = self.make_job_disk(job)?;
        let out_disk = job.work.join("out.raw");
        fs::File::create(&out_disk)
            .and_then(|f| f.set_len(u64::from(settings.disk) << 20))
            .io_context(|| format!("creating {}", out_disk.display()))?;

        let console = job.log.with_extension("console.log");
        crate::logs::keep_earlier(&console)?;
        crate::logs::keep_earlier(&job.log)?;
        let mut log = crate::statefs::create_new(&job.log)
            .io_context(|| format!("creating {}", job.log.display()))?;
        let accel = self.accelerator(&kernel, &job.work);
        writeln!(
            log,
            "# stagebuild step {id} in a VM ({accel})\n# key {}\n# kernel {}\n# console {}",
            job.planned.key,
            kernel.display(),
            console.display()
        )
        .io_context(|| format!("writing {}", job.log.display()))?;

        let guest = Guest {
            id,
            console: console.clone(),
            settings: &settings,
            timeout: Duration::from_secs(
                chain_step
                    .step
                    .definition
                    .timeout
                    .unwrap_or(settings.step_timeout),
            ),
        };
        let qemu = guest.start(
            job,
            accel,
            &kernel,
            initrd.as_deref(),
            &disk,
            &job_disk,
            &out_disk,
        )?;
        let ended = guest.supervise(qemu, &mut log, cancel)?;
        let code = ended.code;
        if code != 0 {
            return Err(Error::StepFailed {
                step: id.to_string(),
                status: format!("exit code {code} in the guest"),
                tail: log_tail(&job.log, 30),
                log: job.log.clone(),
            });
        }

        // The output tar the agent wrote, checked like any archive.
        let out =
            fs::File::open(&out_disk).io_context(|| format!("opening {}", out_disk.display()))?;
        crate::archive::unpack_tar(std::io::BufReader::new(out), &job.out())
            .map_err(|e| Error::Other(format!("step {id}: the guest's output: {e}")))?;
        // Backing files are named relative to the overlay, so the state
        // directory can move.
        run_tool(
            Command::new("qemu-img")
                .args(["rebase", "-u", "-F", "qcow2", "-b", &backing_relative])
                .arg(&disk),
        )?;
        if chain_step.step.definition.kexec.is_some() && !ended.hopped {
            return Err(guest.fail("the kexec step ended without jumping to the new kernel"));
        }
        fs::write(job.extras().join(KERNEL), format!("{}\n", ended.kernel))
            .io_context(|| "recording the guest's kernel")?;
        for scratch in [job_disk, out_disk] {
            let _ = fs::remove_file(scratch);
        }
        fresh_dir(&job.work.join("build"))
    }
}

impl VmRunner {
    /// The step as a tar: its prepared build directory, with the script and
    /// environment the agent runs under `.stagebuild/`.
    fn make_job_disk(&self, job: &StepJob) -> Result<PathBuf> {
        let tools = crate::buildtree::Tools {
            sandbox: self.sandbox.as_ref(),
            max_unpacked: self.max_unpacked,
        };
        let build = super::guest_job::prepare(job, &tools)?;
        let tar_path = job.work.join("job.tar");
        let file = fs::File::create(&tar_path)
            .io_context(|| format!("creating {}", tar_path.display()))?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", &build)
            .and_then(|()| builder.into_inner()?.flush())
            .io_context(|| format!("writing {}", tar_path.display()))?;
        Ok(tar_path)
    }
}

/// The kernel command line: the console stagebuild reads, then the target's.
/// Not `quiet`: the console log is a file, and a panic's backtrace is what
/// its last lines are shown for.
pub fn command_line(append: &str) -> String {
    format!("console=ttyS0 panic=-1 {append}")
        .trim_end()
        .to_string()
}

/// A step's file from an earlier step's output: `STEP:PATH`.
pub(super) fn earlier_file(job: &StepJob, reference: &str) -> Result<PathBuf> {
    let (step, path) = VmSettings::file_ref(reference).expect("checked when the target was loaded");
    let earlier: &Earlier = job.earlier.iter().find(|e| e.id == step).ok_or_else(|| {
        Error::Other(format!(
            "{reference}: step {step} has not run before this stage"
        ))
    })?;
    // Handed to qemu and copied into the job: a link in the output that
    // leads out of it must not carry a host file along.
    crate::beneath::Root::open(&earlier.tree())
        .and_then(|tree| tree.real_file(Path::new(path)))
        .map_err(|e| match crate::beneath::refusal(&e) {
            Some(_) => Error::Other(format!(
                "{reference}: {path} leads outside {step}'s output through a symlink"
            )),
            None => Error::Other(format!("{reference}: {step}'s output has no {path}")),
        })
}

struct Guest<'a> {
    id: &'a str,
    console: PathBuf,
    settings: &'a VmSettings,
    timeout: Duration,
}

impl Guest<'_> {
    fn fail(&self, problem: impl Into<String>) -> Error {
        Error::Vm {
            step: self.id.to_string(),
            problem: problem.into(),
            tail: log_tail(&self.console, CONSOLE_LINES),
            console: self.console.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        job: &StepJob,
        accel: &str,
        kernel: &Path,
        initrd: Option<&Path>,
        disk: &Path,
        job_disk: &Path,
        out_disk: &Path,
    ) -> Result<(Qemu, Qmp, UnixStream)> {
        let qmp_socket = job.work.join("qmp.sock");
        let ctl_socket = job.work.join("ctl.sock");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            accel,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot"])
        .args(["-m", &format!("{}M", self.settings.memory)])
        .arg("-kernel")
        .arg(kernel)
        .arg("-append")
        .arg(command_line(&self.settings.append))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
        .arg("-chardev")
        .arg(format!("file,id=console,path={}", self.console.display()))
        .args(["-serial", "chardev:console"])
        .args(["-device", "virtio-serial-pci,id=vser0"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=ctl,path={},server=on,wait=off",
            ctl_socket.display()
        ))
        .args([
            "-device",
            &format!("virtserialport,bus=vser0.0,chardev=ctl,name={CONTROL_PORT}"),
        ])
        .args(["-device", "pvpanic-pci", "-action", "panic=shutdown"]);
        if let Some(initrd) = initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        // The root disk passes the guest's discards through (it mounts ext4
        // with -o discard), so a build tree deleted in the guest does not
        // stay allocated in the step's overlay.
        for (node, file, format, serial, read_only) in [
            ("root", disk, "qcow2", "root", false),
            ("job", job_disk, "raw", "job", true),
            ("out", out_disk, "raw", "out", false),
        ] {
            let access = if read_only {
                "read-only=on"
            } else {
                "read-only=off,discard=unmap"
            };
            cmd.arg("-blockdev").arg(format!(
                "driver=file,filename={},node-name={node}-file,{access}",
                file.display(),
            ));
            cmd.arg("-blockdev").arg(format!(
                "driver={format},file={node}-file,node-name={node},{access}"
            ));
            cmd.args([
                "-device",
                &format!("virtio-blk-pci,drive={node},serial={serial}"),
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .io_context(|| "starting qemu-system-x86_64 (Debian: qemu-system-x86)")?;
        let mut qemu = Qemu(child);
        let qmp = match Qmp::connect(&qmp_socket, Duration::from_secs(30)) {
            Ok(qmp) => qmp,
            Err(e) => {
                let stderr = qemu_stderr(&mut qemu);
                return Err(self.fail(format!("qemu did not start: {e}{stderr}")));
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ctl = loop {
            match UnixStream::connect(&ctl_socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(self.fail(format!("cannot reach the guest's control channel: {e}")));
                }
            }
        };
        Ok((qemu, qmp, ctl))
    }

    /// Follows the guest until it ends: returns how the step ended, or an
    /// error for a boot timeout, a step timeout, a panic or a qemu crash.
    fn supervise(
        &self,
        (mut qemu, mut qmp, ctl): (Qemu, Qmp, UnixStream),
        log: &mut fs::File,
        cancel: &Cancel,
    ) -> Result<Ended> {
        ctl.set_read_timeout(Some(Duration::from_millis(100)))
            .io_context(|| "configuring the control channel")?;
        let mut reader = BufReader::new(ctl);
        let mut line = String::new();
        let mut started = Instant::now();
        let mut hello: Option<Instant> = None;
        let mut kernel = String::new();
        let mut hopped = false;
        let mut output_written: Option<Instant> = None;
        let mut code: Option<i32> = None;
        let mut done = false;
        let mut panicked = false;
        let boot_timeout = Duration::from_secs(self.settings.boot_timeout);
        loop {
            match reader.read_line(&mut line) {
                // The guest has the port closed (booting, or done).
                Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                Ok(_) if line.ends_with('\n') => {
                    let message = std::mem::take(&mut line);
                    let message = message.trim_end_matches('\n');
                    let (word, rest) = message.split_once(' ').unwrap_or((message, ""));
                    match word {
                        "HELLO" => {
                            hello = Some(Instant::now());
                            kernel = rest.to_string();
                            let _ = writeln!(
                                log,
                                "# guest up after {:.1}s: {rest}",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        // QEMU reports nothing for a kexec: the new kernel
                        // is noticed by its agent's HELLO, under the boot
                        // timeout again.
                        "KEXEC" => {
                            hopped = true;
                            hello = None;
                            started = Instant::now();
                            let _ = writeln!(log, "# kexec: the guest jumps to the loaded kernel");
                        }
                        "LOG" => {
                            let _ = writeln!(log, "{rest}");
                        }
                        "EXIT" => code = rest.trim().parse().ok(),
                        "DONE" => {
                            done = true;
                            output_written = Some(Instant::now());
                        }
                        _ => {
                            let _ = writeln!(log, "# unexpected from the agent: {message}");
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {}
            }
            while let Some(event) = qmp
                .next_event(Duration::ZERO)
                .map_err(|e| self.fail(e.to_string()))?
            {
                if event.name == "GUEST_PANICKED" {
                    panicked = true;
                }
            }
            if let Some(status) = qemu.0.try_wait().io_context(|| "waiting for qemu")? {
                if let Some(written) = output_written {
                    let _ = writeln!(
                        log,
                        "# guest shut down {:.3}s after its output was written",
                        written.elapsed().as_secs_f64()
                    );
                }
                let stderr = qemu_stderr(&mut qemu);
                let console = fs::read_to_string(&self.console).unwrap_or_default();
                if panicked || console.contains("Kernel panic") {
                    return Err(self.fail("the guest kernel panicked"));
                }
                let ended = |code| Ended {
                    code,
                    kernel: kernel.clone(),
                    hopped,
                };
                return match (code, done) {
                    (Some(0), true) => Ok(ended(0)),
                    (Some(code), _) if code != 0 => Ok(ended(code)),
                    _ if hello.is_none() => Err(self.fail(format!(
                        "the guest stopped before its agent started ({status}){stderr}"
                    ))),
                    _ => Err(self.fail(format!(
                        "qemu ended before the step finished ({status}){stderr}"
                    ))),
                };
            }
            if cancel.is_set() {
                let _ = qmp.execute("quit", None);
                let _ = writeln!(log, "# stagebuild: interrupted");
                return Err(Error::Interrupted {
                    step: self.id.to_string(),
                });
            }
            match hello {
                None if started.elapsed() > boot_timeout => {
                    let what = if hopped {
                        "the kernel loaded by kexec did not start its agent"
                    } else {
                        "the guest did not start its agent"
                    };
                    return Err(self.fail(format!(
                        "{what} within {}s (boot timeout)",
                        boot_timeout.as_secs()
                    )));
                }
                Some(up) if code.is_none() && up.elapsed() > self.timeout => {
                    let _ = writeln!(log, "# stagebuild: the step ran past its timeout");
                    return Err(self.fail(format!(
                        "the step ran past its timeout of {}s",
                        self.timeout.as_secs()
                    )));
                }
                // After EXIT the agent writes the output and syncs; that is
                // bounded by the boot timeout.
                Some(up) if code.is_some() && up.elapsed() > self.timeout + boot_timeout => {
                    return Err(self.fail("the guest did not shut down after the step"));
                }
                _ => {}
            }
        }
    }
}

/// How a guest's step ended.
struct Ended {
    code: i32,
    /// The kernel the agent last announced: `uname -m` and `uname -r`.
    kernel: String,
    /// Whether the guest jumped to another kernel with kexec.
    hopped: bool,
}

/// What qemu said on stderr, if anything, as a suffix for a message.
fn qemu_stderr(qemu: &mut Qemu) -> String {
    let _ = qemu.0.kill();
    let mut text = String::new();
    if let Some(mut stderr) = qemu.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
