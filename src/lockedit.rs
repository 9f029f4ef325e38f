//! Editing `sources.lock` as text, so that its comments and layout stay.
//! Values are written as YAML scalars that read back as the same string
//! (quoted where a plain scalar would not), and every edit is parsed back and
//! must give exactly the intended entries before it is used: a lock in a
//! shape the text edits do not fit (`sources: []`, flow style, a document
//! end marker) is written out again whole instead.

use std::path::Path;

use crate::error::{Error, Result};
use crate::lock::{Lock, LockEntry};

/// The lock text with `entry` added, or replacing the entry of that name.
/// The flag says whether the file had to be written out again whole (its
/// comments are then lost).
pub fn with_entry(
    path: &Path,
    lock: &Lock,
    text: &str,
    entry: &LockEntry,
) -> Result<(String, bool)> {
    let mut wanted: Vec<LockEntry> = lock.entries.values().cloned().collect();
    wanted.sort_by_key(|e| e.line);
    let existing = wanted.iter().position(|e| e.name == entry.name);
    let mut candidates = Vec::new();
    match existing {
        Some(i) => {
            let old = &wanted[i];
            candidates.extend(crate::lock::with_updated_entry(
                text,
                old.line.unwrap_or(0),
                &entry.sha256,
                entry.size,
            ));
            wanted[i] = LockEntry {
                line: old.line,
                ..entry.clone()
            };
        }
        None => {
            candidates.extend(appended(text, &wanted, entry));
            wanted.push(entry.clone());
        }
    }
    for candidate in candidates {
        if parses_to(path, &candidate, &wanted) {
            return Ok((candidate, false));
        }
    }
    let whole = render(&wanted);
    if parses_to(path, &whole, &wanted) {
        return Ok((whole, true));
    }
    Err(Error::input(
        path,
        None,
        format!(
            "cannot write an entry for {:?} that reads back as written",
            entry.name
        ),
    ))
}

/// Text edits that add `entry` after the last one, in the order most
/// likely to keep the file as it was.
fn appended(text: &str, entries: &[LockEntry], entry: &LockEntry) -> Vec<String> {
    let mut base = text.to_string();
    if !base.is_empty() && !base.ends_with('\n') {
        base.push('\n');
    }
    let lines: Vec<&str> = text.lines().collect();
    // The indentation of the existing entries' dashes.
    let indent = entries
        .first()
        .and_then(|e| lines.get(e.line? as usize - 1))
        .filter(|l| l.trim_start().starts_with("- "))
        .map_or(2, |l| l.len() - l.trim_start().len());
    let mut out = vec![format!("{base}{}", entry_text(entry, indent))];
    // `sources:` with nothing, `[]`, `~` or `null` after it.
    if let Some(i) = lines.iter().position(|l| {
        let value = l
            .strip_prefix("sources:")
            .map(|v| v.split(" #").next().unwrap_or(""));
        value.is_some_and(|v| matches!(v.trim(), "" | "[]" | "~" | "null"))
    }) {
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edited[i] = format!("sources:\n{}", entry_text(entry, 2).trim_end());
        out.push(edited.join("\n") + "\n");
    } else {
        out.push(format!("{base}sources:\n{}", entry_text(entry, 2)));
    }
    out
}

fn parses_to(path: &Path, text: &str, wanted: &[LockEntry]) -> bool {
    let Ok(lock) = Lock::parse(path, text.as_bytes()) else {
        return false;
    };
    lock.entries.len() == wanted.len()
        && wanted.iter().all(|w| {
            lock.get(&w.name).is_some_and(|got| {
                (&got.sha256, got.size, &got.urls, &got.apt, &got.git)
                    == (&w.sha256, w.size, &w.urls, &w.apt, &w.git)
            })
        })
}

/// The whole lock, written out again.
fn render(entries: &[LockEntry]) -> String {
    let mut out = String::from("version: 1\nsources:\n");
    for entry in entries {
        out.push_str(&entry_text(entry, 2));
    }
    out
}

/// One entry in block style, its dash indented by `indent` spaces.
pub fn entry_text(entry: &LockEntry, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!(
        "{pad}- name: {}\n{pad}  sha256: {}\n{pad}  size: {}\n",
        scalar(&entry.name),
        scalar(&entry.sha256),
        entry.size
    );
    if !entry.urls.is_empty() {
        out.push_str(&format!("{pad}  urls:\n"));
        for url in &entry.urls {
            out.push_str(&format!("{pad}    - {}\n", scalar(url)));
        }
    }
    if let Some(apt) = &entry.apt {
        // On one line, as the lock writes it by hand; inside braces every
        // value is quoted, since a plain `,` would end it.
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
        out.push_str(&format!(
            "{pad}  apt: {{ package: {}, version: {}, file: {}{} }}\n",
            quoted(&apt.package),
            quoted(&apt.version),
            quoted(&apt.file),
            if apt.binary { ", binary: true" } else { "" }
        ));
    }
    if let Some(git) = &entry.git {
        out.push_str(&format!(
            "{pad}  git: {}\n{pad}  commit: {}\n",
            scalar(&git.url),
            scalar(&git.commit)
        ));
    }
    out
}

/// A YAML scalar that reads back as `value`: plain when that is safe (the
/// usual names, checksums and URLs), else double-quoted with JSON's escapes,
/// which YAML's double-quoted style shares.
pub fn scalar(value: &str) -> String {
    let plain = value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+/:@%=~,".contains(&b))
        && !value.ends_with(':')
        && value.parse::<f64>().is_err()
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        value.to_string()
    } else {
        serde_json::to_string(value).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> LockEntry {
        LockEntry {
            name: name.into(),
            sha256: "7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4".into(),
            size: 10,
            urls: vec!["https://example.org/x?a=1&b=2~c".into()],
            apt: None,
            git: None,
            line: None,
        }
    }

    fn add(text: &str, name: &str) -> (String, bool) {
        let path = Path::new("sources.lock");
        let lock = Lock::parse(path, text.as_bytes()).unwrap();
        with_entry(path, &lock, text, &entry(name)).unwrap()
    }

    #[test]
    fn hostile_names_read_back_as_written() {
        for name in [
            "a #b", "a: b", "\"q\"", "'s'", "true", "1.0", "x\\y", "é ü", "a,b",
        ] {
            let (text, rewritten) = add("version: 1\nsources:\n", name);
            assert!(!rewritten, "{name}: {text}");
            let lock = Lock::parse(Path::new("sources.lock"), text.as_bytes()).unwrap();
            assert!(lock.get(name).is_some(), "{name}: {text}");
        }
    }

    #[test]
    fn every_empty_shape_takes_an_entry_and_comments_stay() {
        for text in [
            "version: 1\nsources: []\n",
            "version: 1\nsources: [] # none yet\n",
            "sources: []\nversion: 1\n",
            "version: 1\nsources:\n",
            "version: 1\n",
            "# pins\nversion: 1\nsources: ~\n",
            "version: 1\nsources:\n- name: a\n  sha256: 7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4\n  size: 1\n  urls: [https://example.org/a]\n",
        ] {
            let (out, rewritten) = add(text, "new.tar");
            assert!(!rewritten, "{text:?} -> {out}");
            if text.starts_with('#') {
                assert!(out.starts_with("# pins\n"), "{out}");
            }
        }
    }

    #[test]
    fn a_shape_the_edits_do_not_fit_is_written_again_whole() {
        let text = "version: 1\nsources: [{name: a, sha256: 7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4, size: 1, urls: [\"https://example.org/a\"]}]\n...\n";
        let (out, rewritten) = add(text, "b");
        assert!(rewritten, "{out}");
        let lock = Lock::parse(Path::new("sources.lock"), out.as_bytes()).unwrap();
        assert_eq!(lock.entries.len(), 2);
    }
}
