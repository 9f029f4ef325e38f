//! `stagebuild shell` for a step of a VM stage in qemu: a guest booted from
//! the last good checkpoint (its root an overlay on the previous step's
//! disk, or on a base disk of the earlier outputs), with the step's job in
//! place as the agent unpacks it, and its console on the terminal. The
//! agent runs the job's script as for the step; here that script gives the
//! console an interactive shell in the step's environment instead. The
//! overlay, the job and the output disk are scratch: the caller discards
//! them, so nothing the shell does reaches a checkpoint.

use std::fs;
use std::io::Read;
use std::time::Duration;

use super::VmRunner;
use super::disks::{self, BACKING};
use super::qemu::Boot;
use crate::error::{Error, IoContext, Result};
use crate::runner::guest::{Backing, DISK, GuestMode, backing, earlier_file};
use crate::runner::guest_job;
use crate::runner::job::StepJob;
use crate::runner::shell::quote;
use crate::runner::terminal::{EndRequest, Terminal};
use crate::target::VmSettings;

/// Where the job keeps the step's own script once the shell takes its place.
pub const STEP_SCRIPT: &str = "/build/.stagebuild/script.sh";

/// What the agent runs in the step's place. It never exits 0, so the agent
/// neither jumps to a kexec step's kernel nor copies anything into the root,
/// and powers the guest off. `setsid -c` makes the console the shell's
/// controlling terminal, so Ctrl-C and job control work.
fn launcher(step: &str, prompt: &str) -> String {
    format!(
        "exec </dev/ttyS0 >/dev/ttyS0 2>&1\n\
         echo \"stagebuild shell: {step} in its guest ($(uname -m)), in $PWD; the step's script is \
         {STEP_SCRIPT} (sh -e {STEP_SCRIPT} runs it); exit powers the guest off and keeps nothing\"\n\
         export PS1={prompt}\n\
         if command -v setsid >/dev/null 2>&1; then setsid -c sh -i; else sh -i; fi\n\
         exit 125\n",
        prompt = quote(prompt)
    )
}

impl VmRunner {
    /// Boots the step's guest in `job.work` (made afresh) with its console
    /// on this terminal, and returns once the guest is off.
    pub fn shell(&mut self, job: &StepJob, prompt: &str) -> Result<()> {
        let chain_step = &job.planned.chain_step;
        let settings = chain_step.vm.clone().expect("a vm stage has vm settings");
        let id = job.planned.id();
        crate::fsutil::fresh_dir(&job.work)?;
        for dir in ["extras", "build", "out"] {
            fs::create_dir(job.work.join(dir))
                .io_context(|| format!("creating {}", job.work.join(dir).display()))?;
        }
        let kernel = earlier_file(job, &settings.kernel)?;
        let initrd = (settings.initrd.as_deref())
            .map(|r| earlier_file(job, r))
            .transpose()?;
        self.ensure_bases(job, &settings)?;
        let root = disks::make_root(job, &settings, &self.bases, &self.agent)?;
        let tools = crate::buildtree::Tools {
            sandbox: self.sandbox.as_ref(),
            max_unpacked: self.max_unpacked,
            cancel: &crate::cancel::Cancel::default(),
        };
        let build = guest_job::prepare(job, &tools, GuestMode::Qemu)?;
        let meta = build.join(".stagebuild");
        fs::rename(meta.join("step.sh"), meta.join("script.sh"))
            .io_context(|| "keeping the step's script")?;
        fs::write(meta.join("step.sh"), launcher(id, prompt))
            .io_context(|| "writing the shell's launcher")?;
        let job_disk = disks::pack_job(job, &build)?;
        let out_disk = disks::make_out(job, settings.disk)?;
        let console = job.work.join("console.log");
        let accel = self.accelerator(&kernel, &job.work);

        let request = EndRequest::on_signals()?;
        let _terminal = Terminal::save();
        let started = Boot {
            step: id,
            settings: &settings,
            accel,
            kernel: &kernel,
            initrd: initrd.as_deref(),
            root: &root.disk,
            job: &job_disk,
            out: &out_disk,
            console: &console,
            work: &job.work,
            interactive: true,
            scratch: None,
            rtc_base: None,
        }
        .start()?;
        let (mut qemu, mut qmp, mut ctl) = (started.qemu, started.qmp, started.ctl);
        // What the agent says (HELLO, EXIT) is read and dropped, so that
        // its writes never wait for a reader.
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while ctl.read(&mut sink).is_ok_and(|n| n > 0) {}
        });
        let mut asked = false;
        while qemu.ended()?.is_none() {
            if request.is_set() && !asked {
                asked = true;
                let _ = qmp.execute("quit", None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The base disks under the earlier steps' overlays, made again where a
    /// completed run removed them, as a resume makes them (see
    /// [`VmRunner::fits`]). They stay in `STATE/disks` until a run completes.
    fn ensure_bases(&self, job: &StepJob, settings: &VmSettings) -> Result<()> {
        for (at, earlier) in job.earlier.iter().enumerate() {
            let in_this_guest = earlier.machine.as_ref() == Some(&settings.machine);
            if !in_this_guest || !earlier.dir.join(DISK).is_file() {
                continue;
            }
            let Backing::Base(trees) = backing(&job.earlier[..at], settings) else {
                continue;
            };
            let recorded = fs::read_to_string(earlier.dir.join(BACKING))
                .io_context(|| format!("reading {}", earlier.dir.join(BACKING).display()))?;
            let made =
                (self.bases).ensure(Some(recorded.trim()), &trees, &self.agent, settings.disk)?;
            if made != recorded.trim() {
                return Err(Error::CheckpointUnusable {
                    step: earlier.id.clone(),
                    problem: "sits on a base disk that its earlier outputs no longer make".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The launcher, its shell swapped for printing the prompt, run by sh.
    #[test]
    fn the_launcher_sets_the_prompt_as_given_and_never_exits_0() {
        let prompt = "it's $HOME # ";
        let script = launcher("bzip2", prompt)
            .replace("exec </dev/ttyS0 >/dev/ttyS0 2>&1\n", "")
            .replace(
                "if command -v setsid >/dev/null 2>&1; then setsid -c sh -i; else sh -i; fi",
                "printf '%s' \"$PS1\" >&2",
            );
        let out = std::process::Command::new("sh")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert_eq!(String::from_utf8_lossy(&out.stderr), prompt);
        assert!(String::from_utf8_lossy(&out.stdout).contains(STEP_SCRIPT));
    }
}
