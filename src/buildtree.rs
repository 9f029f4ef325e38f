//! Preparing a step's build directory: its sources unpacked, its patches
//! applied. Shared by every runner; the VM runners ship the result to the guest.

use std::path::Path;
use std::process::Command;

use crate::archive;
use crate::error::{Error, Result};
use crate::step::{ProjectFile, Step};

/// Unpacks each source into `build`, copies the step's files to its top and
/// applies the step's patches in its workdir.
pub fn prepare(step: &Step, sources: &[(String, std::path::PathBuf)], build: &Path) -> Result<()> {
    for file in &step.files {
        std::fs::copy(&file.path, build.join(&file.file)).map_err(|e| {
            Error::input(
                &file.path,
                None,
                format!("copying into the build directory: {e}"),
            )
        })?;
    }
    for (name, path) in sources {
        archive::unpack(path, name, build)
            .map_err(|e| Error::input(path, None, format!("source {name}: {e}")))?;
    }
    let workdir = build.join(step.definition.workdir.as_deref().unwrap_or(""));
    if !workdir.is_dir() {
        return Err(Error::input(
            &step.path,
            None,
            format!(
                "workdir {:?} does not exist after unpacking the sources",
                step.definition.workdir.as_deref().unwrap_or("")
            ),
        ));
    }
    for patch in &step.patches {
        apply(patch, &workdir)?;
    }
    Ok(())
}

/// Applies one patch with GNU patch. A dry run goes first so that a patch that
/// does not apply changes nothing; its failure points at the hunk's line.
fn apply(patch: &ProjectFile, dir: &Path) -> Result<()> {
    let run = |dry: bool| {
        let mut cmd = Command::new("patch");
        cmd.args(["-p1", "--batch", "--forward", "--no-backup-if-mismatch"])
            .arg("-i")
            .arg(&patch.path)
            .current_dir(dir);
        if dry {
            cmd.arg("--dry-run");
        }
        cmd.output()
    };
    let output = run(true)
        .and_then(|dry| {
            if dry.status.success() {
                run(false)
            } else {
                Ok(dry)
            }
        })
        .map_err(|e| Error::input(&patch.path, None, format!("running patch: {e}")))?;
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
        line,
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
        let e = apply(&patch, dir.path()).unwrap_err().to_string();
        assert!(e.contains("p.patch:6: patch does not apply"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.c")).unwrap(),
            "a\nq\n"
        );
    }
}
