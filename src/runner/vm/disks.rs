//! The disks of one VM step: its root, a qcow2 overlay on the disk before
//! it; its job, the prepared build directory as a tar; and the disk the
//! agent writes the output tar to.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::basedisk::BaseDisks;
use crate::error::{IoContext, Result};
use crate::runner::builddir;
use crate::runner::guest::{Backing, DISK, GuestMode, backing};
use crate::runner::job::StepJob;
use crate::runner::tool::run_tool;
use crate::sandbox::Sandbox;
use crate::target::VmSettings;

/// The file in a VM step's checkpoint naming the sha256 of its overlay's backing disk.
pub const BACKING: &str = "backing.sha256";

/// The root disk of a step, made in its extras.
pub struct Root {
    pub disk: PathBuf,
    /// The backing file as the overlay names it once the step is done:
    /// relative, so the state directory can move.
    backing_relative: String,
}

/// Makes the step's root disk: an overlay on the disk of the previous step
/// in this guest, or on a new base disk made from the earlier outputs.
pub fn make_root(
    job: &StepJob,
    settings: &VmSettings,
    bases: &BaseDisks,
    agent: &Path,
) -> Result<Root> {
    let (backing, backing_relative) = match backing(&job.earlier, settings) {
        Backing::Overlay(e) => {
            let key = e
                .dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            (e.dir.join(DISK), format!("../{key}/{DISK}"))
        }
        Backing::Base(trees) => {
            let sha256 = bases.ensure(None, &trees, agent, settings.disk)?;
            (
                bases.path(&sha256),
                BaseDisks::name_from_checkpoint(&sha256),
            )
        }
    };
    // Which disk this overlay sits on, so a restore can tell whether that
    // disk is still the one underneath (see `VmRunner::fits`).
    let (backing_sha256, _) = crate::digest::file_sha256(&backing)
        .io_context(|| format!("reading {}", backing.display()))?;
    fs::write(job.extras().join(BACKING), backing_sha256)
        .io_context(|| "writing the overlay's backing checksum")?;
    // Small clusters: a step changes a few scattered blocks (inodes,
    // bitmaps, directories), and with qcow2's default 64 KiB clusters
    // each of them cost a whole cluster in the checkpoint.
    let disk = job.extras().join(DISK);
    run_tool(
        Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4096",
                "-F",
                "qcow2",
                "-b",
            ])
            .arg(&backing)
            .arg(&disk),
    )?;
    Ok(Root {
        disk,
        backing_relative,
    })
}

impl Root {
    /// Names the backing file relative to the overlay.
    pub fn detach(&self) -> Result<()> {
        run_tool(
            Command::new("qemu-img")
                .args(["rebase", "-u", "-F", "qcow2", "-b", &self.backing_relative])
                .arg(&self.disk),
        )
    }
}

/// The step as a tar: its prepared build directory, with the script and
/// environment the agent runs under `.stagebuild/`.
pub fn make_job(
    job: &StepJob,
    sandbox: &dyn Sandbox,
    max_unpacked: u64,
    cancel: &crate::cancel::Cancel,
) -> Result<PathBuf> {
    let tools = crate::buildtree::Tools {
        sandbox,
        max_unpacked,
        cancel,
    };
    let build = crate::runner::guest_job::prepare(job, &tools, GuestMode::Qemu)?;
    pack_job(job, &build)
}

/// The prepared build directory `build` as the job tar.
pub fn pack_job(job: &StepJob, build: &Path) -> Result<PathBuf> {
    let tar_path = job.work.join("job.tar");
    let file =
        fs::File::create(&tar_path).io_context(|| format!("creating {}", tar_path.display()))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", build)
        .and_then(|()| builder.into_inner()?.flush())
        .io_context(|| format!("writing {}", tar_path.display()))?;
    Ok(tar_path)
}

/// An empty raw disk of `size_mib` for the output tar.
pub fn make_out(job: &StepJob, size_mib: u32) -> Result<PathBuf> {
    let out_disk = job.work.join("out.raw");
    fs::File::create(&out_disk)
        .and_then(|f| f.set_len(u64::from(size_mib) << 20))
        .io_context(|| format!("creating {}", out_disk.display()))?;
    Ok(out_disk)
}

/// The disk an audit's guest builds on (serial [`crate::runner::guest_variation::SCRATCH_SERIAL`]): an
/// empty, sparse ext4 of `size_mib` whose hash seed follows the step's key,
/// so its directories list in another order than the root's, and the same
/// order when the audit is run again.
pub fn make_scratch(job: &StepJob, size_mib: u32) -> Result<PathBuf> {
    let disk = job.work.join("audit.ext4");
    fs::File::create(&disk)
        .and_then(|f| f.set_len(u64::from(size_mib) << 20))
        .io_context(|| format!("creating {}", disk.display()))?;
    let seed = builddir::hash_seed(&job.planned.key);
    run_tool(&mut builddir::mke2fs_seeded(&disk, &seed))?;
    Ok(disk)
}
