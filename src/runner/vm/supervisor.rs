//! What becomes of one guest, decided from what it and qemu say and from
//! the clock: a pure state machine. The driver ([`super::drive`]) feeds it
//! the agent's messages, the console's lines, the monitor's panic event,
//! qemu's exit and clock ticks, and acts on its decisions; the times come
//! with each event, so tests run it on a made-up clock.

use std::fmt;
use std::time::{Duration, Instant};

use super::agent::{Kernel, Message};

/// How long a guest may take to start its agent, and the step to run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub boot: Duration,
    pub step: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Agent(Message),
    /// A line of the guest's console.
    Console(String),
    /// The monitor's `GUEST_PANICKED` (pvpanic).
    Panicked,
    /// qemu ended, with this exit status and this suffix of its stderr.
    QemuExited {
        status: String,
        stderr: String,
    },
    /// Time passed.
    Tick,
}

/// Where the guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the agent's HELLO: from qemu's start, or from a kexec.
    Booting { after_kexec: bool },
    /// The agent is up and the step runs.
    Running,
    /// The step's script ended; the agent writes the output and stops.
    Ending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A line for the step's log.
    Log(String),
    /// The step succeeded and its output is written; the guest ended in
    /// this kernel.
    Succeeded(Kernel),
    /// The step's script failed with this exit code.
    StepFailed(i32),
    /// The guest did not finish the step: stop it.
    Fail(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    BootTimeout {
        after_kexec: bool,
        limit: Duration,
    },
    StepTimeout {
        limit: Duration,
    },
    /// The step ended, but the guest did not shut down within the boot
    /// timeout after its step timeout.
    NoShutdown,
    Panicked,
    /// qemu ended before the agent of the kernel it runs said HELLO.
    StoppedBeforeAgent {
        status: String,
        stderr: String,
    },
    /// qemu ended while the step ran, or before its output was written.
    QemuLost {
        status: String,
        stderr: String,
    },
    /// A kexec step ended well, but in the kernel it started in.
    NoHop,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::BootTimeout { after_kexec, limit } => {
                let what = if *after_kexec {
                    "the kernel loaded by kexec did not start its agent"
                } else {
                    "the guest did not start its agent"
                };
                write!(f, "{what} within {}s (boot timeout)", limit.as_secs())
            }
            Failure::StepTimeout { limit } => {
                write!(f, "the step ran past its timeout of {}s", limit.as_secs())
            }
            Failure::NoShutdown => f.write_str("the guest did not shut down after the step"),
            Failure::Panicked => f.write_str("the guest kernel panicked"),
            Failure::StoppedBeforeAgent { status, stderr } => write!(
                f,
                "the guest stopped before its agent started ({status}){stderr}"
            ),
            Failure::QemuLost { status, stderr } => {
                write!(f, "qemu ended before the step finished ({status}){stderr}")
            }
            Failure::NoHop => f.write_str("the kexec step ended without jumping to the new kernel"),
        }
    }
}

pub struct Supervisor {
    limits: Limits,
    /// The step is a kexec step: it must end in the kernel it loads.
    kexec_step: bool,
    /// When the running kernel started: qemu's start, or the kexec.
    booting_since: Instant,
    /// When that kernel's agent said HELLO.
    up_since: Option<Instant>,
    /// The kernel the agent last announced.
    kernel: Option<Kernel>,
    hopped: bool,
    code: Option<i32>,
    output_written: Option<Instant>,
    panicked: bool,
}

impl Supervisor {
    /// A guest whose qemu started at `now`.
    pub fn new(limits: Limits, kexec_step: bool, now: Instant) -> Supervisor {
        Supervisor {
            limits,
            kexec_step,
            booting_since: now,
            up_since: None,
            kernel: None,
            hopped: false,
            code: None,
            output_written: None,
            panicked: false,
        }
    }

    pub fn phase(&self) -> Phase {
        match (self.up_since, self.code) {
            (None, _) => Phase::Booting {
                after_kexec: self.hopped,
            },
            (Some(_), None) => Phase::Running,
            (Some(_), Some(_)) => Phase::Ending,
        }
    }

    /// What to do about `event`, which happened at `now`: lines to log, then
    /// at most one end.
    pub fn feed(&mut self, now: Instant, event: Event) -> Vec<Decision> {
        match event {
            Event::Agent(message) => self.agent(now, message),
            Event::Console(line) => {
                self.panicked |= line.contains("Kernel panic");
                Vec::new()
            }
            Event::Panicked => {
                self.panicked = true;
                Vec::new()
            }
            Event::QemuExited { status, stderr } => self.qemu_exited(now, status, stderr),
            Event::Tick => self.tick(now),
        }
    }

    fn agent(&mut self, now: Instant, message: Message) -> Vec<Decision> {
        let log = match message {
            Message::Hello(kernel) => {
                let line = format!(
                    "# guest up after {:.1}s: {kernel}",
                    since(now, self.booting_since).as_secs_f64()
                );
                self.up_since = Some(now);
                self.kernel = Some(kernel);
                line
            }
            // QEMU reports nothing for a kexec: the new kernel is noticed by
            // its agent's HELLO, under the boot timeout again.
            Message::Kexec => {
                self.hopped = true;
                self.up_since = None;
                self.booting_since = now;
                "# kexec: the guest jumps to the loaded kernel".to_string()
            }
            Message::Log(text) => text,
            Message::Exit(code) => {
                self.code = Some(code);
                return Vec::new();
            }
            Message::Done => {
                self.output_written = Some(now);
                return Vec::new();
            }
            Message::Unknown(line) => format!("# unexpected from the agent: {line}"),
        };
        vec![Decision::Log(log)]
    }

    fn qemu_exited(&mut self, now: Instant, status: String, stderr: String) -> Vec<Decision> {
        let mut decisions = Vec::new();
        if let Some(written) = self.output_written {
            decisions.push(Decision::Log(format!(
                "# guest shut down {:.3}s after its output was written",
                since(now, written).as_secs_f64()
            )));
        }
        let end = match (self.code, &self.kernel) {
            _ if self.panicked => Decision::Fail(Failure::Panicked),
            (Some(0), Some(_))
                if self.output_written.is_some() && self.kexec_step && !self.hopped =>
            {
                Decision::Fail(Failure::NoHop)
            }
            (Some(0), Some(kernel)) if self.output_written.is_some() => {
                Decision::Succeeded(kernel.clone())
            }
            (Some(code), _) if code != 0 => Decision::StepFailed(code),
            _ if matches!(self.phase(), Phase::Booting { .. }) => {
                Decision::Fail(Failure::StoppedBeforeAgent { status, stderr })
            }
            _ => Decision::Fail(Failure::QemuLost { status, stderr }),
        };
        decisions.push(end);
        decisions
    }

    fn tick(&mut self, now: Instant) -> Vec<Decision> {
        let limits = self.limits;
        let up = since(now, self.up_since.unwrap_or(self.booting_since));
        match self.phase() {
            Phase::Booting { after_kexec } if since(now, self.booting_since) > limits.boot => {
                vec![Decision::Fail(Failure::BootTimeout {
                    after_kexec,
                    limit: limits.boot,
                })]
            }
            Phase::Running if up > limits.step => vec![
                Decision::Log("# stagebuild: the step ran past its timeout".into()),
                Decision::Fail(Failure::StepTimeout { limit: limits.step }),
            ],
            // After EXIT the agent writes the output and syncs; that is
            // bounded by the boot timeout.
            Phase::Ending if up > limits.step + limits.boot => {
                vec![Decision::Fail(Failure::NoShutdown)]
            }
            _ => Vec::new(),
        }
    }
}

fn since(now: Instant, then: Instant) -> Duration {
    now.saturating_duration_since(then)
}

#[cfg(test)]
mod tests;
