//! What the two ways of running a guest stage share: `run --guest qemu`
//! boots each step on a disk ([`super::vm`]), `run --guest sandbox` runs it
//! in the host sandbox on the same files ([`super::guest_sandbox`]). Both give
//! the same output trees under the same keys, so a checkpoint of either is a
//! checkpoint of the other, as far as its tree goes.

use std::fs;
use std::path::{Path, PathBuf};

use super::job::{Earlier, StepJob};
use crate::checkpoint::Meta;
use crate::error::runner::RunnerError;
use crate::error::{IoContext, Result};
use crate::fsutil::remove_tree;
use crate::target::VmSettings;

/// The file of a qemu-built checkpoint that holds its step's disk overlay.
pub const DISK: &str = "disk.qcow2";
/// The file in a guest step's checkpoint naming the kernel its guest ended
/// in, as the agent announced it (`uname -m` and `uname -r`).
pub const KERNEL: &str = "kernel";

/// The kernel command line: the console stagebuild reads, then the target's.
/// Not `quiet`: the console log is a file, and a panic's backtrace is what
/// its last lines are shown for.
pub fn command_line(append: &str) -> String {
    format!("console=ttyS0 panic=-1 {append}")
        .trim_end()
        .to_string()
}

/// A step's file from an earlier step's output: `STEP:PATH`.
pub fn earlier_file(job: &StepJob, reference: &str) -> Result<PathBuf> {
    let (step, path) = VmSettings::file_ref(reference).expect("checked when the target was loaded");
    let earlier: &Earlier =
        job.earlier
            .iter()
            .find(|e| e.id == step)
            .ok_or_else(|| RunnerError::NotRunBefore {
                reference: reference.to_string(),
                step: step.to_string(),
            })?;
    // Handed to qemu and copied into the job: a link in the output that
    // leads out of it must not carry a host file along.
    crate::beneath::Root::open(&earlier.tree())
        .and_then(|tree| tree.real_file(Path::new(path)))
        .map_err(|e| {
            let (reference, step, path) = (reference.to_string(), step.to_string(), path.into());
            match crate::beneath::refusal(&e) {
                Some(_) => RunnerError::LeadsOutside {
                    reference,
                    step,
                    path,
                },
                None => RunnerError::NotInOutput {
                    reference,
                    step,
                    path,
                },
            }
            .into()
        })
}

/// How the guest steps of a run are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestMode {
    /// A qemu guest per step, booted on the previous step's disk.
    Qemu,
    /// The host's sandbox and kernel, on a root linked from the earlier
    /// outputs.
    Sandbox,
}

impl std::fmt::Display for GuestMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestMode::Qemu => "qemu",
            GuestMode::Sandbox => "sandbox",
        })
    }
}

/// How the step of a checkpoint ran, for a step of a VM stage: a qemu-built
/// checkpoint keeps its disk overlay, a sandbox-built one only its tree.
pub fn built_in(meta: &Meta) -> Option<GuestMode> {
    if meta.runner != crate::target::RunnerKind::Vm.to_string() {
        return None;
    }
    Some(if meta.extras.contains_key(DISK) {
        GuestMode::Qemu
    } else {
        GuestMode::Sandbox
    })
}

/// [`built_in`] for the checkpoint in `dir`, if there is one that reads.
pub fn built_in_dir(dir: &Path) -> Option<GuestMode> {
    let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
    built_in(&meta)
}

/// What a qemu step's root disk is an overlay on.
pub enum Backing<'a> {
    /// The disk of the step before it in the same guest.
    Overlay(&'a Earlier),
    /// A base disk made from these output trees, merged in order.
    Base(Vec<PathBuf>),
}

/// The disk a qemu step of the guest `settings` starts from: the previous
/// step's in that guest, if it was built in qemu. If that step was built in
/// the sandbox it left no disk, and the guest's root is then what the agent
/// would have made of it: every earlier output, in order, on a base disk.
/// For the guest's first step that is the earlier stages' outputs.
pub fn backing<'a>(earlier: &'a [Earlier], settings: &VmSettings) -> Backing<'a> {
    let previous = earlier
        .iter()
        .rev()
        .find(|e| e.machine.as_ref() == Some(&settings.machine));
    match previous {
        Some(previous) if previous.dir.join(DISK).is_file() => Backing::Overlay(previous),
        _ => Backing::Base(root_trees(earlier)),
    }
}

/// The trees a guest step's root holds: every earlier output, in order. In
/// the guest the first step's base disk holds those of the earlier stages,
/// and the agent copies each step's output into the root after it succeeds.
pub fn root_trees(earlier: &[Earlier]) -> Vec<PathBuf> {
    earlier.iter().map(Earlier::tree).collect()
}

/// Makes each of `dirs` (relative, parents first) a directory of `root`
/// itself. `root` is linked from output trees, and an output may hold one of
/// these names as a link or a file: that entry is replaced, never followed,
/// so nothing is made outside the root.
pub fn own_dirs(root: &Path, dirs: &[&str]) -> Result<()> {
    for dir in dirs {
        let path = root.join(dir);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&path).io_context(|| format!("replacing {}", path.display()))?;
        }
        fs::create_dir_all(&path).io_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// Copies `file` to `to` with `mode`, replacing whatever is there: in a root
/// linked from output trees that may be a hard link to a checkpoint's own
/// file, which a plain copy would write into, or a link out of the root.
pub fn install_copy(file: &Path, to: &Path, mode: u32) -> Result<()> {
    match fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => remove_tree(to)?,
        Ok(_) => fs::remove_file(to).io_context(|| format!("replacing {}", to.display()))?,
        Err(_) => {}
    }
    fs::copy(file, to).io_context(|| format!("copying {}", file.display()))?;
    fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .io_context(|| format!("setting the mode of {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn earlier(dir: &Path, id: &str, machine: Option<&str>, disk: bool) -> Earlier {
        let dir = dir.join(id);
        fs::create_dir_all(dir.join("tree")).unwrap();
        if disk {
            fs::write(dir.join(DISK), b"qcow2").unwrap();
        }
        Earlier {
            id: id.into(),
            stage: machine.unwrap_or("host").into(),
            machine: machine.map(str::to_string),
            dir,
        }
    }

    fn settings() -> VmSettings {
        VmSettings {
            kernel: "k:boot/bzImage".into(),
            initrd: None,
            memory: 512,
            disk: 1024,
            boot_timeout: 1,
            step_timeout: 1,
            append: String::new(),
            machine: "vm32".into(),
        }
    }

    #[test]
    fn a_qemu_step_continues_the_last_disk_or_starts_from_every_earlier_tree() {
        let scratch = tempfile::tempdir().unwrap();
        let host = earlier(scratch.path(), "musl", None, false);
        let first = earlier(scratch.path(), "bzip2", Some("vm32"), true);
        let sandboxed = earlier(scratch.path(), "check", Some("vm32"), false);
        let trees = |list: &[&Earlier]| list.iter().map(|e| e.tree()).collect::<Vec<_>>();

        // The guest's first step: a base disk of the earlier stages.
        match backing(std::slice::from_ref(&host), &settings()) {
            Backing::Base(base) => assert_eq!(base, trees(&[&host])),
            Backing::Overlay(_) => panic!("no step of the guest ran yet"),
        }
        // After a qemu-built step: its disk.
        let list = [host.clone(), first.clone()];
        match backing(&list, &settings()) {
            Backing::Overlay(e) => assert_eq!(e.id, "bzip2"),
            Backing::Base(_) => panic!("bzip2 left a disk"),
        }
        // After a sandbox-built step: no disk to continue, so every tree.
        let list = [host.clone(), first.clone(), sandboxed.clone()];
        match backing(&list, &settings()) {
            Backing::Base(base) => assert_eq!(base, trees(&[&host, &first, &sandboxed])),
            Backing::Overlay(_) => panic!("check left no disk"),
        }
    }
}
