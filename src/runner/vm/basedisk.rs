//! A guest's base disk: an ext4 image of the outputs of the stages before
//! the guest, which the overlay of its first step sits on.
//!
//! The same outputs always give the same bytes: a fixed UUID, hash seed and
//! clock, no host xattrs, and every inode's owner and times set to fixed
//! values. So a checkpoint keeps only the disk's sha256, not a second copy of
//! the earlier trees, and a resume makes the disk again and checks that it is
//! the one the overlays were made on. Base disks live in `STATE/disks/` while a
//! run needs them and are removed when a run completes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::runner::RunnerError;
use crate::error::{IoContext, Result};
use crate::fsutil::{fresh_dir, link_tree, remove_tree};
use crate::runner::guest::{install_copy, own_dirs};
use crate::runner::tool::{dies_with_stagebuild, run_tool};

/// Every inode's atime, ctime and mtime, and the file system's own dates:
/// 1980-01-01, a fixed date rather than the time the disk was made.
const DISK_TIME: u64 = 315_532_800;
/// The file system's UUID and directory hash seed, fixed for the same reason.
const DISK_UUID: &str = "5f0c1b2e-8a3d-4e6f-9b7a-2c4d6e8f0a1b";
/// The first inode a new ext4 file system hands out; 1 to 10 are reserved
/// (2 is the root directory) and 11 is lost+found.
const FIRST_INODE: u64 = 12;

pub struct BaseDisks {
    /// `STATE/disks`; checkpoints are `STATE/checkpoints/KEY`.
    dir: PathBuf,
}

impl BaseDisks {
    pub fn new(state_root: &Path) -> BaseDisks {
        BaseDisks {
            dir: state_root.join("disks"),
        }
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.qcow2"))
    }

    /// The name by which an overlay in a checkpoint directory refers to the
    /// base disk, relative so that the state directory can move.
    pub fn name_from_checkpoint(sha256: &str) -> String {
        format!("../../disks/{sha256}.qcow2")
    }

    /// The sha256 of the base disk holding `trees` (merged in order) and the
    /// agent: `known` if that disk is here and intact, else that of a disk
    /// made now, which may differ from `known` if the trees did.
    pub fn ensure(
        &self,
        known: Option<&str>,
        trees: &[PathBuf],
        agent: &Path,
        size_mib: u32,
    ) -> Result<String> {
        if let Some(sha256) = known {
            let intact = crate::digest::file_sha256(&self.path(sha256))
                .is_ok_and(|(actual, _)| actual == sha256);
            if intact {
                return Ok(sha256.to_string());
            }
        }
        self.make(trees, agent, size_mib)
    }

    fn make(&self, trees: &[PathBuf], agent: &Path, size_mib: u32) -> Result<String> {
        let scratch = self.dir.join("tmp");
        let root = scratch.join("rootfs");
        // All of it, not just the root: mke2fs writes into an image file it
        // finds in place, so blocks it leaves alone would keep what a killed
        // make left there.
        fresh_dir(&scratch)?;
        for tree in trees {
            link_tree(tree, &root)?;
        }
        own_dirs(&root, &["proc", "sys", "dev", "tmp", "build", "stagebuild"])?;
        install_copy(agent, &root.join("stagebuild/agent"), 0o755)?;

        let raw = scratch.join("base.raw");
        // No journal: a disk whose step did not finish cleanly is thrown
        // away, never mounted again, and each step's overlay then holds only
        // the blocks its files changed, not a journal's worth. mke2fs copies
        // directories in sorted order, so only the values below and the
        // inode fields set afterwards could differ between two makes.
        run_tool(
            Command::new("mke2fs")
                .env("E2FSPROGS_FAKE_TIME", DISK_TIME.to_string())
                .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "root"])
                .args(["-U", DISK_UUID, "-E"])
                .arg(format!(
                    "hash_seed={DISK_UUID},no_copy_xattrs,root_owner=0:0"
                ))
                .arg("-d")
                .arg(&root)
                .arg(&raw)
                .arg(format!("{size_mib}M")),
        )?;
        remove_tree(&root)?;
        normalise_inodes(&raw, &scratch)?;

        // Not compressed: it is scratch, and qcow2 only to keep the whole
        // chain one format.
        let made = scratch.join("base.qcow2");
        run_tool(
            Command::new("qemu-img")
                .args(["convert", "-O", "qcow2"])
                .arg(&raw)
                .arg(&made),
        )?;
        fs::remove_file(&raw).io_context(|| format!("removing {}", raw.display()))?;
        let (sha256, _) = crate::digest::file_sha256(&made)
            .io_context(|| format!("reading {}", made.display()))?;
        let path = self.path(&sha256);
        fs::rename(&made, &path).io_context(|| format!("renaming into {}", path.display()))?;
        remove_tree(&scratch)?;
        Ok(sha256)
    }

    /// Removes every base disk: a completed run needs none, and the next run
    /// that boots a guest makes its own.
    pub fn clear(&self) -> Result<()> {
        remove_tree(&self.dir)
    }
}

/// Sets the owner and times of every inode mke2fs filled: it copies them
/// from the host, where ctime and atime are whenever the files were linked
/// or read. A new file system hands out inodes in order, so those are the
/// root directory and `FIRST_INODE` up to the used count.
fn normalise_inodes(raw: &Path, scratch: &Path) -> Result<()> {
    let output = dies_with_stagebuild(&mut Command::new("dumpe2fs"))
        .arg("-h")
        .arg(raw)
        .output()
        .io_context(|| "running dumpe2fs (Debian: e2fsprogs)")?;
    let header = String::from_utf8_lossy(&output.stdout);
    let used = used_inodes(&header).ok_or_else(|| RunnerError::NoInodeCounts {
        image: raw.to_path_buf(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })?;
    let commands = scratch.join("normalise.debugfs");
    fs::write(&commands, debugfs_commands(used))
        .io_context(|| format!("writing {}", commands.display()))?;
    run_tool(
        Command::new("debugfs")
            .env("E2FSPROGS_FAKE_TIME", DISK_TIME.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&commands)
            .arg(raw),
    )
}

/// The number of inodes in use, from `dumpe2fs -h`: the inode count less
/// the free ones.
fn used_inodes(header: &str) -> Option<u64> {
    let field = |name: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    field("Inode count:")?.checked_sub(field("Free inodes:")?)
}

/// debugfs commands that give inodes 2 and `FIRST_INODE..=used` root as
/// owner and `DISK_TIME` as every date.
fn debugfs_commands(used: u64) -> String {
    let mut commands = String::new();
    for inode in std::iter::once(2).chain(FIRST_INODE..=used) {
        for (field, value) in [
            ("uid", 0),
            ("gid", 0),
            ("atime", DISK_TIME),
            ("ctime", DISK_TIME),
            ("mtime", DISK_TIME),
        ] {
            commands.push_str(&format!("set_inode_field <{inode}> {field} {value}\n"));
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_come_from_the_counts_in_the_header() {
        let header = "Filesystem volume name:   root\nInode count:              65536\nBlock count:              262144\nFree inodes:              63564\n";
        assert_eq!(used_inodes(header), Some(1972));
        assert_eq!(used_inodes("Inode count: 10\n"), None);
    }

    #[test]
    fn every_filled_inode_gets_fixed_owner_and_dates() {
        let commands = debugfs_commands(13);
        let inodes: Vec<&str> = commands
            .lines()
            .filter(|l| l.ends_with(" mtime 315532800"))
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(inodes, ["<2>", "<12>", "<13>"]);
        assert_eq!(commands.lines().count(), 15);
    }

    /// A make killed midway leaves its scratch image behind, and a tool that
    /// outlived it may have gone on writing there (the bytes below stand
    /// for that: no real tool does it on demand). The next make must not
    /// carry any of it into the disk: the first guest step's checkpoint
    /// recorded the clean disk's sha256, and a disk that differs would
    /// throw away every guest checkpoint.
    #[test]
    fn a_make_after_a_killed_one_gives_the_same_disk() {
        let scratch = tempfile::tempdir().unwrap();
        let tree = scratch.path().join("tree");
        fs::create_dir_all(tree.join("usr/bin")).unwrap();
        fs::write(tree.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
        let agent = scratch.path().join("agent");
        fs::write(&agent, "#!/bin/sh\n").unwrap();
        let disks = BaseDisks::new(&scratch.path().join("state"));
        let clean = disks
            .ensure(None, std::slice::from_ref(&tree), &agent, 16)
            .unwrap();
        disks.clear().unwrap();

        let leftovers = disks.dir.join("tmp");
        fs::create_dir_all(leftovers.join("rootfs/half-linked")).unwrap();
        fs::write(leftovers.join("base.raw"), vec![0x5a; 16 << 20]).unwrap();
        fs::write(leftovers.join("base.qcow2"), b"half a qcow2").unwrap();
        let again = disks
            .ensure(Some(&clean), std::slice::from_ref(&tree), &agent, 16)
            .unwrap();
        assert_eq!(again, clean);
    }

    /// Two disks made from copies of one tree, made at different times and
    /// read in between, are the same bytes. Needs e2fsprogs and qemu-utils.
    #[test]
    fn the_same_trees_make_the_same_disk() {
        let scratch = tempfile::tempdir().unwrap();
        let tree = scratch.path().join("tree");
        fs::create_dir_all(tree.join("usr/include/sys")).unwrap();
        fs::write(
            tree.join("usr/include/stdio.h"),
            "int printf(const char *, ...);\n",
        )
        .unwrap();
        fs::write(
            tree.join("usr/include/sys/types.h"),
            "typedef long ssize_t;\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("include", tree.join("usr/inc")).unwrap();
        let agent = scratch.path().join("agent");
        fs::write(&agent, "#!/bin/sh\n").unwrap();

        let first = BaseDisks::new(&scratch.path().join("first"));
        let a = first
            .ensure(None, std::slice::from_ref(&tree), &agent, 16)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let copy = scratch.path().join("copy");
        let status = Command::new("cp")
            .arg("-r")
            .arg(&tree)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        fs::read(copy.join("usr/include/stdio.h")).unwrap();
        let second = BaseDisks::new(&scratch.path().join("second"));
        let b = second
            .ensure(None, std::slice::from_ref(&copy), &agent, 16)
            .unwrap();
        assert_eq!(a, b);
        assert!(second.path(&b).is_file());

        // A known, intact disk is not made again; a changed tree gives another.
        assert_eq!(second.ensure(Some(&b), &[], &agent, 16).unwrap(), b);
        fs::write(
            copy.join("usr/include/stdio.h"),
            "int puts(const char *);\n",
        )
        .unwrap();
        let c = second.ensure(Some("0000"), &[copy], &agent, 16).unwrap();
        assert_ne!(c, b);
        second.clear().unwrap();
        assert!(!second.path(&b).exists());
    }
}
