//! The supervisor on a made-up clock: no qemu, no root, no waiting.

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
        Event::Console("[    1.234] Kernel panic - not syncing: Attempted to kill init!".into()),
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
