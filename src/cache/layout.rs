//! The cache's layout: every file once under `blobs/SHA256`, and one
//! descriptor per checkpoint under `checkpoints/KEY.json` naming them all.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::sign::Signed;
use crate::checkpoint::Meta;
use crate::digest::is_sha256_hex;
use crate::manifest::{Entry, FileKind};

pub const FORMAT: u32 = 1;

pub fn blob(sha256: &str) -> String {
    format!("blobs/{sha256}")
}

pub fn descriptor(key: &str) -> String {
    format!("checkpoints/{key}.json")
}

/// What a checkpoint is: its meta (key, inputs, extras with their sha256)
/// and its manifest. Together they name every blob it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    pub format: u32,
    pub meta: Meta,
    pub manifest: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<Signed>,
}

impl Descriptor {
    /// The bytes a signature covers: everything but the signature, as
    /// canonical JSON, so it does not depend on how the file was formatted.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "format": self.format,
            "meta": self.meta,
            "manifest": self.manifest,
        });
        serde_json::to_vec(&value).expect("descriptor serializes")
    }

    /// Every blob the checkpoint needs, each once.
    pub fn blobs(&self) -> BTreeSet<String> {
        self.manifest
            .iter()
            .filter_map(|e| e.sha256.clone())
            .chain(self.meta.extras.values().cloned())
            .collect()
    }

    /// Refuses a descriptor that could write outside the checkpoint it is
    /// restored into, or name objects outside `blobs/`.
    pub fn check_shape(&self, key: &str) -> Result<(), CacheError> {
        if self.format != FORMAT {
            return Err(CacheError::Unsound(format!(
                "format {} (this stagebuild reads {FORMAT})",
                self.format
            )));
        }
        if self.meta.key != key {
            return Err(CacheError::Unsound(format!(
                "it describes key {}",
                self.meta.key
            )));
        }
        let mut dirs = BTreeSet::new();
        for entry in &self.manifest {
            let parts: Vec<&str> = entry.path.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                return Err(CacheError::Unsound(format!(
                    "{:?}: not a path inside a checkpoint",
                    entry.path
                )));
            }
            // Its directory must be one the manifest made, before it: never a
            // symlink, which would lead the restore elsewhere.
            if parts.len() > 1 && !dirs.contains(&parts[..parts.len() - 1].join("/")) {
                return Err(CacheError::Unsound(format!(
                    "{}: its directory is not listed before it",
                    entry.path
                )));
            }
            match entry.kind {
                FileKind::Dir => {
                    dirs.insert(entry.path.clone());
                }
                FileKind::File => {
                    if !entry.sha256.as_deref().is_some_and(is_sha256_hex) || entry.size.is_none() {
                        return Err(CacheError::Unsound(format!(
                            "{}: no sha256 and size",
                            entry.path
                        )));
                    }
                }
                FileKind::Symlink => {
                    if entry.link.is_none() {
                        return Err(CacheError::Unsound(format!(
                            "{}: a link without a target",
                            entry.path
                        )));
                    }
                }
            }
        }
        for (name, sha256) in &self.meta.extras {
            let plain = !name.is_empty()
                && !name.contains('/')
                && !matches!(
                    name.as_str(),
                    "." | ".." | "tree" | "manifest.json" | "meta.json"
                );
            if !plain || !is_sha256_hex(sha256) {
                return Err(CacheError::Unsound(format!(
                    "extra {name:?}: not a file a checkpoint can keep"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::KeyInputs;

    fn entry(path: &str, kind: FileKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o755,
            size: (kind == FileKind::File).then_some(1),
            sha256: (kind == FileKind::File).then(|| "a".repeat(64)),
            link: (kind == FileKind::Symlink).then(|| "/etc".into()),
        }
    }

    fn descriptor(manifest: Vec<Entry>) -> Descriptor {
        Descriptor {
            format: FORMAT,
            meta: Meta {
                key: "k".into(),
                step: "s".into(),
                name: "s".into(),
                version: "1".into(),
                stage: "host".into(),
                runner: "host".into(),
                inputs: KeyInputs {
                    definition: "d".into(),
                    sources: "s".into(),
                    patches: "p".into(),
                    files: "f".into(),
                    runner: "r".into(),
                    earlier: String::new(),
                },
                manifest_sha256: String::new(),
                extras: Default::default(),
                built: None,
            },
            manifest,
            signed: None,
        }
    }

    #[test]
    fn a_descriptor_that_would_write_outside_its_tree_is_refused() {
        let sound = descriptor(vec![
            entry("usr", FileKind::Dir),
            entry("usr/bin", FileKind::Dir),
            entry("usr/bin/x", FileKind::File),
            entry("usr/lib", FileKind::Symlink),
        ]);
        assert_eq!(sound.check_shape("k"), Ok(()));
        assert!(
            sound
                .check_shape("other")
                .unwrap_err()
                .to_string()
                .contains("describes key k")
        );

        let refused = |manifest: Vec<Entry>| {
            descriptor(manifest)
                .check_shape("k")
                .unwrap_err()
                .to_string()
        };
        assert!(refused(vec![entry("../x", FileKind::File)]).contains("not a path inside"));
        assert!(refused(vec![entry("/x", FileKind::File)]).contains("not a path inside"));
        // Through a symlink the manifest made: the link could point anywhere.
        let e = refused(vec![
            entry("lib", FileKind::Symlink),
            entry("lib/x", FileKind::File),
        ]);
        assert!(e.contains("its directory is not listed before it"), "{e}");
        let mut no_sum = entry("x", FileKind::File);
        no_sum.sha256 = Some("../../etc/passwd".into());
        assert!(refused(vec![no_sum]).contains("no sha256"));

        let mut extra = descriptor(vec![]);
        extra
            .meta
            .extras
            .insert("../disk.qcow2".into(), "a".repeat(64));
        assert!(
            extra
                .check_shape("k")
                .unwrap_err()
                .to_string()
                .contains("extra")
        );
    }
}
