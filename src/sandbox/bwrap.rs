//! bubblewrap, from Debian's `bubblewrap` package.

use super::{Mount, Sandbox, SandboxSpec};

pub struct Bwrap {
    pub program: String,
}

impl Bwrap {
    /// bwrap on PATH, if there is one that runs.
    pub fn find() -> Option<Bwrap> {
        let ok = std::process::Command::new("bwrap")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Bwrap {
            program: "bwrap".into(),
        })
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Sandbox for Bwrap {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    fn command(&self, spec: &SandboxSpec) -> Vec<String> {
        let mut args: Vec<String> = vec![self.program.clone()];
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        // As root a user namespace would map only uid 0 and gain nothing.
        push(&[
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--hostname",
            &spec.hostname,
        ]);
        for mount in &spec.mounts {
            match mount {
                Mount::RoBind { src, dst } => push(&["--ro-bind", &path(src), &path(dst)]),
                Mount::Bind { src, dst } => push(&["--bind", &path(src), &path(dst)]),
                Mount::Symlink { target, link } => push(&["--symlink", &path(target), &path(link)]),
                Mount::Tmpfs { dst } => push(&["--tmpfs", &path(dst)]),
                Mount::Proc { dst } => push(&["--proc", &path(dst)]),
                Mount::Dev { dst } => push(&["--dev", &path(dst)]),
            }
        }
        // The root itself is a throwaway tmpfs; read-only, so a step's only
        // writable places are the mounts it was given.
        push(&["--remount-ro", "/"]);
        for (key, value) in &spec.env {
            push(&["--setenv", key, value]);
        }
        push(&["--chdir", &path(&spec.cwd), "--"]);
        // bwrap 0.8 has no --umask; the shell sets it, then becomes the command.
        let umask = format!("umask {:04o} && exec \"$0\" \"$@\"", spec.umask);
        push(&["/bin/sh", "-c", &umask]);
        args.extend(spec.argv.iter().cloned());
        args
    }
}
