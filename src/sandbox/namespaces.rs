//! The sandbox without bubblewrap: stagebuild enters the namespaces itself.
//!
//! [`Namespaces::command`] re-executes stagebuild as `stagebuild sandbox-exec
//! --spec-json …`, whose [`enter`] does what bwrap does for us: new mount, PID,
//! network, UTS and IPC namespaces; an empty tmpfs root with the spec's mounts
//! applied in order and then made read-only; a new session; death with the
//! parent. It needs root: as a user, install bubblewrap.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, execve, fork, pivot_root, sethostname, setsid};

use super::{Mount, Sandbox, SandboxSpec};

pub struct Namespaces {
    /// stagebuild's own binary.
    pub exe: PathBuf,
}

impl Sandbox for Namespaces {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn command(&self, spec: &SandboxSpec) -> Vec<String> {
        vec![
            self.exe.to_string_lossy().into_owned(),
            "sandbox-exec".into(),
            "--spec-json".into(),
            serde_json::to_string(spec).expect("a spec serializes"),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("entering namespaces needs root; install bubblewrap to sandbox as a user")]
    NotRoot,
    #[error("{what} {path}: {errno}")]
    Sys {
        what: &'static str,
        path: String,
        errno: nix::errno::Errno,
    },
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("the command {0:?} must be an absolute path")]
    RelativeCommand(String),
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
}

fn sys(what: &'static str, path: &Path) -> impl FnOnce(nix::errno::Errno) -> NamespaceError {
    let path = path.display().to_string();
    move |errno| NamespaceError::Sys { what, path, errno }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NamespaceError {
    let path = path.display().to_string();
    move |error| NamespaceError::Io { what, path, error }
}

/// Where the host's root is seen while the new root is assembled.
const OLD: &str = "/oldroot";
/// Where the new root is assembled.
const NEW: &str = "/newroot";

/// Runs `spec` in fresh namespaces. On success it does not return: the
/// process exits with the command's status.
pub fn enter(spec: &SandboxSpec) -> Result<Infallible, NamespaceError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NamespaceError::NotRoot);
    }
    let argv = cstrings(&spec.argv)?;
    if !spec.argv.first().is_some_and(|a| a.starts_with('/')) {
        return Err(NamespaceError::RelativeCommand(
            spec.argv.first().cloned().unwrap_or_default(),
        ));
    }
    let env = cstrings(spec.env.iter().map(|(k, v)| format!("{k}={v}")))?;

    // Die with stagebuild, like bwrap's --die-with-parent.
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys("prctl", Path::new("/")))?;
    if nix::unistd::getppid() != parent {
        std::process::exit(1);
    }

    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(sys("unshare", Path::new("/")))?;
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("making private", Path::new("/")))?;

    // The parent holds the write end until it exits, so the child can tell
    // whether it died before PDEATHSIG was armed: the read end then hangs up.
    let (alive_r, alive_w) = nix::unistd::pipe().map_err(sys("pipe", Path::new("/")))?;
    // SAFETY: `sandbox-exec` is single-threaded, so the child may do anything.
    match unsafe { fork() }.map_err(sys("fork", Path::new("/")))? {
        // Outside the PID namespace: wait, and pass the status on. If this
        // process is killed, the child dies with it (PDEATHSIG below).
        ForkResult::Parent { child } => {
            drop(alive_r);
            let status = wait_for(child);
            drop(alive_w);
            exit_like(status)
        }
        ForkResult::Child => {
            // PID 1 of the new namespace: when it dies, the kernel kills the rest.
            drop(alive_w);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(sys("prctl", Path::new("/")))?;
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&alive_r),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
                std::process::exit(1);
            }
            let Err(e) = init(spec, &argv, &env);
            eprintln!("stagebuild sandbox: {e}");
            std::process::exit(127);
        }
    }
}

fn cstrings(
    items: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<Vec<CString>, NamespaceError> {
    items
        .into_iter()
        .map(|s| CString::new(s.as_ref()).map_err(|_| NamespaceError::Nul(s.as_ref().to_string())))
        .collect()
}

/// PID 1: builds the root, starts the command and reaps until it ends.
fn init(
    spec: &SandboxSpec,
    argv: &[CString],
    env: &[CString],
) -> Result<Infallible, NamespaceError> {
    setsid().map_err(sys("setsid", Path::new("/")))?;
    sethostname(&spec.hostname).map_err(sys("sethostname", Path::new(&spec.hostname)))?;
    build_root(&spec.mounts)?;
    nix::sys::stat::umask(Mode::from_bits_truncate(spec.umask));
    chdir(&spec.cwd).map_err(sys("chdir", &spec.cwd))?;

    // SAFETY: still single-threaded.
    match unsafe { fork() }.map_err(sys("fork", Path::new("/")))? {
        ForkResult::Child => {
            let errno = execve(&argv[0], argv, env).unwrap_err();
            eprintln!("stagebuild sandbox: exec {}: {errno}", spec.argv[0]);
            std::process::exit(127);
        }
        ForkResult::Parent { child } => loop {
            // Orphans are re-parented to us: reap them too, but exit with the command's status.
            match waitpid(None, None) {
                Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)))
                    if pid == child =>
                {
                    exit_like(status)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => std::process::exit(1),
            }
        },
    }
}

/// Assembles the new root: a tmpfs with the spec's mounts, made read-only,
/// then pivoted into. Host paths are reached through the old root.
fn build_root(mounts: &[Mount]) -> Result<(), NamespaceError> {
    let tmp = Path::new("/tmp");
    // A private tmpfs over /tmp holds both the new root and the old one.
    mount(
        Some("tmpfs"),
        tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(sys("mounting tmpfs on", tmp))?;
    for dir in ["oldroot", "newroot"] {
        fs::create_dir(tmp.join(dir)).map_err(io("creating", &tmp.join(dir)))?;
    }
    pivot_root(tmp, &tmp.join("oldroot")).map_err(sys("pivot_root to", tmp))?;
    chdir("/").map_err(sys("chdir", Path::new("/")))?;
    let new = Path::new(NEW);
    mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(sys("mounting tmpfs on", new))?;

    for m in mounts {
        apply(m)?;
    }

    // Make the new root the root, and drop the old one.
    chdir(new).map_err(sys("chdir", new))?;
    pivot_root(".", ".").map_err(sys("pivot_root to", new))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detaching the old root", Path::new("/")))?;
    chdir("/").map_err(sys("chdir", Path::new("/")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(sys("remounting read-only", Path::new("/")))
}

fn inside(root: &str, path: &Path) -> PathBuf {
    Path::new(root).join(path.strip_prefix("/").unwrap_or(path))
}

fn apply(m: &Mount) -> Result<(), NamespaceError> {
    match m {
        Mount::RoBind { src, dst } => bind(&inside(OLD, src), &inside(NEW, dst), true),
        Mount::Bind { src, dst } => bind(&inside(OLD, src), &inside(NEW, dst), false),
        Mount::Symlink { target, link } => {
            let link = inside(NEW, link);
            make_parent(&link)?;
            std::os::unix::fs::symlink(target, &link).map_err(io("creating symlink", &link))
        }
        Mount::Tmpfs { dst } => {
            let dst = inside(NEW, dst);
            fs::create_dir_all(&dst).map_err(io("creating", &dst))?;
            mount(
                Some("tmpfs"),
                &dst,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            )
            .map_err(sys("mounting tmpfs on", &dst))
        }
        Mount::Proc { dst } => {
            let dst = inside(NEW, dst);
            fs::create_dir_all(&dst).map_err(io("creating", &dst))?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(Some("proc"), &dst, Some("proc"), flags, None::<&str>)
                .map_err(sys("mounting proc on", &dst))
        }
        Mount::Dev { dst } => dev(&inside(NEW, dst)),
    }
}

fn make_parent(path: &Path) -> Result<(), NamespaceError> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(io("creating", parent)),
        None => Ok(()),
    }
}

fn bind(src: &Path, dst: &Path, read_only: bool) -> Result<(), NamespaceError> {
    let meta = fs::metadata(src).map_err(io("bind source", src))?;
    if meta.is_dir() {
        fs::create_dir_all(dst).map_err(io("creating", dst))?;
    } else {
        make_parent(dst)?;
        fs::write(dst, b"").map_err(io("creating", dst))?;
    }
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("binding", dst))?;
    if read_only {
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
            .map_err(sys("making read-only", dst))?;
    }
    Ok(())
}

/// A minimal /dev: the harmless character devices bound from the host, a
/// private devpts, and the usual links.
fn dev(dst: &Path) -> Result<(), NamespaceError> {
    fs::create_dir_all(dst).map_err(io("creating", dst))?;
    mount(
        Some("tmpfs"),
        dst,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .map_err(sys("mounting tmpfs on", dst))?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        bind(
            &Path::new(OLD).join("dev").join(node),
            &dst.join(node),
            false,
        )?;
    }
    for dir in ["pts", "shm"] {
        fs::create_dir(dst.join(dir)).map_err(io("creating", &dst.join(dir)))?;
    }
    let pts = dst.join("pts");
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(sys("mounting devpts on", &pts))?;
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        std::os::unix::fs::symlink(target, dst.join(link))
            .map_err(io("creating symlink", &dst.join(link)))?;
    }
    Ok(())
}

fn wait_for(child: Pid) -> WaitStatus {
    loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(status) => return status,
            Err(_) => return WaitStatus::Exited(child, 1),
        }
    }
}

/// Exits with the status a shell would report for `status`.
fn exit_like(status: WaitStatus) -> ! {
    match status {
        WaitStatus::Exited(_, code) => std::process::exit(code),
        WaitStatus::Signaled(_, signal, _) => std::process::exit(128 + signal as i32),
        _ => std::process::exit(1),
    }
}
