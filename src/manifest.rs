//! Per-file manifests of a directory tree: what a checkpoint promises to hold.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::file_sha256;

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

/// Walks `root` in sorted order and describes every entry below it.
pub fn of_tree(root: &Path) -> Result<Vec<Entry>, ManifestError> {
    let mut entries = Vec::new();
    walk(root, "", &mut entries)?;
    Ok(entries)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), ManifestError> {
    let io_err = |path: &str, source| ManifestError::Io {
        path: path.to_string(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(prefix, e))? {
        let entry = entry.map_err(|e| io_err(prefix, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| ManifestError::NotUtf8 {
                path: format!("{prefix}{}", n.to_string_lossy()),
            })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let rel = format!("{prefix}{name}");
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err(&rel, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| io_err(&rel, e))?;
            out.push(Entry {
                path: rel,
                kind: FileKind::Symlink,
                mode: 0o777,
                size: None,
                sha256: None,
                link: Some(target.to_string_lossy().into_owned()),
            });
        } else if ft.is_dir() {
            out.push(Entry {
                path: rel.clone(),
                kind: FileKind::Dir,
                mode,
                size: None,
                sha256: None,
                link: None,
            });
            walk(&path, &format!("{rel}/"), out)?;
        } else if ft.is_file() {
            let (sha256, size) = file_sha256(&path).map_err(|e| io_err(&rel, e))?;
            debug_assert_eq!(size, meta.size());
            out.push(Entry {
                path: rel,
                kind: FileKind::File,
                mode,
                size: Some(size),
                sha256: Some(sha256),
                link: None,
            });
        } else {
            return Err(ManifestError::Unsupported { path: rel });
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
    use std::os::unix::fs::symlink;

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
}
