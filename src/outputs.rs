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
//!
//! A name is written so that it cannot break its line: a space, a control
//! byte, a backslash and a byte that is not UTF-8 are escaped as `\xHH` (a
//! backslash as `\\`), so a name never holds a newline, a CR or ` -> `.

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
         # `run` checks every step against its section and fails with exit code 3 on a difference.\n\
         # In names, \\xHH is a space, control or non-UTF-8 byte, and \\\\ a backslash.\n"
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
            let _ = write!(
                out,
                "{kind} {:04o} {sha} {}",
                e.mode,
                escape(e.path.as_bytes())
            );
            if let Some(link) = &e.link {
                let _ = write!(out, " -> {}", escape(link.as_bytes()));
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
        let bad = |message: &str| {
            let spot = crate::error::Spot::whole_line(text, n as u64 + 1);
            Error::input(path, Some(spot), message.to_string())
        };
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
            (FileKind::Symlink, Some((file, link))) => (file, Some(link)),
            (FileKind::Symlink, None) => return Err(bad("a link needs ` -> TARGET`")),
            _ => (rest, None),
        };
        let text = |escaped: &str| {
            unescape(escaped)
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string()))
                .map_err(|why| bad(&format!("name {escaped:?}: {why}")))
        };
        let link = link.map(text).transpose()?;
        steps.get_mut(step).expect("section exists").insert(
            text(file)?,
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

/// A name as the outputs file writes it: printable UTF-8 as it is; a space,
/// a control byte, a backslash or a byte that is not UTF-8 escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c <= ' ' || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes of an escaped name; the reverse of [`escape`].
pub fn unescape(text: &str) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b <= b' ' || b == 0x7f {
            return Err("a space or control character must be escaped".into());
        }
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', hi, lo, tail @ ..] => {
                let digit = |d: u8| (d as char).to_digit(16);
                let (Some(hi), Some(lo)) = (digit(*hi), digit(*lo)) else {
                    return Err("a \\x escape needs two hex digits".into());
                };
                let hex = (hi * 16 + lo) as u8;
                out.push(hex);
                rest = tail;
            }
            _ => return Err("a backslash starts \\\\ or \\xHH".into()),
        }
    }
    Ok(out)
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
            "t.outputs:2: sha256 \"xyz\" is not 64 lowercase hex digits\n  |\n2 | f 0644 xyz a"
        );
    }

    #[test]
    fn hostile_names_round_trip_and_cannot_forge_a_line() {
        let names: Vec<Vec<u8>> = vec![
            b"a\n== step forged\nf 0644 x y".to_vec(),
            b"trailing-cr\r".to_vec(),
            b"a -> b".to_vec(),
            b"#not-a-comment".to_vec(),
            b" lead and trail ".to_vec(),
            b"quotes \"'`".to_vec(),
            b"back\\slash\\x41".to_vec(),
            b"\x00nul\x7f\x1b[31m".to_vec(),
            b"caf\xc3\xa9 \xe2\x86\x92".to_vec(),
        ];
        for name in &names {
            let escaped = escape(name);
            assert!(!escaped.contains([' ', '\n', '\r']), "{escaped:?}");
            assert_eq!(&unescape(&escaped).unwrap(), name, "{escaped:?}");
        }
        for bytes in [&b"\xff\xfe"[..], b"ok\x80", b"\xc3"] {
            assert_eq!(unescape(&escape(bytes)).unwrap(), bytes);
        }
        let text_names: Vec<String> = names
            .iter()
            .map(|n| String::from_utf8(n.clone()).unwrap())
            .collect();
        let manifest: Vec<Entry> = text_names
            .iter()
            .map(|n| Entry {
                path: n.clone(),
                kind: FileKind::Symlink,
                mode: 0o777,
                size: None,
                sha256: None,
                link: Some(n.clone()),
            })
            .collect();
        let text = render("t", &[("s".into(), manifest.clone())]);
        let records = parse(Path::new("t.outputs"), &text).unwrap();
        assert_eq!(records.keys().collect::<Vec<_>>(), ["s"], "{text}");
        assert!(differences(&records["s"], &manifest).is_empty(), "{text}");
        for bad in ["== step s\nd 0755 - a\\q\n", "== step s\nd 0755 - a\\x4\n"] {
            assert!(parse(Path::new("t.outputs"), bad).is_err(), "{bad}");
        }
    }
}
