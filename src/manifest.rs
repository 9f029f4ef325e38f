//! Per-file manifests of a directory tree: what a checkpoint promises to hold.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::reader_sha256;
use crate::opendir::{Kind, OpenDir};
use crate::stamps::Stamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// One entry; owners and times are left out on purpose: they say nothing about
/// what was built and differ between otherwise identical builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    /// Permission bits, e.g. 0o755.
    pub mode: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: unsupported file type (only files, directories and symlinks may be outputs)")]
    Unsupported { path: String },
    #[error("{path}: file name is not UTF-8")]
    NotUtf8 { path: String },
}

/// Walks `root` in sorted order and describes every entry below it. The
/// tree may hold any symlinks (a step's output is untrusted): each is
/// recorded as a link and never followed, by the kernel's word
/// ([`OpenDir`]), not by a check made before the open.
pub fn of_tree(root: &Path) -> Result<Vec<Entry>, ManifestError> {
    Ok(of_tree_stamped(root, &|_, _| None)?.0)
}

/// A file's sha256 as it was when its stamp was taken, if the stamp still
/// holds: then the file is not read.
pub type Known<'k> = dyn Fn(&str, &Stamp) -> Option<String> + 'k;

/// [`of_tree`], with each file's stamp, taking a file's sha256 from `known`
/// when it has it instead of reading the file.
pub fn of_tree_stamped(
    root: &Path,
    known: &Known,
) -> Result<(Vec<Entry>, BTreeMap<String, Stamp>), ManifestError> {
    let mut walked = Walked {
        entries: Vec::new(),
        stamps: BTreeMap::new(),
        known,
    };
    let top = OpenDir::open(root).map_err(|source| ManifestError::Io {
        path: String::new(),
        source,
    })?;
    walk(&top, "", &mut walked)?;
    Ok((walked.entries, walked.stamps))
}

struct Walked<'k> {
    entries: Vec<Entry>,
    stamps: BTreeMap<String, Stamp>,
    known: &'k Known<'k>,
}

fn walk(dir: &OpenDir, prefix: &str, walked: &mut Walked) -> Result<(), ManifestError> {
    let io_err = |path: &str, source| ManifestError::Io {
        path: path.to_string(),
        source,
    };
    for os_name in dir.names().map_err(|e| io_err(prefix, e))? {
        let name = os_name.to_str().ok_or_else(|| ManifestError::NotUtf8 {
            path: format!("{prefix}{}", os_name.to_string_lossy()),
        })?;
        let rel = format!("{prefix}{name}");
        let (kind, stat) = dir.stat(&os_name).map_err(|e| io_err(&rel, e))?;
        let mode = stat.st_mode & 0o7777;
        match kind {
            Kind::Symlink => {
                let target = dir.read_link(&os_name).map_err(|e| io_err(&rel, e))?;
                walked.entries.push(Entry {
                    path: rel,
                    kind: FileKind::Symlink,
                    mode: 0o777,
                    size: None,
                    sha256: None,
                    link: Some(target.to_string_lossy().into_owned()),
                });
            }
            Kind::Dir => {
                walked.entries.push(Entry {
                    path: rel.clone(),
                    kind: FileKind::Dir,
                    mode,
                    size: None,
                    sha256: None,
                    link: None,
                });
                let sub = dir.dir(&os_name).map_err(|e| io_err(&rel, e))?;
                walk(&sub, &format!("{rel}/"), walked)?;
            }
            Kind::File => {
                let stamp = Stamp::of_stat(&stat);
                let (sha256, size) = match (walked.known)(&rel, &stamp) {
                    Some(sha256) => (sha256, stamp.size),
                    None => dir
                        .file(&os_name)
                        .and_then(|mut f| reader_sha256(&mut f))
                        .map_err(|e| io_err(&rel, e))?,
                };
                walked.stamps.insert(rel.clone(), stamp);
                walked.entries.push(Entry {
                    path: rel,
                    kind: FileKind::File,
                    mode,
                    size: Some(size),
                    sha256: Some(sha256),
                    link: None,
                });
            }
            Kind::Other => return Err(ManifestError::Unsupported { path: rel }),
        }
    }
    Ok(())
}

/// The first difference between two manifests, for messages.
pub fn first_difference(expected: &[Entry], actual: &[Entry]) -> Option<String> {
    let mut e = expected.iter().peekable();
    let mut a = actual.iter().peekable();
    loop {
        match (e.peek(), a.peek()) {
            (None, None) => return None,
            (Some(x), None) => return Some(format!("{} is missing", x.path)),
            (None, Some(y)) => return Some(format!("{} is unexpected", y.path)),
            (Some(x), Some(y)) if x.path < y.path => return Some(format!("{} is missing", x.path)),
            (Some(x), Some(y)) if x.path > y.path => {
                return Some(format!("{} is unexpected", y.path));
            }
            (Some(x), Some(y)) if x != y => return Some(format!("{} differs", x.path)),
            _ => {
                e.next();
                a.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn describes_files_dirs_and_links_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("b")).unwrap();
        fs::write(root.join("b/x"), b"abc").unwrap();
        fs::set_permissions(root.join("b/x"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("a"), b"").unwrap();
        symlink("b/x", root.join("c")).unwrap();
        let m = of_tree(root).unwrap();
        let paths: Vec<_> = m.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "b/x", "c"]);
        assert_eq!(m[2].mode, 0o755);
        assert_eq!(
            m[2].sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(m[3].link.as_deref(), Some("b/x"));

        let before = m.clone();
        fs::write(root.join("b/x"), b"abd").unwrap();
        let after = of_tree(root).unwrap();
        assert_eq!(
            first_difference(&before, &after).as_deref(),
            Some("b/x differs")
        );
        fs::remove_file(root.join("a")).unwrap();
        let after = of_tree(root).unwrap();
        assert_eq!(
            first_difference(&before, &after).as_deref(),
            Some("a is missing")
        );
    }

    #[test]
    fn links_out_of_the_tree_are_recorded_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, outside) = (dir.path().join("tree"), dir.path().join("outside"));
        fs::create_dir_all(&tree).unwrap();
        fs::create_dir_all(outside.join("deep")).unwrap();
        fs::write(outside.join("deep/secret"), "s").unwrap();
        symlink(&outside, tree.join("abs")).unwrap();
        symlink(".", tree.join("a")).unwrap();
        symlink("a/..", tree.join("up")).unwrap();
        symlink("deep/secret", tree.join("f")).unwrap();
        let m = of_tree(&tree).unwrap();
        let described: Vec<_> = m
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.link.as_deref()))
            .collect();
        let outside_text = outside.display().to_string();
        assert_eq!(
            described,
            [
                ("a", FileKind::Symlink, Some(".")),
                ("abs", FileKind::Symlink, Some(outside_text.as_str())),
                ("f", FileKind::Symlink, Some("deep/secret")),
                ("up", FileKind::Symlink, Some("a/..")),
            ]
        );
    }
}
