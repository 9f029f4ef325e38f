//! The disk tools a VM step runs on the host (mke2fs, debugfs, qemu-img),
//! tied to stagebuild's life.
//!
//! A tool that outlived a killed stagebuild would go on writing into the
//! scratch files the next run makes its base disk in: that run would then
//! hash and record a disk that changes under it, and a later resume, making
//! the disk again, would find it different and rebuild every guest step.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::runner::RunnerError;
use crate::error::{IoContext, Result};

/// Makes the command's process die (SIGKILL) when stagebuild does.
pub fn dies_with_stagebuild(cmd: &mut Command) -> &mut Command {
    let stagebuild = nix::unistd::getpid();
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // Killed before the line above took effect: the parent is gone.
            if nix::unistd::getppid() != stagebuild {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            Ok(())
        })
    }
}

/// Runs a disk tool and turns its failure into an error.
pub fn run_tool(cmd: &mut Command) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let context = || format!("running {program} (Debian: e2fsprogs, qemu-utils)");
    let child = dies_with_stagebuild(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .io_context(context)?;
    crate::faultpoint::reached(&format!("running {program}"));
    let output = child.wait_with_output().io_context(context)?;
    if !output.status.success() {
        return Err(RunnerError::ToolFailed {
            program,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The kernel sends the signal when the thread that started the tool
    /// ends, which a test can do without ending its process; for
    /// stagebuild, whose tools start on the thread that waits for them,
    /// that is when stagebuild dies.
    #[test]
    fn a_tool_dies_with_what_started_it() {
        let mut tool = std::thread::spawn(|| {
            dies_with_stagebuild(Command::new("sleep").arg("60"))
                .spawn()
                .unwrap()
        })
        .join()
        .unwrap();
        let status = tool.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
    }
}
