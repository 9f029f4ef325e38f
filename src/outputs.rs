//! Recorded output checksums: for each step of a target, the manifest its
//! output is expected to have, in `steps/targets/<target>.outputs`. A line
//! per file, easy to review in a diff:
//!
//! ```text
//! == step musl
//! d 0755 - usr
//! f 0644 <sha256> usr/lib/libc.a
//! l 0777 - lib/ld.so -> libc.so
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::digest::is_sha256_hex;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Entry, FileKind};

pub fn path_for(project: &Path, target: &str) -> PathBuf {
    project
        .join("steps/targets")
        .join(format!("{target}.outputs"))
}

pub fn render(target: &str, steps: &[(String, Vec<Entry>)]) -> String {
    let mut out = format!(
        "# Expected outputs of target {target}, one section per step.\n\
         # Written by `stagebuild lock outputs --target {target}` (or `run --update-checksums`);\n\
         # `run` checks every step against its section and fails with exit code 3 on a difference.\n"
    );
    for (step, manifest) in steps {
        let _ = writeln!(out, "== step {step}");
        for e in manifest {
            let kind = match e.kind {
                FileKind::File => 'f',
                FileKind::Dir => 'd',
                FileKind::Symlink => 'l',
            };
            let sha = e.sha256.as_deref().unwrap_or("-");
            let _ = write!(out, "{kind} {:04o} {sha} {}", e.mode, e.path);
            if let Some(link) = &e.link {
                let _ = write!(out, " -> {link}");
            }
            out.push('\n');
        }
    }
    out
}

/// One recorded file: what the manifest says, minus the size (the checksum covers it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub kind: FileKind,
    pub mode: u32,
    pub sha256: Option<String>,
    pub link: Option<String>,
}

pub type Records = BTreeMap<String, BTreeMap<String, Recorded>>;

/// Parses an outputs file; errors point at `file:line`.
pub fn parse(path: &Path, text: &str) -> Result<Records> {
    let mut steps: Records = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let bad = |message: &str| Error::input(path, Some(n as u64 + 1), message.to_string());
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(step) = line.strip_prefix("== step ") {
            current = Some(step.trim().to_string());
            steps.entry(step.trim().to_string()).or_default();
            continue;
        }
        let step = current
            .as_ref()
            .ok_or_else(|| bad("a file line before any `== step` line"))?;
        let mut parts = line.splitn(4, ' ');
        let (Some(kind), Some(mode), Some(sha), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `KIND MODE SHA256 PATH`"));
        };
        let kind = match kind {
            "f" => FileKind::File,
            "d" => FileKind::Dir,
            "l" => FileKind::Symlink,
            other => return Err(bad(&format!("unknown kind {other:?} (f, d or l)"))),
        };
        let mode = u32::from_str_radix(mode, 8)
            .map_err(|_| bad(&format!("mode {mode:?} is not octal")))?;
        let sha256 = match (kind, sha) {
            (FileKind::File, s) if is_sha256_hex(s) => Some(s.to_string()),
            (FileKind::File, s) => {
                return Err(bad(&format!("sha256 {s:?} is not 64 lowercase hex digits")));
            }
            (_, "-") => None,
            (_, s) => return Err(bad(&format!("only files have a sha256, got {s:?}"))),
        };
        let (file, link) = match (kind, rest.split_once(" -> ")) {
            (FileKind::Symlink, Some((file, link))) => (file, Some(link.to_string())),
            (FileKind::Symlink, None) => return Err(bad("a link needs ` -> TARGET`")),
            _ => (rest, None),
        };
        steps.get_mut(step).expect("section exists").insert(
            file.to_string(),
            Recorded {
                kind,
                mode,
                sha256,
                link,
            },
        );
    }
    Ok(steps)
}

pub fn load(path: &Path) -> Result<Option<Records>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text =
                String::from_utf8(bytes).map_err(|_| Error::input(path, None, "invalid UTF-8"))?;
            parse(path, &text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).io_context(|| format!("reading {}", path.display())),
    }
}

/// The files whose recorded entry differs from the manifest, with why.
pub fn differences(recorded: &BTreeMap<String, Recorded>, manifest: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in manifest {
        seen.insert(e.path.as_str());
        let actual = Recorded {
            kind: e.kind,
            mode: e.mode,
            sha256: e.sha256.clone(),
            link: e.link.clone(),
        };
        match recorded.get(&e.path) {
            None => out.push(format!("{} (not recorded)", e.path)),
            Some(r) if r.kind != actual.kind => out.push(format!("{} (type differs)", e.path)),
            Some(r) if r.sha256 != actual.sha256 => out.push(format!(
                "{} (sha256 {} recorded, {} built)",
                e.path,
                r.sha256.as_deref().unwrap_or("-"),
                actual.sha256.as_deref().unwrap_or("-")
            )),
            Some(r) if r.mode != actual.mode => out.push(format!(
                "{} (mode {:04o} recorded, {:04o} built)",
                e.path, r.mode, actual.mode
            )),
            Some(r) if r.link != actual.link => {
                out.push(format!("{} (link target differs)", e.path))
            }
            Some(_) => {}
        }
    }
    for path in recorded.keys().filter(|p| !seen.contains(p.as_str())) {
        out.push(format!("{path} (recorded, not built)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_differences() {
        let manifest = vec![
            Entry {
                path: "bin".into(),
                kind: FileKind::Dir,
                mode: 0o755,
                size: None,
                sha256: None,
                link: None,
            },
            Entry {
                path: "bin/x".into(),
                kind: FileKind::File,
                mode: 0o755,
                size: Some(1),
                sha256: Some("a".repeat(64)),
                link: None,
            },
            Entry {
                path: "bin/y".into(),
                kind: FileKind::Symlink,
                mode: 0o777,
                size: None,
                sha256: None,
                link: Some("x".into()),
            },
        ];
        let text = render("t", &[("s".into(), manifest.clone())]);
        let records = parse(Path::new("t.outputs"), &text).unwrap();
        assert!(differences(&records["s"], &manifest).is_empty());
        let mut changed = manifest.clone();
        changed[1].sha256 = Some("b".repeat(64));
        let diffs = differences(&records["s"], &changed);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].starts_with("bin/x (sha256 aaaa"), "{diffs:?}");
        let e = parse(Path::new("t.outputs"), "== step s\nf 0644 xyz a\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.outputs:2: sha256 \"xyz\" is not 64 lowercase hex digits"
        );
    }
}
