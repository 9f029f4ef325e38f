//! A sandboxed step as one process group: started with its output going to
//! the step's log, waited for, and stopped as a whole on Ctrl-C or when it
//! outlives its timeout. Shared by the host runner and the guest sandbox.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::personality::Persona;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::steplog::log_tail;
use crate::cancel::Cancel;
use crate::error::{Error, IoContext, Result};

/// How a step's process group ended.
pub enum Ended {
    Exited(ExitStatus),
    /// The user interrupted the run; the group was stopped.
    Interrupted,
    /// It ran past its timeout; the group was stopped.
    TimedOut,
}

/// Runs `argv` with an empty environment (the sandbox sets the step's),
/// stdout and stderr to `log`, in its own process group, under `persona`
/// if given. Everything left in the group is killed when it ends.
pub fn run(
    argv: &[String],
    log: &fs::File,
    cancel: &Cancel,
    persona: Option<Persona>,
    timeout: Option<Duration>,
) -> Result<Ended> {
    // Interrupted while the step was prepared: nothing is started.
    if cancel.is_set() {
        return Ok(Ended::Interrupted);
    }
    let clone_log = || log.try_clone().io_context(|| "cloning the log handle");
    let handle = duct::cmd(&argv[0], &argv[1..])
        .stdin_null()
        .stdout_file(clone_log()?)
        .stderr_file(clone_log()?)
        .unchecked()
        .full_env(BTreeMap::<String, String>::new())
        .before_spawn(move |cmd| {
            // Its own process group, so that one signal reaches everything it started.
            std::os::unix::process::CommandExt::process_group(cmd, 0);
            if let Some(persona) = persona {
                set_persona(cmd, persona);
            }
            Ok(())
        })
        .start()
        .io_context(|| format!("starting {}", argv[0]))?;
    let pgid = Pid::from_raw(handle.pids()[0] as i32);
    let deadline = timeout.map(|t| Instant::now() + t);

    // A thread blocks in wait, so the end of a short step is seen at once;
    // this one wakes now and then to look at the cancel flag and the clock.
    let ended = std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        let handle = &handle;
        scope.spawn(move || done.send(handle.wait().map(|output| output.status)));
        loop {
            match finished.recv_timeout(Duration::from_millis(50)) {
                Ok(status) => return status.map(Ended::Exited),
                Err(_) if cancel.is_set() => {
                    stop_group(pgid, handle);
                    return Ok(Ended::Interrupted);
                }
                Err(_) if deadline.is_some_and(|d| Instant::now() > d) => {
                    stop_group(pgid, handle);
                    return Ok(Ended::TimedOut);
                }
                Err(_) => {}
            }
        }
    });
    // Whatever the step left running in its group goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    ended.io_context(|| format!("waiting for {}", argv[0]))
}

/// Makes `cmd` run under `persona` (an execution domain, personality(2)),
/// which its children inherit.
pub fn set_persona(cmd: &mut std::process::Command, persona: Persona) {
    // SAFETY: personality(2) is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            nix::sys::personality::set(persona)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

/// A step that exited unsuccessfully, with the end of its log.
pub fn step_failed(id: &str, status: ExitStatus, log: &Path) -> Error {
    let status = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    };
    Error::StepFailed {
        step: id.to_string(),
        status,
        tail: log_tail(log, 30),
        log: log.to_path_buf(),
    }
}

/// SIGTERM to the whole group, a grace period, then SIGKILL.
fn stop_group(pgid: Pid, handle: &duct::Handle) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(handle.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = handle.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_interrupted_before_it_starts_is_never_started() {
        let dir = tempfile::tempdir().unwrap();
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let mark = dir.path().join("ran");
        let argv = ["/bin/sh", "-c", "touch \"$0\""]
            .iter()
            .map(|s| s.to_string())
            .chain([mark.display().to_string()])
            .collect::<Vec<_>>();
        let cancel = Cancel::default();
        cancel.set();
        let ended = run(&argv, &log, &cancel, None, None).unwrap();
        assert!(matches!(ended, Ended::Interrupted));
        assert!(!mark.exists());
        let ran = run(&argv, &log, &Cancel::default(), None, None).unwrap();
        assert!(matches!(ran, Ended::Exited(status) if status.success()));
        assert!(mark.exists());
    }
}
