//! The qemu process of one VM step: its command line, its QMP monitor and
//! the control channel to the guest agent, and qemu itself, killed when
//! dropped (and, through PDEATHSIG, when stagebuild dies).

use std::fs;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::console;
use crate::error::{IoContext, Result};
use crate::qmp::Qmp;
use crate::runner::guest::command_line;
use crate::runner::guest_variation::SCRATCH_SERIAL;
use crate::target::VmSettings;

/// The name the agent looks for among the virtio-serial ports.
const CONTROL_PORT: &str = "org.stagebuild.ctl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    /// KVM if a probe boot shows that guests run under it, else TCG.
    Auto,
}

/// Whether a kernel starts printing under KVM within a few seconds. On some
/// hosts /dev/kvm opens but guests hang before their first instruction.
pub fn kvm_boots(kernel: &Path, work: &Path) -> bool {
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

/// What one step's guest boots.
pub struct Boot<'a> {
    /// The step, for errors.
    pub step: &'a str,
    pub settings: &'a VmSettings,
    /// `tcg` or `kvm`.
    pub accel: &'a str,
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    /// The root disk (a qcow2 overlay), the job tar and the output disk.
    pub root: &'a Path,
    pub job: &'a Path,
    pub out: &'a Path,
    /// Where the guest's console is written.
    pub console: &'a Path,
    /// An audit's: the disk to build on, and where the guest's clock starts
    /// (`-rtc base=`, UTC).
    pub scratch: Option<&'a Path>,
    pub rtc_base: Option<String>,
    /// Where qemu's sockets are made.
    pub work: &'a Path,
    /// The guest's console on stagebuild's terminal (`stagebuild shell`),
    /// still logged to `console`; else only logged.
    pub interactive: bool,
}

/// qemu, killed when this is dropped.
pub struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Qemu {
    /// Its exit status, if it has ended.
    pub fn ended(&mut self) -> Result<Option<ExitStatus>> {
        self.0.try_wait().io_context(|| "waiting for qemu")
    }

    /// What qemu said on stderr, if anything, as a suffix for a message.
    /// Kills qemu first, so that the pipe ends.
    pub fn stderr(&mut self) -> String {
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    }
}

/// A running guest: qemu, its monitor, and the agent's control channel.
pub struct Started {
    pub qemu: Qemu,
    pub qmp: Qmp,
    pub ctl: UnixStream,
}

impl Boot<'_> {
    /// Starts qemu and connects to its monitor and to the control channel.
    pub fn start(&self) -> Result<Started> {
        let qmp_socket = self.work.join("qmp.sock");
        let ctl_socket = self.work.join("ctl.sock");
        let mut cmd = self.command(&qmp_socket, &ctl_socket);
        let child = cmd
            .spawn()
            .io_context(|| "starting qemu-system-x86_64 (Debian: qemu-system-x86)")?;
        let mut qemu = Qemu(child);
        let qmp = match Qmp::connect(&qmp_socket, Duration::from_secs(30)) {
            Ok(qmp) => qmp,
            Err(e) => {
                let stderr = qemu.stderr();
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
        Ok(Started { qemu, qmp, ctl })
    }

    fn fail(&self, problem: String) -> crate::error::Error {
        console::failure(self.step, self.console, problem)
    }

    fn command(&self, qmp_socket: &Path, ctl_socket: &Path) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            self.accel,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot"])
        .args(["-m", &format!("{}M", self.settings.memory)])
        .arg("-kernel")
        .arg(self.kernel)
        .arg("-append")
        .arg(command_line(&self.settings.append))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
        .arg("-chardev")
        .arg(if self.interactive {
            // Ctrl-C goes to the guest as a key, not to qemu as a signal.
            format!(
                "stdio,id=console,signal=off,logfile={}",
                self.console.display()
            )
        } else {
            format!("file,id=console,path={}", self.console.display())
        })
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
        if let Some(initrd) = self.initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        if let Some(base) = &self.rtc_base {
            cmd.arg("-rtc").arg(format!("base={base}"));
        }
        // The root disk passes the guest's discards through (it mounts ext4
        // with -o discard), so a build tree deleted in the guest does not
        // stay allocated in the step's overlay.
        let scratch = (self.scratch).map(|disk| ("audit", disk, "raw", SCRATCH_SERIAL, false));
        for (node, file, format, serial, read_only) in [
            ("root", self.root, "qcow2", "root", false),
            ("job", self.job, "raw", "job", true),
            ("out", self.out, "raw", "out", false),
        ]
        .into_iter()
        .chain(scratch)
        {
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
        if self.interactive {
            // In stagebuild's process group, the terminal's foreground one,
            // or reading the terminal would stop it.
            cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            cmd.process_group(0);
        }
        cmd.stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }
}
