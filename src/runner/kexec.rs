//! The kernel hop: a kexec step of a VM stage loads another kernel into the
//! running guest and jumps to it; the stage after it runs on that kernel.
//!
//! The hop travels in the step's job like any step: the kernel and initrd are
//! copied beside it and its script is the `kexec -l` that loads them. When
//! the load succeeds the agent marks the root disk, announces `KEXEC` and
//! executes the new kernel; that kernel's agent finds the mark, ends the
//! step, and its `HELLO` tells stagebuild which kernel now runs. QEMU itself
//! reports nothing for a kexec.

use std::fs;
use std::path::Path;

use super::guest::{command_line, earlier_file};
use super::job::StepJob;
use super::shell::quote;
use crate::error::{IoContext, Result};
use crate::step::Kexec;

/// Where the hop's files sit in the guest, under the step's build directory.
const GUEST_DIR: &str = "/build/.stagebuild/kexec";

/// Copies the hop's kernel and initrd into the job's `.stagebuild/` and
/// returns the script that loads them.
pub fn prepare(job: &StepJob, hop: &Kexec, meta: &Path) -> Result<String> {
    let dir = meta.join("kexec");
    fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    copy(&earlier_file(job, &hop.kernel)?, &dir.join("kernel"))?;
    if let Some(initrd) = &hop.initrd {
        copy(&earlier_file(job, initrd)?, &dir.join("initrd"))?;
    }
    let load = load_command(hop);
    Ok(format!(
        "set -e\necho '=== stagebuild: kexec ==='\necho 'running:' $(uname -m) $(uname -r)\n\
         echo 'loading {kernel}'\nset -x\n{load}\n",
        kernel = hop.kernel
    ))
}

/// The command that loads the hop's kernel in the guest.
pub fn load_command(hop: &Kexec) -> String {
    let mut load = format!("kexec -l {GUEST_DIR}/kernel");
    if hop.initrd.is_some() {
        load.push_str(&format!(" --initrd={GUEST_DIR}/initrd"));
    }
    let append = command_line(&hop.append);
    load.push_str(&format!(" --append={}", quote(&append)));
    load
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .io_context(|| format!("copying {} into the job", from.display()))
}
