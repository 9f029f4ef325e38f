//! Small filesystem helpers for crash-safe writes.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::opendir::{Kind, OpenDir};

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// new one: a temporary file in the same directory, fsync, rename, fsync dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic_write needs a file path with a parent");
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .io_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .io_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .io_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("syncing {}", dir.display()))
}

/// Removes a directory tree if it exists.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).io_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Empties `path`, creating it if needed.
pub fn fresh_dir(path: &Path) -> Result<()> {
    remove_tree(path)?;
    fs::create_dir_all(path).io_context(|| format!("creating {}", path.display()))
}

/// Merges the tree `src` into `dst` with hard links, later trees winning on
/// conflicts. Used to show earlier steps' outputs as one sysroot without
/// copying them; the sandbox mounts the result read-only. `src` is a step's
/// output and may hold any symlinks: they are copied as links, and neither
/// tree is ever walked through one ([`OpenDir`]).
pub fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).io_context(|| format!("creating {}", dst.display()))?;
    let from = OpenDir::open(src).io_context(|| format!("reading {}", src.display()))?;
    let to = OpenDir::open(dst).io_context(|| format!("reading {}", dst.display()))?;
    merge(&from, &to, dst)
}

fn merge(from: &OpenDir, to: &OpenDir, shown: &Path) -> Result<()> {
    for name in from
        .names()
        .io_context(|| format!("reading the tree merged into {}", shown.display()))?
    {
        let here = shown.join(&name);
        let failed = || format!("linking {}", here.display());
        let (kind, _) = from.stat(&name).io_context(failed)?;
        let existing = to.kind(&name).io_context(failed)?;
        if existing.is_some() && !(kind == Kind::Dir && existing == Some(Kind::Dir)) {
            to.remove(&name)
                .io_context(|| format!("replacing {}", here.display()))?;
        }
        match kind {
            Kind::Dir => {
                if existing != Some(Kind::Dir) {
                    to.mkdir(&name).io_context(failed)?;
                }
                let (sub_from, sub_to) = (from.dir(&name), to.dir(&name));
                merge(
                    &sub_from.io_context(failed)?,
                    &sub_to.io_context(failed)?,
                    &here,
                )?;
            }
            Kind::Symlink => {
                let target = from.read_link(&name).io_context(failed)?;
                to.symlink(&target, &name).io_context(failed)?;
            }
            Kind::File | Kind::Other => to.hard_link(from, &name, &name).io_context(failed)?,
        }
    }
    Ok(())
}

/// Detaches every mount at or below `path`, deepest first. An audit killed
/// during a rebuild leaves the build directory's ext4 or disorderfs mount
/// behind, and nothing under it can be removed until it is gone.
pub fn detach_mounts_under(path: &Path) -> Result<()> {
    let Ok(path) = path.canonicalize() else {
        return Ok(()); // nothing is mounted under a path that does not exist
    };
    let info =
        fs::read_to_string("/proc/self/mountinfo").io_context(|| "reading /proc/self/mountinfo")?;
    let mut points = mounts_under(&info, &path);
    points.sort_by(|a, b| b.cmp(a));
    for point in points {
        let detached = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH).is_ok()
            || std::process::Command::new("fusermount")
                .arg("-u")
                .arg("-z")
                .arg(&point)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !detached {
            return Err(crate::error::Error::Host {
                context: format!("{} is still mounted", point.display()),
                problem: "it was left by a run that was killed? It could not be detached; unmount it with `fusermount -u -z`".into(),
            });
        }
    }
    Ok(())
}

/// The mount points in `/proc/self/mountinfo` text that are `path` or lie
/// below it. The fifth field is the mount point, with space, tab, newline
/// and backslash written as octal escapes.
fn mounts_under(mountinfo: &str, path: &Path) -> Vec<std::path::PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| std::path::PathBuf::from(unescape_octal(field)))
        .filter(|point| point.starts_with(path))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escape {
            Some(digits) => {
                let code = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                out.push(code as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_a_path_are_found_with_their_escapes_undone() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /state/audit/t/hello/build-shuffled rw - fuse.disorderfs disorderfs rw
91 22 0:51 / /state/audit/t/my\\040step/build rw - fuse.disorderfs disorderfs rw
92 22 0:52 / /state/auditor rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_under(info, Path::new("/state/audit")),
            [
                Path::new("/state/audit/t/hello/build-shuffled"),
                Path::new("/state/audit/t/my step/build"),
            ]
        );
        assert!(mounts_under(info, Path::new("/elsewhere")).is_empty());
    }

    #[test]
    fn merging_and_removing_trees_never_follows_their_links() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/keep"), "keep").unwrap();
        let (first, second, merged) = (
            dir.path().join("first"),
            dir.path().join("second"),
            dir.path().join("merged"),
        );
        // The first tree's `lib` leads out; the second has files under `lib/`
        // and replaces `keep` through a chain that leads out too.
        fs::create_dir_all(&first).unwrap();
        symlink(&outside, first.join("lib")).unwrap();
        symlink(".", first.join("a")).unwrap();
        symlink("a/../outside/sub", first.join("up")).unwrap();
        fs::create_dir_all(second.join("lib")).unwrap();
        fs::write(second.join("lib/libc.a"), "new").unwrap();
        fs::create_dir_all(second.join("up")).unwrap();
        fs::write(second.join("up/keep"), "replaced").unwrap();
        link_tree(&first, &merged).unwrap();
        link_tree(&second, &merged).unwrap();
        assert!(fs::symlink_metadata(merged.join("lib")).unwrap().is_dir());
        assert_eq!(fs::read(merged.join("up/keep")).unwrap(), b"replaced");
        assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        // Removing a tree removes its links, not what they point to.
        link_tree(&first, &merged.join("again")).unwrap();
        remove_tree(&merged).unwrap();
        fresh_dir(&first).unwrap();
        assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(outside.join("sub")).unwrap().count(), 1);
    }
}
