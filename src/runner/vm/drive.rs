//! Follows one guest from boot to shutdown: reads what its agent says and
//! watches qemu and its monitor, hands all of it to the [`Supervisor`] and
//! does what that decides.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::agent::{Kernel, Message};
use super::console;
use super::qemu::Started;
use super::supervisor::{Decision, Event, Supervisor};
use crate::cancel::Cancel;
use crate::error::{Error, IoContext, Result};

/// How a guest's step ended.
pub enum Ended {
    /// Its output is written; the guest ended in this kernel.
    Succeeded(Kernel),
    /// Its script failed with this exit code.
    Failed(i32),
}

/// Follows the guest until it ends: returns how the step ended, or an
/// error for a boot timeout, a step timeout, a panic or a qemu crash.
pub fn supervise(
    step: &str,
    console: &Path,
    mut machine: Supervisor,
    Started {
        mut qemu,
        mut qmp,
        ctl,
    }: Started,
    log: &mut fs::File,
    cancel: &Cancel,
) -> Result<Ended> {
    let mut channel = Channel::new(ctl)?;
    let mut act = |decisions: Vec<Decision>| -> Option<Result<Ended>> {
        for decision in decisions {
            match decision {
                Decision::Log(line) => {
                    let _ = writeln!(log, "{line}");
                }
                Decision::Succeeded(kernel) => return Some(Ok(Ended::Succeeded(kernel))),
                Decision::StepFailed(code) => return Some(Ok(Ended::Failed(code))),
                Decision::Fail(failure) => {
                    return Some(Err(console::failure(step, console, failure.to_string())));
                }
            }
        }
        None
    };
    loop {
        // While the agent talks, nothing else is looked at.
        if let Some(line) = channel.next_line() {
            let event = Event::Agent(Message::parse(&line));
            if let Some(ended) = act(machine.feed(Instant::now(), event)) {
                return ended;
            }
            continue;
        }
        while let Some(event) = qmp
            .next_event(Duration::ZERO)
            .map_err(|e| console::failure(step, console, e.to_string()))?
        {
            if event.name == "GUEST_PANICKED" {
                machine.feed(Instant::now(), Event::Panicked);
            }
        }
        if let Some(status) = qemu.ended()? {
            let stderr = qemu.stderr();
            let text = String::from_utf8_lossy(&fs::read(console).unwrap_or_default()).into_owned();
            for line in text.lines() {
                machine.feed(Instant::now(), Event::Console(line.to_string()));
            }
            let status = status.to_string();
            let exited = Event::QemuExited { status, stderr };
            return act(machine.feed(Instant::now(), exited))
                .expect("the supervisor decides how a guest ended once qemu has");
        }
        if cancel.is_set() {
            let _ = qmp.execute("quit", None);
            let _ = writeln!(log, "# stagebuild: interrupted");
            return Err(Error::Interrupted {
                step: step.to_string(),
            });
        }
        if let Some(ended) = act(machine.feed(Instant::now(), Event::Tick)) {
            return ended;
        }
    }
}

/// The agent's control channel, read a line at a time.
struct Channel {
    reader: BufReader<UnixStream>,
    /// A line read in part when the read timed out; the next read completes it.
    partial: String,
}

impl Channel {
    fn new(ctl: UnixStream) -> Result<Channel> {
        ctl.set_read_timeout(Some(Duration::from_millis(100)))
            .io_context(|| "configuring the control channel")?;
        Ok(Channel {
            reader: BufReader::new(ctl),
            partial: String::new(),
        })
    }

    /// The next whole line without its newline, waiting up to 100 ms.
    fn next_line(&mut self) -> Option<String> {
        match self.reader.read_line(&mut self.partial) {
            // The guest has the port closed (booting, or done).
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(50));
                None
            }
            Ok(_) if self.partial.ends_with('\n') => {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                Some(line)
            }
            // Part of a line, a timeout, or an error: nothing whole yet.
            _ => None,
        }
    }
}
