//! `sources.lock`: every source file the chain may use, pinned by sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::digest::is_sha256_hex;
use crate::error::{IoContext, Result};
use crate::names;
use crate::yaml::Doc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: Spanned<u32>,
    /// `sources:` with nothing under it is an empty lock, not an error.
    #[serde(default)]
    sources: Option<Vec<Spanned<RawEntry>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: Spanned<String>,
    sha256: Spanned<String>,
    size: Spanned<u64>,
    #[serde(default)]
    urls: Vec<Spanned<String>>,
    #[serde(default)]
    apt: Option<RawApt>,
    #[serde(default)]
    git: Option<Spanned<String>>,
    #[serde(default)]
    commit: Option<Spanned<String>>,
}

/// [`AptSource`] as written, with where each part is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApt {
    package: Spanned<String>,
    version: Spanned<String>,
    file: Spanned<String>,
    #[serde(default)]
    binary: bool,
}

/// A file that the host's package tool can fetch: `apt-get source
/// --download-only PACKAGE=VERSION` writes it as `file`; with `binary: true`,
/// `apt-get download PACKAGE=VERSION` does (a .deb).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    pub package: String,
    pub version: String,
    pub file: String,
    #[serde(default)]
    pub binary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitSource {
    pub url: String,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockEntry {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Upstream first, then other mirrors.
    pub urls: Vec<String>,
    pub apt: Option<AptSource>,
    /// A git repository and commit from which the mirror makes this file, a
    /// deterministic tarball (see `mirror::git`).
    pub git: Option<GitSource>,
    #[serde(skip)]
    pub line: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Lock {
    pub path: PathBuf,
    pub entries: BTreeMap<String, LockEntry>,
}

impl Lock {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).io_context(|| format!("reading {}", path.display()))?;
        Self::parse(path, &bytes)
    }

    /// Parses lock text as if it were the file at `path`, which errors name.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let doc = Doc::new(path, bytes)?;
        let file: LockFile = doc.parse()?;
        if file.version.value != 1 {
            return Err(doc.error(
                &file.version,
                format!(
                    "unsupported lock version {} (this stagebuild reads 1)",
                    file.version.value
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for spanned in file.sources.unwrap_or_default() {
            let line = crate::yaml::line_of(&spanned);
            let raw = &spanned.value;
            let name = &raw.name.value;
            names::plain_file_name(name)
                .map_err(|why| doc.error(&raw.name, format!("source name {why}")))?;
            let sha256 = &raw.sha256.value;
            if !is_sha256_hex(sha256) {
                return Err(doc.error(
                    &raw.sha256,
                    format!(
                        "{name}: sha256 must be 64 lowercase hex digits, got {sha256:?} ({} characters)",
                        sha256.len()
                    ),
                ));
            }
            if raw.size.value == 0 {
                return Err(doc.error(&raw.size, format!("{name}: size must be greater than 0")));
            }
            let git = match (&raw.git, &raw.commit) {
                (None, None) => None,
                (Some(url), Some(commit)) => {
                    let hex = &commit.value;
                    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(doc.error(
                            commit,
                            format!("{name}: commit must be a full 40-digit sha1, got {hex:?}"),
                        ));
                    }
                    if !name.ends_with(".tar") {
                        return Err(doc.error(
                            &raw.name,
                            format!(
                                "{name}: a git source is packed as an uncompressed tarball, so its name must end in .tar"
                            ),
                        ));
                    }
                    names::git_url(&url.value)
                        .map_err(|why| doc.error(url, format!("{name}: {why}")))?;
                    Some(GitSource {
                        url: url.value.clone(),
                        commit: hex.clone(),
                    })
                }
                (Some(one), None) | (None, Some(one)) => {
                    return Err(doc.error(one, format!("{name}: git and commit go together")));
                }
            };
            if raw.urls.is_empty() && raw.apt.is_none() && git.is_none() {
                return Err(doc.error(
                    &raw.name,
                    format!(
                        "{name}: give at least one url, an apt source, or a git repository and commit"
                    ),
                ));
            }
            for url in &raw.urls {
                names::download_url(&url.value)
                    .map_err(|why| doc.error(url, format!("{name}: {why}")))?;
            }
            if let Some(apt) = &raw.apt {
                let check =
                    |value: &Spanned<String>, ok: std::result::Result<(), names::Refused>| {
                        ok.map_err(|why| doc.error(value, format!("{name}: {why}")))
                    };
                check(&apt.package, names::apt_package(&apt.package.value))?;
                check(&apt.version, names::apt_version(&apt.version.value))?;
                check(&apt.file, names::plain_file_name(&apt.file.value))?;
            }
            let entry = LockEntry {
                name: name.clone(),
                sha256: sha256.clone(),
                size: raw.size.value,
                urls: raw.urls.iter().map(|u| u.value.clone()).collect(),
                apt: raw.apt.as_ref().map(|a| AptSource {
                    package: a.package.value.clone(),
                    version: a.version.value.clone(),
                    file: a.file.value.clone(),
                    binary: a.binary,
                }),
                git,
                line,
            };
            if entries.insert(name.clone(), entry).is_some() {
                return Err(doc.error(&raw.name, format!("{name} is listed twice")));
            }
        }
        Ok(Lock {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn get(&self, name: &str) -> Option<&LockEntry> {
        self.entries.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: 1\nsources:\n  - name: a.tar.gz\n    sha256: 7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4\n    size: 10\n    urls: [https://example.org/a.tar.gz]\n";

    fn load(text: &str) -> Result<Lock> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sources.lock");
        std::fs::write(&path, text).unwrap();
        Lock::load(&path)
    }

    #[test]
    fn parses_entries() {
        let lock = load(GOOD).unwrap();
        assert_eq!(lock.get("a.tar.gz").unwrap().size, 10);
        assert_eq!(lock.get("a.tar.gz").unwrap().line, Some(3));
    }

    #[test]
    fn short_checksum_is_refused_with_its_line() {
        let e = load(&GOOD.replace("cfd4a4\n", "\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.lock:4:13: a.tar.gz: sha256"), "{e}");
        assert!(e.contains("64 lowercase hex digits"), "{e}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = format!("{GOOD}{}", &GOOD[GOOD.find("  - name").unwrap()..]);
        let e = load(&twice).unwrap_err().to_string();
        assert!(
            e.contains("sources.lock:7:") && e.contains("listed twice"),
            "{e}"
        );
    }
}

/// Rewrites the sha256 and size of the entry that starts at `line` (1-based,
/// the line of its `- `), leaving every other line, comments included, as it was.
pub fn with_updated_entry(text: &str, line: u64, sha256: &str, size: u64) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let start = (line as usize).checked_sub(1)?;
    let indent = lines.get(start)?.find("- ")?;
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    // The entry runs until the next line indented no deeper than its dash.
    let end = (start + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent_of(&lines[i]) <= indent)
        .unwrap_or(lines.len());
    let (mut sha_done, mut size_done) = (false, false);
    for l in &mut lines[start..end] {
        // The key follows the indentation, or the dash on the entry's first line.
        let key_at = l.find(|c: char| c != ' ' && c != '-').unwrap_or(0);
        if l[key_at..].starts_with("sha256:") {
            *l = format!("{}sha256: {sha256}", &l[..key_at]);
            sha_done = true;
        } else if l[key_at..].starts_with("size:") {
            *l = format!("{}size: {size}", &l[..key_at]);
            size_done = true;
        }
    }
    (sha_done && size_done).then(|| lines.join("\n") + "\n")
}

#[cfg(test)]
mod edit_tests {
    use super::*;

    #[test]
    fn updating_an_entry_keeps_everything_else() {
        let text = "version: 1\nsources:\n  # first\n  - name: a\n    sha256: old\n    size: 1\n    urls: []\n  - name: b\n    sha256: keep\n    size: 2\n    urls: []\n";
        let updated = with_updated_entry(text, 4, "new", 9).unwrap();
        assert_eq!(
            updated,
            text.replace("sha256: old", "sha256: new")
                .replace("size: 1", "size: 9")
        );
        assert_eq!(with_updated_entry(text, 2, "x", 1), None);
    }
}
