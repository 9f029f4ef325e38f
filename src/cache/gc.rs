//! Looking after a cache as a whole: list its checkpoints, verify every
//! object, and collect what no target of the project references.

use std::collections::{BTreeMap, BTreeSet};

use super::error::CacheError;
use super::layout::{self, Descriptor};
use super::pull;
use super::remote::Remote;
use super::sign::TrustedKey;
use crate::digest::hex_sha256;

/// A checkpoint in the cache, as `cache ls` shows it.
pub struct Listed {
    pub key: String,
    /// The descriptor, or why it could not be used.
    pub descriptor: Result<Descriptor, CacheError>,
}

/// The keys of the checkpoints the cache holds.
pub fn keys(remote: &Remote) -> Result<Vec<String>, CacheError> {
    let mut keys: Vec<String> = remote
        .list("checkpoints")?
        .into_iter()
        .filter_map(|(name, _)| name.strip_suffix(".json").map(str::to_string))
        .collect();
    keys.sort();
    Ok(keys)
}

pub fn list(remote: &Remote, trusted: &[TrustedKey]) -> Result<Vec<Listed>, CacheError> {
    Ok(keys(remote)?
        .into_iter()
        .map(|key| Listed {
            descriptor: match pull::descriptor(remote, trusted, &key) {
                Ok(Some((descriptor, _))) => Ok(descriptor),
                Ok(None) => Err(CacheError::Unsound("vanished while listing".into())),
                Err(why) => Err(why.into_inner()),
            },
            key,
        })
        .collect())
}

/// What `cache verify` found wrong, one line each (empty: all sound).
pub fn verify(remote: &Remote, trusted: &[TrustedKey]) -> Result<Vec<String>, CacheError> {
    let mut problems = Vec::new();
    let mut needed: BTreeMap<String, String> = BTreeMap::new();
    for listed in list(remote, trusted)? {
        match listed.descriptor {
            Ok(descriptor) => {
                for blob in descriptor.blobs() {
                    needed.entry(blob).or_insert_with(|| listed.key.clone());
                }
            }
            Err(why) => problems.push(format!("checkpoint {}: {why}", listed.key)),
        }
    }
    let names: Vec<String> = needed.keys().map(|sha256| layout::blob(sha256)).collect();
    remote.get_each(&names, |name, bytes| {
        let sha256 = &name["blobs/".len()..];
        let key = &needed[sha256];
        match bytes {
            None => problems.push(format!("blob {sha256} (of {key}) is missing")),
            Some(bytes) if hex_sha256(&bytes) != sha256 => problems.push(format!(
                "blob {sha256} (of {key}) is damaged: its sha256 is {}",
                hex_sha256(&bytes)
            )),
            Some(_) => {}
        }
        Ok(())
    })?;
    problems.sort();
    Ok(problems)
}

#[derive(Debug, Default)]
pub struct Collected {
    pub kept_checkpoints: usize,
    pub removed_checkpoints: Vec<String>,
    pub kept_blobs: usize,
    pub removed_blobs: usize,
    pub freed_bytes: u64,
}

/// Removes every checkpoint whose key is not in `keep`, then every blob no
/// remaining checkpoint names. Descriptors go first, so a checkpoint never
/// loses its files while it is listed. With `dry_run`, only reports.
pub fn collect(
    remote: &Remote,
    keep: &BTreeSet<String>,
    dry_run: bool,
) -> Result<Collected, CacheError> {
    let mut collected = Collected::default();
    let mut needed = BTreeSet::new();
    for key in keys(remote)? {
        if keep.contains(&key) {
            collected.kept_checkpoints += 1;
            // Kept whatever its state: `cache verify` is the place to
            // report a damaged one. Its blobs are needed if it can be read.
            if let Ok(Some((descriptor, _))) = pull::descriptor(remote, &[], &key) {
                needed.extend(descriptor.blobs());
            }
        } else {
            if !dry_run {
                remote.delete(&layout::descriptor(&key))?;
            }
            collected.removed_checkpoints.push(key);
        }
    }
    for (sha256, size) in remote.list("blobs")? {
        if needed.contains(&sha256) {
            collected.kept_blobs += 1;
        } else {
            if !dry_run {
                remote.delete(&layout::blob(&sha256))?;
            }
            collected.removed_blobs += 1;
            collected.freed_bytes += size;
        }
    }
    Ok(collected)
}
