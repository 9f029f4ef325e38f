//! The cache's layout: every file once under `blobs/SHA256`, and one
//! descriptor per checkpoint under `checkpoints/KEY.json` naming them all.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

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
    pub fn check_shape(&self, key: &str) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this stagebuild reads {FORMAT})",
                self.format
            ));
        }
        if self.meta.key != key {
            return Err(format!("it describes key {}", self.meta.key));
        }
        let mut dirs = BTreeSet::new();
        for entry in &self.manifest {
            let parts: Vec<&str> = entry.path.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                return Err(format!("{:?}: not a path inside a checkpoint", entry.path));
            }
            // Its directory must be one the manifest made, before it: never a
            // symlink, which would lead the restore elsewhere.
            if parts.len() > 1 && !dirs.contains(&parts[..parts.len() - 1].join("/")) {
                return Err(format!(
                    "{}: its directory is not listed before it",
                    entry.path
                ));
            }
            match entry.kind {
                FileKind::Dir => {
                    dirs.insert(entry.path.clone());
                }
                FileKind::File => {
                    if !entry.sha256.as_deref().is_some_and(is_sha256_hex) || entry.size.is_none() {
                        return Err(format!("{}: no sha256 and size", entry.path));
                    }
                }
                FileKind::Symlink => {
                    if entry.link.is_none() {
                        return Err(format!("{}: a link without a target", entry.path));
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
                return Err(format!("extra {name:?}: not a file a checkpoint can keep"));
            }
        }
        Ok(())
    }
}
