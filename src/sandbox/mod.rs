//! Namespace sandboxes for host steps.
//!
//! A [`SandboxSpec`] says what a step may see; a [`Sandbox`] turns it into a
//! command. bubblewrap is preferred; where it is missing, stagebuild enters the
//! namespaces itself (see [`namespaces`]). Both give the same view.

pub mod bwrap;
pub mod namespaces;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One entry of the sandbox's filesystem, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mount {
    /// Host `src` visible read-only at `dst`.
    RoBind { src: PathBuf, dst: PathBuf },
    /// Host `src` visible read-write at `dst`.
    Bind { src: PathBuf, dst: PathBuf },
    /// A symlink at `link` pointing to `target`.
    Symlink { target: PathBuf, link: PathBuf },
    /// An empty, private tmpfs at `dst`.
    Tmpfs { dst: PathBuf },
    /// A fresh procfs for the sandbox's PID namespace.
    Proc { dst: PathBuf },
    /// A minimal /dev (null, zero, full, random, urandom, tty, pts, shm).
    Dev { dst: PathBuf },
}

/// Everything a sandboxed command needs. Paths in `mounts` (dst), `cwd` and
/// `argv` are inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    pub mounts: Vec<Mount>,
    /// The complete environment: nothing is inherited.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub hostname: String,
    /// File-creation mask applied before exec.
    pub umask: u32,
    pub argv: Vec<String>,
}

/// A way to run a [`SandboxSpec`]: no network, its own PID, mount, UTS and IPC
/// namespaces, a new session, and death with its parent.
pub trait Sandbox {
    /// A short name for logs ("bwrap", "namespaces").
    fn name(&self) -> &'static str;
    /// The host command (program and arguments) that runs `spec`.
    fn command(&self, spec: &SandboxSpec) -> Vec<String>;
}

/// Mounts that expose the host's toolchain read-only: `/usr`, `/etc`, and the
/// top-level directories that merged-/usr systems make into symlinks.
pub fn host_toolchain_mounts() -> Vec<Mount> {
    let mut mounts = vec![Mount::RoBind {
        src: "/usr".into(),
        dst: "/usr".into(),
    }];
    for dir in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(dir);
        match std::fs::read_link(&host) {
            Ok(target) => mounts.push(Mount::Symlink { target, link: host }),
            Err(_) if host.is_dir() => mounts.push(Mount::RoBind {
                src: host.clone(),
                dst: host,
            }),
            Err(_) => {}
        }
    }
    mounts.push(Mount::RoBind {
        src: "/etc".into(),
        dst: "/etc".into(),
    });
    mounts
}
