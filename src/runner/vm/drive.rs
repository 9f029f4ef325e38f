//! Follows one guest from boot to shutdown: reads what its agent says,
//! watches qemu and its monitor, and enforces the boot and step timeouts.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::agent::Message;
use super::console;
use super::qemu::Started;
use crate::error::{Error, IoContext, Result};
use crate::runner::Cancel;

/// How long a guest may take to start its agent, and the step to run.
pub struct Limits {
    pub boot: Duration,
    pub step: Duration,
}

/// How a guest's step ended.
pub struct Ended {
    pub code: i32,
    /// The kernel the agent last announced: `uname -m` and `uname -r`.
    pub kernel: String,
    /// Whether the guest jumped to another kernel with kexec.
    pub hopped: bool,
}

/// Follows the guest until it ends: returns how the step ended, or an
/// error for a boot timeout, a step timeout, a panic or a qemu crash.
pub fn supervise(
    step: &str,
    console: &Path,
    limits: &Limits,
    Started {
        mut qemu,
        mut qmp,
        ctl,
    }: Started,
    log: &mut fs::File,
    cancel: &Cancel,
) -> Result<Ended> {
    let fail = |problem: String| console::failure(step, console, problem);
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
    let boot_timeout = limits.boot;
    loop {
        match reader.read_line(&mut line) {
            // The guest has the port closed (booting, or done).
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) if line.ends_with('\n') => {
                let mut message = std::mem::take(&mut line);
                message.pop();
                match Message::parse(&message) {
                    Message::Hello(announced) => {
                        hello = Some(Instant::now());
                        let _ = writeln!(
                            log,
                            "# guest up after {:.1}s: {announced}",
                            started.elapsed().as_secs_f64()
                        );
                        kernel = announced.to_string();
                    }
                    // QEMU reports nothing for a kexec: the new kernel
                    // is noticed by its agent's HELLO, under the boot
                    // timeout again.
                    Message::Kexec => {
                        hopped = true;
                        hello = None;
                        started = Instant::now();
                        let _ = writeln!(log, "# kexec: the guest jumps to the loaded kernel");
                    }
                    Message::Log(text) => {
                        let _ = writeln!(log, "{text}");
                    }
                    Message::Exit(exit) => code = Some(exit),
                    Message::Done => {
                        done = true;
                        output_written = Some(Instant::now());
                    }
                    Message::Unknown(message) => {
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
            .map_err(|e| fail(e.to_string()))?
        {
            if event.name == "GUEST_PANICKED" {
                panicked = true;
            }
        }
        if let Some(status) = qemu.ended()? {
            if let Some(written) = output_written {
                let _ = writeln!(
                    log,
                    "# guest shut down {:.3}s after its output was written",
                    written.elapsed().as_secs_f64()
                );
            }
            let stderr = qemu.stderr();
            let console = fs::read_to_string(console).unwrap_or_default();
            if panicked || console.contains("Kernel panic") {
                return Err(fail("the guest kernel panicked".into()));
            }
            let ended = |code| Ended {
                code,
                kernel: kernel.clone(),
                hopped,
            };
            return match (code, done) {
                (Some(0), true) => Ok(ended(0)),
                (Some(code), _) if code != 0 => Ok(ended(code)),
                _ if hello.is_none() => Err(fail(format!(
                    "the guest stopped before its agent started ({status}){stderr}"
                ))),
                _ => Err(fail(format!(
                    "qemu ended before the step finished ({status}){stderr}"
                ))),
            };
        }
        if cancel.is_set() {
            let _ = qmp.execute("quit", None);
            let _ = writeln!(log, "# stagebuild: interrupted");
            return Err(Error::Interrupted {
                step: step.to_string(),
            });
        }
        match hello {
            None if started.elapsed() > boot_timeout => {
                let what = if hopped {
                    "the kernel loaded by kexec did not start its agent"
                } else {
                    "the guest did not start its agent"
                };
                return Err(fail(format!(
                    "{what} within {}s (boot timeout)",
                    boot_timeout.as_secs()
                )));
            }
            Some(up) if code.is_none() && up.elapsed() > limits.step => {
                let _ = writeln!(log, "# stagebuild: the step ran past its timeout");
                return Err(fail(format!(
                    "the step ran past its timeout of {}s",
                    limits.step.as_secs()
                )));
            }
            // After EXIT the agent writes the output and syncs; that is
            // bounded by the boot timeout.
            Some(up) if code.is_some() && up.elapsed() > limits.step + boot_timeout => {
                return Err(fail("the guest did not shut down after the step".into()));
            }
            _ => {}
        }
    }
}
