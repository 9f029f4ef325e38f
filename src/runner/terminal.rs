//! A program given the user's terminal for an interactive session
//! (`stagebuild shell`): its stdin, stdout and stderr are stagebuild's, and
//! stagebuild waits for it. Ctrl-C and Ctrl-\ belong to the session, not to
//! stagebuild; a hang-up or SIGTERM ends the program. The terminal's
//! settings are put back afterwards, even if the program (qemu sets its
//! terminal raw) was killed before it could.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::personality::Persona;
use nix::sys::signal::{Signal, killpg};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;

use crate::error::{IoContext, Result};

/// The terminal's settings when the session started, put back when dropped.
pub struct Terminal {
    saved: Option<Termios>,
}

impl Terminal {
    /// Notes the settings of stdin, if it is a terminal.
    pub fn save() -> Terminal {
        Terminal {
            saved: termios::tcgetattr(std::io::stdin().as_fd()).ok(),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Set when stagebuild is asked to end (SIGTERM, SIGHUP). SIGINT and
/// SIGQUIT get a handler that does nothing, so the keys that raise them end
/// neither stagebuild nor a program in its process group; handlers, unlike
/// ignored signals, are reset by exec, so the session's own programs can
/// still be interrupted.
pub struct EndRequest(Arc<AtomicBool>);

impl EndRequest {
    pub fn on_signals() -> Result<EndRequest> {
        let end = Arc::new(AtomicBool::new(false));
        let typed = Arc::new(AtomicBool::new(false));
        let register = |signal, flag: &Arc<AtomicBool>| {
            signal_hook::flag::register(signal, flag.clone())
                .map(drop)
                .io_context(|| "installing signal handlers")
        };
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        register(SIGTERM, &end)?;
        register(SIGHUP, &end)?;
        register(SIGINT, &typed)?;
        register(SIGQUIT, &typed)?;
        Ok(EndRequest(end))
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs `argv` (which sets its own environment: a sandbox) on the
/// terminal, under `persona` if given, and waits for it. It runs in a
/// process group of its own, which a hang-up or SIGTERM of stagebuild ends.
pub fn run(argv: &[String], persona: Option<Persona>) -> Result<ExitStatus> {
    let request = EndRequest::on_signals()?;
    let _terminal = Terminal::save();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().process_group(0);
    if let Some(persona) = persona {
        super::group::set_persona(&mut command, persona);
    }
    let mut child = command
        .spawn()
        .io_context(|| format!("starting {}", argv[0]))?;
    let group = Pid::from_raw(child.id() as i32);
    let mut asked = false;
    loop {
        if let Some(status) = child.try_wait().io_context(|| "waiting for the shell")? {
            let _ = killpg(group, Signal::SIGKILL);
            return Ok(status);
        }
        if request.is_set() && !asked {
            asked = true;
            let _ = killpg(group, Signal::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
