//! Preparing a step's build directory: its sources unpacked, its patches
//! applied. Shared by every runner; the VM runners ship the result to the guest.
//!
//! The tree is untrusted from the first source on, so nothing here follows a
//! path in it on the host: files land through [`Root`], the workdir is
//! resolved by the kernel beneath the build directory, and `patch`, which
//! follows whatever links it meets, runs in the sandbox with only the build
//! directory writable.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::Unpacker;
use crate::beneath::{self, Root};
use crate::cancel::Cancel;
use crate::error::{Error, IoContext, Result};
use crate::sandbox::{Mount, Sandbox, SandboxSpec, host_toolchain_mounts};
use crate::step::{ProjectFile, Step};

/// What preparing a build directory needs beyond the step.
pub struct Tools<'a> {
    /// Where `patch` runs.
    pub sandbox: &'a dyn Sandbox,
    /// The most one source may unpack to.
    pub max_unpacked: u64,
    /// The run's interrupt, which stops an unpack between members.
    pub cancel: &'a Cancel,
}

/// Copies the step's files to the top of `build`, unpacks each source into
/// it and applies the step's patches in its workdir.
pub fn prepare(
    step: &Step,
    sources: &[(String, PathBuf)],
    build: &Path,
    tools: &Tools,
) -> Result<()> {
    let root = Root::open(build).io_context(|| format!("opening {}", build.display()))?;
    for file in &step.files {
        copy_in(&root, file).map_err(|e| {
            Error::input(
                &file.path,
                None,
                format!("copying into the build directory: {e}"),
            )
        })?;
    }
    let mut unpacker = Unpacker::new(build, tools.max_unpacked)
        .io_context(|| format!("opening {}", build.display()))?
        .cancelled_by(tools.cancel);
    for (name, path) in sources {
        match step.definition.unpack.get(name) {
            Some(member) => unpacker.inner_source(path, name, member),
            None => unpacker.source(path, name),
        }
        .map_err(|e| Error::input(path, None, format!("source {name}: {e}")))?;
    }
    let workdir = step.definition.workdir.as_deref().unwrap_or("");
    let missing =
        |why: String| Error::input(&step.path, None, format!("workdir {workdir:?} {why}"));
    let inside = root
        .real_path(Path::new(workdir))
        .and_then(|real| {
            let top = root.real_path(Path::new(""))?;
            Ok(real
                .strip_prefix(&top)
                .map(Path::to_path_buf)
                .unwrap_or_default())
        })
        .map_err(|e| match beneath::refusal(&e) {
            Some(_) => missing("leads outside the build directory through a symlink".into()),
            None => missing("does not exist after unpacking the sources".into()),
        })?;
    if !build.join(&inside).is_dir() {
        return Err(missing("does not exist after unpacking the sources".into()));
    }
    for patch in &step.patches {
        apply(patch, build, &inside, tools.sandbox)?;
    }
    Ok(())
}

/// A step's own file, with its mode, at the top of the build directory.
fn copy_in(root: &Root, file: &ProjectFile) -> std::io::Result<()> {
    let mut from = std::fs::File::open(&file.path)?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&from.metadata()?.permissions());
    let mut to = root.create_file(Path::new(&file.file), mode & 0o777)?;
    std::io::copy(&mut from, &mut to).map(drop)
}

/// Where the build directory is in `patch`'s sandbox.
const PATCH_BUILD: &str = "/build";
const PATCH_FILE: &str = "/stagebuild/patch";

/// Applies one patch with GNU patch, in `workdir` (relative, with no links
/// in it) of `build`. A dry run goes first so that a patch that does not
/// apply changes nothing; its failure points at the hunk's line.
fn apply(patch: &ProjectFile, build: &Path, workdir: &Path, sandbox: &dyn Sandbox) -> Result<()> {
    let run = |dry: bool| {
        let mut mounts = host_toolchain_mounts();
        mounts.extend([
            Mount::Tmpfs { dst: "/tmp".into() },
            Mount::Dev { dst: "/dev".into() },
            Mount::Bind {
                src: build.to_path_buf(),
                dst: PATCH_BUILD.into(),
            },
            Mount::RoBind {
                src: patch.path.clone(),
                dst: PATCH_FILE.into(),
            },
        ]);
        let mut argv: Vec<String> = [
            "/usr/bin/patch",
            "-p1",
            "--batch",
            "--forward",
            "--no-backup-if-mismatch",
            "-i",
            PATCH_FILE,
        ]
        .map(String::from)
        .to_vec();
        if dry {
            argv.push("--dry-run".into());
        }
        let spec = SandboxSpec {
            mounts,
            env: [
                ("PATH", "/usr/bin:/bin"),
                ("LC_ALL", "C"),
                ("TZ", "UTC"),
                ("HOME", "/tmp"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            cwd: Path::new(PATCH_BUILD).join(workdir),
            hostname: "stagebuild".into(),
            umask: 0o022,
            argv,
        };
        let command = sandbox.command(&spec);
        Command::new(&command[0])
            .args(&command[1..])
            .env_clear()
            .output()
    };
    let output = run(true)
        .and_then(|dry| {
            if dry.status.success() {
                run(false)
            } else {
                Ok(dry)
            }
        })
        .map_err(|e| Error::Host {
            context: format!("applying {} in the sandbox", patch.path.display()),
            problem: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&patch.path).unwrap_or_default();
    let line = failed_hunk_line(&text, &report);
    Err(Error::input(
        &patch.path,
        line.map(|l| crate::error::Spot::whole_line(&text, l)),
        format!(
            "patch does not apply: {}",
            report.trim().replace('\n', "; ")
        ),
    ))
}

/// Finds the patch-file line of the first hunk GNU patch reported as failed,
/// from its "patching file F" / "Hunk #N FAILED" lines.
fn failed_hunk_line(patch: &str, report: &str) -> Option<u64> {
    let mut file = None;
    for line in report.lines() {
        if let Some(f) = line
            .strip_prefix("patching file ")
            .or_else(|| line.strip_prefix("checking file "))
        {
            file = Some(f.trim().trim_matches(['\'', '"']).to_string());
        }
        if line.contains("can't find file to patch") {
            return patch
                .lines()
                .position(|l| l.starts_with("--- "))
                .map(|i| i as u64 + 1);
        }
        if let Some(rest) = line.strip_prefix("Hunk #") {
            let number: usize = rest.split_whitespace().next()?.parse().ok()?;
            if !rest.contains("FAILED") {
                continue;
            }
            let file = file.as_deref()?;
            let lines: Vec<&str> = patch.lines().collect();
            let start = lines
                .iter()
                .position(|l| l.starts_with("+++ ") && l.contains(file))
                .unwrap_or(0);
            let hunk = lines[start..]
                .iter()
                .enumerate()
                .filter(|(_, l)| l.starts_with("@@"))
                .nth(number - 1)?;
            return Some((start + hunk.0) as u64 + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_hunks_point_into_the_patch() {
        let patch = "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n@@ -5 +5 @@\n-c\n+d\n";
        let report = "patching file x.c\nHunk #2 FAILED at 5.\n1 out of 2 hunks FAILED";
        assert_eq!(failed_hunk_line(patch, report), Some(6));
        assert_eq!(
            failed_hunk_line(patch, "can't find file to patch at input line 3"),
            Some(1)
        );
    }

    #[test]
    fn a_patch_that_does_not_apply_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.c"), "a\nq\n").unwrap();
        let patch_path = dir.path().join("p.patch");
        std::fs::write(
            &patch_path,
            "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n@@ -2 +2 @@\n-c\n+d\n",
        )
        .unwrap();
        let patch = ProjectFile {
            file: "p.patch".into(),
            path: patch_path,
            sha256: String::new(),
        };
        let sandbox =
            crate::sandbox::bwrap::Bwrap::find().expect("bwrap (scripts/setup-debian.sh)");
        let e = apply(&patch, dir.path(), Path::new(""), &sandbox)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.patch:6: patch does not apply"), "{e}");
        assert!(e.ends_with("\n6 | @@ -2 +2 @@"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.c")).unwrap(),
            "a\nq\n"
        );
    }

    #[test]
    fn a_workdir_through_links_that_lead_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("steps")).unwrap();
        std::fs::write(project.join("sources.lock"), "version: 1\nsources: []\n").unwrap();
        let step_file = project.join("steps/w.yaml");
        std::fs::write(
            &step_file,
            "name: w\nversion: \"1\"\ndescription: d\nworkdir: up/outside\nbuild: |\n  true\n",
        )
        .unwrap();
        let lock = crate::lock::Lock::load(&project.join("sources.lock")).unwrap();
        let step = Step::load(&step_file, &project, &lock).unwrap();
        // Planted by hand: the unpacker refuses such links before this point.
        let build = dir.path().join("build");
        std::fs::create_dir_all(&build).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(".", build.join("a")).unwrap();
        std::os::unix::fs::symlink("a/..", build.join("up")).unwrap();
        let sandbox =
            crate::sandbox::bwrap::Bwrap::find().expect("bwrap (scripts/setup-debian.sh)");
        let tools = Tools {
            sandbox: &sandbox,
            max_unpacked: 1 << 20,
            cancel: &Cancel::default(),
        };
        let e = prepare(&step, &[], &build, &tools).unwrap_err().to_string();
        assert!(
            e.contains(
                "workdir \"up/outside\" leads outside the build directory through a symlink"
            ),
            "{e}"
        );
    }
}
