//! A host step's build directory. An audit can make it list directory
//! entries in another order than the original build saw, so that a build
//! which depends on readdir order shows up as a difference.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::runner::RunnerError;
use crate::error::{IoContext, Result};
use crate::fsutil::fresh_dir;

/// How an audit changes the order in which directories list their entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOrder {
    /// The build directory is a fresh ext4 file system on a loop device.
    /// ext4 lists a directory in the order of its names' hashes, and the
    /// hash is seeded per file system, so a new seed reorders every
    /// directory. The build runs at native speed. Needs root and loop
    /// devices.
    HashSeed,
    /// The build directory is seen through disorderfs, a FUSE file system
    /// that shuffles each listing afresh. Needs no root, but every file
    /// access crosses FUSE: a kernel build takes about 1.6 times as long.
    Disorderfs,
}

impl DirOrder {
    /// Whether this machine can apply it; if not, why and what to install.
    pub fn check(self) -> std::result::Result<(), &'static str> {
        match self {
            DirOrder::HashSeed => {
                if !nix::unistd::geteuid().is_root() {
                    return Err("an ext4 with its own hash seed needs root (to mount it)");
                }
                if !Path::new("/dev/loop-control").exists() {
                    return Err(
                        "an ext4 with its own hash seed needs loop devices (/dev/loop-control is missing)",
                    );
                }
                if !runs("mke2fs", "-V") {
                    return Err("mke2fs is missing (Debian: e2fsprogs)");
                }
                Ok(())
            }
            DirOrder::Disorderfs => {
                if !runs("disorderfs", "--version") {
                    return Err("disorderfs is missing (Debian: disorderfs)");
                }
                if !Path::new("/dev/fuse").exists() {
                    return Err("disorderfs needs /dev/fuse");
                }
                Ok(())
            }
        }
    }

    /// What it does, for the audit report.
    pub fn describe(self) -> &'static str {
        match self {
            DirOrder::HashSeed => {
                "directory order: each build directory on a fresh ext4 with its own hash seed, so every directory lists in another order"
            }
            DirOrder::Disorderfs => "directory order: shuffled on every listing (disorderfs)",
        }
    }
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The hash seed of a step's audit file system, derived from its cache key
/// so that an audit finding repeats when the audit is run again.
pub fn hash_seed(key: &str) -> String {
    let hex =
        crate::digest::hex_sha256(format!("stagebuild audit directory order\n{key}").as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// mke2fs making `image` an ext4 whose directories list in the order
/// `seed` gives them (no journal, no reserved blocks: a build's scratch).
pub fn mke2fs_seeded(image: &Path, seed: &str) -> Command {
    let mut mke2fs = Command::new("mke2fs");
    mke2fs
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-m",
            "0",
            "-E",
        ])
        .arg(format!("hash_seed={seed},lazy_itable_init=1"))
        .arg(image);
    mke2fs
}

/// `work/build`, where a step's sources are unpacked and it is built,
/// with whatever an audit mounted for it. Dropping it unmounts them.
pub struct BuildDir {
    path: PathBuf,
    /// The disorderfs view the build sees instead of `path`, if any.
    view: Option<PathBuf>,
    order: Option<DirOrder>,
    /// The ext4 image mounted at `path`, if any.
    image: Option<PathBuf>,
}

impl BuildDir {
    /// Creates an empty `work/build`. With [`DirOrder::HashSeed`] it is a
    /// fresh ext4 seeded from `key`; the returned note says so, for the log.
    pub fn create(
        work: &Path,
        order: Option<DirOrder>,
        key: &str,
    ) -> Result<(BuildDir, Option<String>)> {
        let path = work.join("build");
        fresh_dir(&path)?;
        let mut dir = BuildDir {
            path,
            view: None,
            order,
            image: None,
        };
        let note = match order {
            Some(DirOrder::HashSeed) => {
                let seed = hash_seed(key);
                dir.mount_ext4(&work.join("build.ext4"), &seed)?;
                Some(format!(
                    "build directory: a fresh ext4 with hash seed {seed}"
                ))
            }
            Some(DirOrder::Disorderfs) => Some("build directory: seen through disorderfs".into()),
            None => None,
        };
        Ok((dir, note))
    }

    /// Where the sources go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the build runs in, once the sources are in place.
    /// With [`DirOrder::Disorderfs`] that is a shuffling view of [`path`].
    ///
    /// [`path`]: BuildDir::path
    pub fn show(&mut self) -> Result<PathBuf> {
        if self.order != Some(DirOrder::Disorderfs) {
            return Ok(self.path.clone());
        }
        let view = self.path.with_file_name("build-shuffled");
        fs::create_dir_all(&view).io_context(|| format!("creating {}", view.display()))?;
        let status = Command::new("disorderfs")
            .args(["--shuffle-dirents=yes", "--multi-user=yes", "--quiet"])
            // Every write to the tree goes through this mount, so the kernel
            // may cache names, attributes and pages without going stale; that
            // makes a kernel build under it about a third faster. Directory
            // listings are not cached: each one is shuffled afresh.
            .args([
                "-o",
                "entry_timeout=3600,attr_timeout=3600,negative_timeout=3600,kernel_cache,big_writes",
            ])
            .arg(&self.path)
            .arg(&view)
            .stdout(Stdio::null())
            .status()
            .io_context(|| "running disorderfs (Debian: apt-get install disorderfs)")?;
        if !status.success() {
            return Err(RunnerError::Disorderfs {
                dir: self.path.clone(),
            }
            .into());
        }
        self.view = Some(view.clone());
        Ok(view)
    }

    /// A sparse image as large as the free space beside it (the build can
    /// use no more anyway, and only what it writes takes space), without a
    /// journal (nothing in it outlives the step), with the hash seed given.
    fn mount_ext4(&mut self, image: &Path, seed: &str) -> Result<()> {
        let parent = image.parent().unwrap_or(Path::new("."));
        let free = nix::sys::statvfs::statvfs(parent)
            .map(|s| s.blocks_available() * s.fragment_size())
            .map_err(|source| RunnerError::FreeSpace {
                dir: parent.to_path_buf(),
                source,
            })?;
        // At most 1 TiB: more is no build directory, and ext4 hosts cap a
        // file at 16 TiB.
        let size = free.clamp(1 << 30, 1 << 40);
        let file =
            fs::File::create(image).io_context(|| format!("creating {}", image.display()))?;
        file.set_len(size)
            .io_context(|| format!("sizing {}", image.display()))?;
        drop(file);
        let made = mke2fs_seeded(image, seed)
            .stdout(Stdio::null())
            .output()
            .io_context(|| "running mke2fs (Debian: apt-get install e2fsprogs)")?;
        if !made.status.success() {
            return Err(RunnerError::Mke2fs {
                image: image.to_path_buf(),
                stderr: String::from_utf8_lossy(&made.stderr).trim().to_string(),
            }
            .into());
        }
        self.image = Some(image.to_path_buf());
        // noinit_itable: the kernel would otherwise spend the build zeroing
        // inode tables in the background, filling the sparse image.
        let mounted = Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,noinit_itable"])
            .arg(image)
            .arg(&self.path)
            .output()
            .io_context(|| "running mount")?;
        if !mounted.status.success() {
            return Err(RunnerError::LoopMount {
                image: image.to_path_buf(),
                stderr: String::from_utf8_lossy(&mounted.stderr).trim().to_string(),
            }
            .into());
        }
        // Only the step's own files belong in its build directory.
        fs::remove_dir(self.path.join("lost+found"))
            .io_context(|| format!("removing lost+found from {}", self.path.display()))
    }

    /// Unmounts what was mounted and empties the build directory.
    pub fn remove(mut self) -> Result<()> {
        self.unmount();
        if let Some(image) = self.image.take() {
            fs::remove_file(&image).io_context(|| format!("removing {}", image.display()))?;
        }
        fresh_dir(&self.path)
    }

    fn unmount(&mut self) {
        if let Some(view) = self.view.take() {
            let _ = Command::new("fusermount").arg("-u").arg(&view).status();
        }
        if self.image.is_some() {
            // Detached lazily: a process the step left behind may still hold
            // a file open. The loop device frees itself once nothing does.
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_seeds_are_uuids_that_follow_the_key() {
        let seed = hash_seed("abc");
        assert_eq!(seed, hash_seed("abc"));
        assert_ne!(seed, hash_seed("abd"));
        let groups: Vec<usize> = seed.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(seed.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }
}
