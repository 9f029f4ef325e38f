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
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        boot: Duration::from_secs(60),
        step: Duration::from_secs(600),
    };
    const JUST: Duration = Duration::from_millis(1);

    /// A supervisor on a made-up clock: `at(s)` is `s` seconds after qemu started.
    struct Fake {
        start: Instant,
        machine: Supervisor,
    }

    impl Fake {
        fn new(kexec_step: bool) -> Fake {
            let start = Instant::now();
            Fake {
                start,
                machine: Supervisor::new(LIMITS, kexec_step, start),
            }
        }

        fn feed(&mut self, at: Duration, event: Event) -> Vec<Decision> {
            self.machine.feed(self.start + at, event)
        }

        fn say(&mut self, at: Duration, line: &str) -> Vec<Decision> {
            self.feed(at, Event::Agent(Message::parse(line)))
        }

        fn tick(&mut self, at: Duration) -> Vec<Decision> {
            self.feed(at, Event::Tick)
        }

        fn qemu_exits(&mut self, at: Duration) -> Vec<Decision> {
            self.feed(
                at,
                Event::QemuExited {
                    status: "exit status: 0".into(),
                    stderr: ": a note".into(),
                },
            )
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn kernel(machine: &str) -> Kernel {
        Kernel {
            machine: machine.into(),
            release: "6.1.4".into(),
        }
    }

    fn fail(decisions: &[Decision]) -> Option<&Failure> {
        match decisions.last() {
            Some(Decision::Fail(failure)) => Some(failure),
            _ => None,
        }
    }

    #[test]
    fn a_guest_whose_agent_does_not_start_fails_after_the_boot_timeout() {
        let mut guest = Fake::new(false);
        assert_eq!(guest.machine.phase(), Phase::Booting { after_kexec: false });
        assert_eq!(guest.tick(LIMITS.boot), []);
        let failure = guest.tick(LIMITS.boot + JUST);
        assert_eq!(
            fail(&failure),
            Some(&Failure::BootTimeout {
                after_kexec: false,
                limit: LIMITS.boot
            })
        );
        assert_eq!(
            fail(&failure).unwrap().to_string(),
            "the guest did not start its agent within 60s (boot timeout)"
        );
    }

    #[test]
    fn a_step_is_timed_from_its_agents_hello_and_logged_when_it_runs_over() {
        let mut guest = Fake::new(false);
        assert_eq!(
            guest.say(secs(30), "HELLO i686 6.1.4"),
            [Decision::Log("# guest up after 30.0s: i686 6.1.4".into())]
        );
        assert_eq!(guest.machine.phase(), Phase::Running);
        assert_eq!(
            guest.say(secs(31), "LOG compiling"),
            [Decision::Log("compiling".into())]
        );
        // Long past the boot timeout, within the step's.
        assert_eq!(guest.tick(secs(30) + LIMITS.step), []);
        let over = guest.tick(secs(30) + LIMITS.step + JUST);
        assert_eq!(
            over,
            [
                Decision::Log("# stagebuild: the step ran past its timeout".into()),
                Decision::Fail(Failure::StepTimeout { limit: LIMITS.step }),
            ]
        );
        assert_eq!(
            fail(&over).unwrap().to_string(),
            "the step ran past its timeout of 600s"
        );
    }

    #[test]
    fn a_step_ends_with_its_exit_code_once_qemu_has_ended() {
        let mut guest = Fake::new(false);
        guest.say(secs(2), "HELLO i686 6.1.4");
        assert_eq!(guest.say(secs(9), "EXIT 0"), []);
        assert_eq!(guest.machine.phase(), Phase::Ending);
        assert_eq!(guest.say(secs(10), "DONE"), []);
        // Nothing ends before qemu does.
        assert_eq!(guest.tick(secs(11)), []);
        assert_eq!(
            guest.qemu_exits(secs(10) + Duration::from_millis(250)),
            [
                Decision::Log("# guest shut down 0.250s after its output was written".into()),
                Decision::Succeeded(kernel("i686")),
            ]
        );

        let mut failed = Fake::new(false);
        failed.say(secs(2), "HELLO i686 6.1.4");
        failed.say(secs(9), "EXIT 2");
        assert_eq!(failed.qemu_exits(secs(10)), [Decision::StepFailed(2)]);
    }

    #[test]
    fn a_guest_that_does_not_stop_after_its_step_fails() {
        let mut guest = Fake::new(false);
        guest.say(secs(2), "HELLO i686 6.1.4");
        guest.say(secs(9), "EXIT 0");
        // The step's timeout no longer applies; the boot timeout is added.
        assert_eq!(guest.tick(secs(2) + LIMITS.step + JUST), []);
        assert_eq!(
            fail(&guest.tick(secs(2) + LIMITS.step + LIMITS.boot + JUST)),
            Some(&Failure::NoShutdown)
        );
    }

    #[test]
    fn a_panic_on_the_console_or_from_the_monitor_is_what_ends_the_guest() {
        for panic in [
            Event::Console(
                "[    1.234] Kernel panic - not syncing: Attempted to kill init!".into(),
            ),
            Event::Panicked,
        ] {
            let mut guest = Fake::new(false);
            guest.say(secs(2), "HELLO i686 6.1.4");
            assert_eq!(guest.feed(secs(3), Event::Console("a line".into())), []);
            assert_eq!(guest.feed(secs(4), panic), []);
            // Even with an exit code: the step did not end on its own.
            guest.say(secs(4), "EXIT 1");
            assert_eq!(fail(&guest.qemu_exits(secs(5))), Some(&Failure::Panicked));
        }
    }

    #[test]
    fn qemu_lost_before_or_during_the_step_says_which() {
        let status = || ("exit status: 0".to_string(), ": a note".to_string());
        let mut booting = Fake::new(false);
        let lost = booting.qemu_exits(secs(3));
        assert_eq!(
            fail(&lost),
            Some(&Failure::StoppedBeforeAgent {
                status: status().0,
                stderr: status().1
            })
        );
        assert_eq!(
            fail(&lost).unwrap().to_string(),
            "the guest stopped before its agent started (exit status: 0): a note"
        );

        let mut running = Fake::new(false);
        running.say(secs(2), "HELLO i686 6.1.4");
        let lost = running.qemu_exits(secs(3));
        assert_eq!(
            fail(&lost).unwrap().to_string(),
            "qemu ended before the step finished (exit status: 0): a note"
        );

        // The step succeeded, but its output was never written.
        let mut writing = Fake::new(false);
        writing.say(secs(2), "HELLO i686 6.1.4");
        writing.say(secs(3), "EXIT 0");
        assert!(matches!(
            fail(&writing.qemu_exits(secs(4))),
            Some(Failure::QemuLost { .. })
        ));
    }

    #[test]
    fn a_kexec_step_ends_in_the_kernel_whose_agent_announces_itself_after_the_jump() {
        let mut guest = Fake::new(true);
        guest.say(secs(2), "HELLO i686 6.1.4");
        guest.say(secs(3), "LOG + kexec -l /build/.stagebuild/kexec/kernel");
        // The jump comes late in the step, and qemu says nothing of it.
        let jump = secs(2) + LIMITS.step - secs(1);
        assert_eq!(
            guest.say(jump, "KEXEC"),
            [Decision::Log(
                "# kexec: the guest jumps to the loaded kernel".into()
            )]
        );
        assert_eq!(guest.machine.phase(), Phase::Booting { after_kexec: true });
        // The new kernel boots under the boot timeout, not the old step's.
        assert_eq!(guest.tick(jump + LIMITS.boot), []);
        assert_eq!(
            guest.say(jump + secs(20), "HELLO x86_64 6.1.4"),
            [Decision::Log("# guest up after 20.0s: x86_64 6.1.4".into())]
        );
        assert_eq!(guest.machine.phase(), Phase::Running);
        guest.say(jump + secs(21), "EXIT 0");
        guest.say(jump + secs(22), "DONE");
        assert_eq!(
            guest.qemu_exits(jump + secs(23)).last(),
            Some(&Decision::Succeeded(kernel("x86_64")))
        );
    }

    #[test]
    fn a_kexec_that_boots_no_agent_or_never_jumps_fails() {
        let mut silent = Fake::new(true);
        silent.say(secs(2), "HELLO i686 6.1.4");
        silent.say(secs(5), "KEXEC");
        let failure = silent.tick(secs(5) + LIMITS.boot + JUST);
        assert_eq!(
            fail(&failure).unwrap().to_string(),
            "the kernel loaded by kexec did not start its agent within 60s (boot timeout)"
        );

        // The load worked but `kexec -e` returned: the old agent goes on.
        let mut returned = Fake::new(true);
        returned.say(secs(2), "HELLO i686 6.1.4");
        returned.say(secs(5), "KEXEC");
        returned.say(secs(5), "LOG stagebuild agent: kexec -e returned");
        returned.say(secs(5), "EXIT 1");
        assert_eq!(returned.qemu_exits(secs(6)), [Decision::StepFailed(1)]);

        // A kexec step whose script succeeded without the agent's jump.
        let mut stayed = Fake::new(true);
        stayed.say(secs(2), "HELLO i686 6.1.4");
        stayed.say(secs(5), "EXIT 0");
        stayed.say(secs(5), "DONE");
        assert_eq!(fail(&stayed.qemu_exits(secs(6))), Some(&Failure::NoHop));
    }

    #[test]
    fn what_the_agent_should_not_say_is_logged() {
        let mut guest = Fake::new(false);
        assert_eq!(
            guest.say(secs(1), "HALLO"),
            [Decision::Log("# unexpected from the agent: HALLO".into())]
        );
        assert_eq!(guest.machine.phase(), Phase::Booting { after_kexec: false });
    }
}
