//! Walking and changing a tree that holds untrusted symlinks (a step's
//! output), one name at a time from an open directory: every call names a
//! single entry of a directory held open, with `O_NOFOLLOW` or its `*at`
//! equivalent, so no symlink anywhere in the tree is ever followed. Hashing
//! a checkpoint and merging outputs into a sysroot go through it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};

/// What an entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    fn of(stat: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// A directory held open.
pub struct OpenDir {
    fd: OwnedFd,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl OpenDir {
    /// Opens the top of a tree; `path` itself is trusted (the caller made it).
    pub fn open(path: &Path) -> io::Result<OpenDir> {
        let fd = nix::fcntl::open(path, DIR_FLAGS.difference(OFlag::O_NOFOLLOW), Mode::empty())?;
        Ok(OpenDir { fd })
    }

    /// The names in this directory, sorted bytewise, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // A description of its own, so listing never moves another's offset.
        let fd = openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(std::os::unix::ffi::OsStringExt::from_vec(name));
            }
        }
        names.sort();
        Ok(names)
    }

    /// The entry `name`'s metadata, not following it.
    pub fn stat(&self, name: &OsStr) -> io::Result<(Kind, FileStat)> {
        let stat = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok((Kind::of(&stat), stat))
    }

    /// The subdirectory `name`; fails if it is a symlink.
    pub fn dir(&self, name: &OsStr) -> io::Result<OpenDir> {
        Ok(OpenDir {
            fd: openat(&self.fd, name, DIR_FLAGS, Mode::empty())?,
        })
    }

    /// The file `name`, for reading; fails if it is a symlink.
    pub fn file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(File::from(openat(&self.fd, name, flags, Mode::empty())?))
    }

    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        Ok(readlinkat(&self.fd, name)?.into())
    }

    /// Creates the directory `name` (0755 before the umask).
    pub fn mkdir(&self, name: &OsStr) -> io::Result<()> {
        Ok(mkdirat(&self.fd, name, Mode::from_bits_truncate(0o755))?)
    }

    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        Ok(symlinkat(target, &self.fd, name)?)
    }

    /// Makes `name` here a hard link to `from`'s entry `from_name` itself
    /// (a symlink is linked, not followed).
    pub fn hard_link(&self, from: &OpenDir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        Ok(linkat(
            &from.fd,
            from_name,
            &self.fd,
            name,
            AtFlags::empty(),
        )?)
    }

    /// Removes the entry `name`, and everything below it if it is a directory.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)?.0 {
            Kind::Dir => {
                let dir = self.dir(name)?;
                for child in dir.names()? {
                    dir.remove(&child)?;
                }
                Ok(unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir)?)
            }
            _ => Ok(unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)?),
        }
    }

    /// What is at `name`, or `None` if nothing is.
    pub fn kind(&self, name: &OsStr) -> io::Result<Option<Kind>> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Kind::of(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn nothing_is_followed_out_of_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, outside) = (dir.path().join("tree"), dir.path().join("outside"));
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        symlink(&outside, tree.join("out")).unwrap();
        symlink(outside.join("secret"), tree.join("secret")).unwrap();
        let top = OpenDir::open(&tree).unwrap();
        assert_eq!(top.names().unwrap(), ["out", "secret", "sub"]);
        assert_eq!(top.kind(OsStr::new("out")).unwrap(), Some(Kind::Symlink));
        assert!(top.dir(OsStr::new("out")).is_err());
        assert!(top.file(OsStr::new("secret")).is_err());
        assert_eq!(top.read_link(OsStr::new("out")).unwrap(), outside);
        // Removing a link, or a directory holding one, leaves its target.
        std::fs::create_dir(tree.join("sub/deeper")).unwrap();
        symlink(&outside, tree.join("sub/deeper/out")).unwrap();
        top.remove(OsStr::new("sub")).unwrap();
        top.remove(OsStr::new("out")).unwrap();
        assert_eq!(top.names().unwrap(), ["secret"]);
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s");
    }
}
