//! File operations inside a directory whose contents are not trusted: a build
//! directory being unpacked, a step's output. Every path is resolved by the
//! kernel (`openat2` with `RESOLVE_BENEATH`) relative to the directory's own
//! descriptor, so whatever symlinks, `..` or absolute link targets the tree
//! holds, no operation reaches outside it. Writes go further and refuse a
//! symlink anywhere on the way (`RESOLVE_NO_SYMLINKS`): they land exactly
//! where they are named, or fail.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};

/// A directory, held open; every method takes paths relative to it.
pub struct Root {
    fd: OwnedFd,
}

/// Why a path was refused, if the kernel refused it for leaving the root
/// (`EXDEV`) or for a symlink on the way of a write (`ELOOP`).
pub fn refusal(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EXDEV) => Some("resolves outside the directory"),
        Some(Errno::ELOOP) => Some("goes through a symlink"),
        _ => None,
    }
}

/// The path the kernel knows an open file by: it has no symlinks in it.
fn fd_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(fd);
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

impl Root {
    /// Opens `path` itself (trusted: the caller made it) as the root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    fn open2(&self, rel: &Path, flags: OFlag, follow: bool) -> io::Result<OwnedFd> {
        let mut resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !follow {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve);
        Ok(openat2(&self.fd, rel, how)?)
    }

    /// Opens `rel`, following only symlinks that stay inside the root; one
    /// that leads out fails with `EXDEV`.
    pub fn resolve(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open2(rel, OFlag::O_PATH, true)
    }

    /// Where `rel` really is, following only symlinks that stay inside: a
    /// path with no symlinks in it, safe to hand to a tool that follows links.
    pub fn real_path(&self, rel: &Path) -> io::Result<PathBuf> {
        fd_path(&self.resolve(rel)?)
    }

    /// Where the regular file `rel` really is (see [`Root::real_path`]).
    pub fn real_file(&self, rel: &Path) -> io::Result<PathBuf> {
        let fd = self.resolve(rel)?;
        let st = nix::sys::stat::fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        fd_path(&fd)
    }

    /// Opens the file `rel` for reading; refuses a symlink on the way.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(self.open2(rel, OFlag::O_RDONLY, false)?))
    }

    /// Opens directory `rel`, creating it and its parents as needed; refuses
    /// a symlink anywhere on the way.
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        match self.open2(rel, flags, false) {
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => {}
            done => return done,
        }
        let mut current = self.open2(Path::new("."), flags, false)?;
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain relative path",
                ));
            };
            match mkdirat(&current, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let how = OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            current = openat2(&current, name, how)?;
        }
        Ok(current)
    }

    /// The directory holding `rel` (created if `create`) and `rel`'s name.
    fn parent<'p>(&self, rel: &'p Path, create: bool) -> io::Result<(OwnedFd, &'p OsStr)> {
        let name = match rel.components().next_back() {
            Some(Component::Normal(name)) => name,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain relative path",
                ));
            }
        };
        let dir = rel.parent().unwrap_or(Path::new(""));
        let fd = if create {
            self.create_dir_all(dir)?
        } else {
            self.open2(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, false)?
        };
        Ok((fd, name))
    }

    /// Makes room for a new entry `name` in `dir`: a file or symlink already
    /// there is removed (a later archive member replaces an earlier one); a
    /// directory is not.
    fn clear(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory of that name is already there",
                ))
            }
            Ok(_) => Ok(unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?),
        }
    }

    /// Creates the file `rel` (replacing a file or symlink of that name) with
    /// permissions `mode`, for writing.
    pub fn create_file(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let (dir, name) = self.parent(rel, true)?;
        Self::clear(&dir, name)?;
        // One plain name, O_EXCL and O_NOFOLLOW: nothing to follow anywhere.
        let fd = openat(
            &dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let file = File::from(fd);
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(file)
    }

    /// Removes `rel` if it is a symlink (itself, not what it points to).
    pub fn remove_symlink(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel, false)?;
        let st = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(())
    }

    /// Creates the directory `rel` if it is not there, and sets its mode.
    pub fn create_dir(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let fd = self.create_dir_all(rel)?;
        Ok(nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))?)
    }

    /// Creates the symlink `rel` pointing at `target` (replacing a file or
    /// symlink of that name). The target is stored as given, never followed.
    pub fn symlink(&self, target: &Path, rel: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel, true)?;
        Self::clear(&dir, name)?;
        Ok(symlinkat(target, &dir, name)?)
    }

    /// Sets the times of `rel` itself, not of what it points to.
    pub fn set_mtime(&self, rel: &Path, seconds: i64) -> io::Result<()> {
        let (dir, name) = self.parent(rel, false)?;
        let time = nix::sys::time::TimeSpec::new(seconds, 0);
        Ok(nix::sys::stat::utimensat(
            &dir,
            name,
            &time,
            &time,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?)
    }

    /// Makes `rel` a hard link to the regular file `existing`, both inside.
    pub fn hard_link(&self, existing: &Path, rel: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing, false)?;
        let st = fstatat(&from_dir, from_name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let (dir, name) = self.parent(rel, true)?;
        Self::clear(&dir, name)?;
        Ok(linkat(&from_dir, from_name, &dir, name, AtFlags::empty())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `root/` inside `dir`, with `root/a -> .`, `root/b -> a/..` (the
    /// parent, through the two), and `dir/outside`.
    fn chained() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        symlink(".", dir.path().join("root/a")).unwrap();
        symlink("a/..", dir.path().join("root/b")).unwrap();
        symlink("inner", dir.path().join("root/in")).unwrap();
        std::fs::create_dir(dir.path().join("root/inner")).unwrap();
        let root = Root::open(&dir.path().join("root")).unwrap();
        (dir, root)
    }

    #[test]
    fn nothing_resolves_out_through_a_chain_of_links() {
        let (dir, root) = chained();
        let e = root.resolve(Path::new("b/outside")).unwrap_err();
        assert_eq!(refusal(&e), Some("resolves outside the directory"));
        let e = root.resolve(Path::new("b")).unwrap_err();
        assert_eq!(refusal(&e), Some("resolves outside the directory"));
        // Links that stay inside are followed.
        assert_eq!(
            root.real_path(Path::new("in")).unwrap(),
            dir.path().join("root/inner").canonicalize().unwrap()
        );
        assert_eq!(
            root.real_path(Path::new("a/a/in")).unwrap(),
            dir.path().join("root/inner").canonicalize().unwrap()
        );
        // A kernel named through a link: found inside, refused outside.
        std::fs::write(dir.path().join("outside/secret"), "s").unwrap();
        std::fs::write(dir.path().join("root/inner/bzImage"), "k").unwrap();
        symlink("../inner/bzImage", dir.path().join("root/inner/vmlinuz")).unwrap();
        symlink("../b/outside/secret", dir.path().join("root/inner/leak")).unwrap();
        assert_eq!(
            root.real_file(Path::new("in/vmlinuz")).unwrap(),
            dir.path()
                .join("root/inner/bzImage")
                .canonicalize()
                .unwrap()
        );
        let e = root.real_file(Path::new("inner/leak")).unwrap_err();
        assert_eq!(refusal(&e), Some("resolves outside the directory"));
        assert!(root.real_file(Path::new("inner")).is_err());
        let e = root.open_file(Path::new("inner/vmlinuz")).unwrap_err();
        assert_eq!(refusal(&e), Some("goes through a symlink"));
    }

    #[test]
    fn writes_refuse_any_symlink_on_the_way() {
        let (dir, root) = chained();
        for rel in ["b/outside/x", "a/x", "in/x"] {
            let e = root.create_file(Path::new(rel), 0o644).unwrap_err();
            assert_eq!(refusal(&e), Some("goes through a symlink"), "{rel}");
            let e = root.symlink(Path::new("t"), Path::new(rel)).unwrap_err();
            assert_eq!(refusal(&e), Some("goes through a symlink"), "{rel}");
            let e = root.create_dir_all(Path::new(rel)).unwrap_err();
            assert_eq!(refusal(&e), Some("goes through a symlink"), "{rel}");
        }
        assert!(root.create_file(Path::new("../x"), 0o644).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join("outside"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("root/inner"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_symlink_in_the_way_is_replaced_not_followed() {
        let (dir, root) = chained();
        std::fs::write(dir.path().join("outside/victim"), "keep").unwrap();
        symlink("../outside/victim", dir.path().join("root/f")).unwrap();
        use std::io::Write;
        root.create_file(Path::new("f"), 0o644)
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("outside/victim")).unwrap(),
            b"keep"
        );
        assert_eq!(std::fs::read(dir.path().join("root/f")).unwrap(), b"new");
        // A hard link to a symlink is refused: it is not a regular file.
        symlink("../outside/victim", dir.path().join("root/g")).unwrap();
        assert!(root.hard_link(Path::new("g"), Path::new("h")).is_err());
        root.hard_link(Path::new("f"), Path::new("inner/h"))
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("root/inner/h")).unwrap(),
            b"new"
        );
    }
}
