//! A rebuild's output tree against its checkpoint's, file by file.

use std::collections::BTreeMap;
use std::path::Path;

use super::inspect;
use super::{DETAIL_LIMIT, FileDiff, StepAudit};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, Entry};

/// Compares a rebuild's output tree with the original checkpoint's.
pub fn compare(
    id: &str,
    stage: &str,
    before: &Path,
    manifest: &[Entry],
    after: &Path,
) -> Result<StepAudit> {
    let rebuilt = match manifest::of_tree(after) {
        Ok(rebuilt) => rebuilt,
        Err(e) => {
            return Ok(StepAudit {
                failure: Some(format!("the rebuild's output cannot be compared: {e}")),
                ..StepAudit::uncompared(id, stage)
            });
        }
    };
    let old: BTreeMap<&str, &Entry> = manifest.iter().map(|e| (e.path.as_str(), e)).collect();
    let new: BTreeMap<&str, &Entry> = rebuilt.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut files = Vec::new();
    for (path, a) in &old {
        let diff = |change: String| FileDiff {
            path: path.to_string(),
            change,
            size_before: a.size,
            size_after: None,
            first_difference: None,
            detail: None,
        };
        match new.get(path) {
            None => files.push(diff("missing from the rebuild".into())),
            Some(b) if a.kind != b.kind => files.push(diff(format!(
                "{:?} in the original, {:?} in the rebuild",
                a.kind, b.kind
            ))),
            Some(b) if a.link != b.link => files.push(diff(format!(
                "link to {} in the original, to {} in the rebuild",
                a.link.as_deref().unwrap_or("?"),
                b.link.as_deref().unwrap_or("?")
            ))),
            Some(b) if a.sha256 != b.sha256 => {
                // Both trees are outputs: nothing on the way may be followed.
                let read = |root: &Path| {
                    let mut bytes = Vec::new();
                    crate::beneath::Root::open(root)
                        .and_then(|tree| tree.open_file(Path::new(path)))
                        .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut bytes))
                        .io_context(|| format!("reading {path}"))?;
                    Ok::<_, Error>(bytes)
                };
                let (x, y) = (read(before)?, read(after)?);
                let detail = (x.len() <= DETAIL_LIMIT && y.len() <= DETAIL_LIMIT)
                    .then(|| inspect::detail(path, &x, &y));
                files.push(FileDiff {
                    size_after: b.size,
                    first_difference: inspect::first_difference(&x, &y),
                    detail,
                    ..diff("content differs".into())
                });
                if a.mode != b.mode {
                    files.push(diff(format!(
                        "mode {:04o} in the original, {:04o} in the rebuild",
                        a.mode, b.mode
                    )));
                }
            }
            Some(b) if a.mode != b.mode => files.push(diff(format!(
                "mode {:04o} in the original, {:04o} in the rebuild",
                a.mode, b.mode
            ))),
            Some(_) => {}
        }
    }
    for (path, b) in &new {
        if !old.contains_key(path) {
            files.push(FileDiff {
                path: path.to_string(),
                change: "only in the rebuild".into(),
                size_before: None,
                size_after: b.size,
                first_difference: None,
                detail: None,
            });
        }
    }
    Ok(StepAudit {
        reproducible: files.is_empty(),
        files,
        ..StepAudit::uncompared(id, stage)
    })
}
