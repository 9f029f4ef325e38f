//! Restoring a checkpoint from the cache: the descriptor is checked (shape,
//! signature), every blob is verified against its sha256 as it lands, the
//! tree is compared with the manifest, and only then is it committed through
//! the store's own staging-and-rename commit. A failure leaves nothing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::CacheError;
use super::layout::{self, Descriptor};
use super::remote::Remote;
use super::sign::{self, TrustedKey};
use crate::checkpoint::Store;
use crate::digest::hex_sha256;
use crate::manifest::{self, FileKind};

/// What a pull brought.
#[derive(Debug, Default)]
pub struct Pulled {
    pub files: usize,
    pub bytes: u64,
    /// Who signed it, when the project trusts only signed checkpoints.
    pub signer: Option<String>,
}

/// Why a checkpoint was not pulled.
#[derive(Debug)]
pub enum PullError {
    /// The cache did not answer the first request.
    Unreachable(CacheError),
    /// What it gave could not be used, or it stopped answering midway.
    Refused(CacheError),
}

impl PullError {
    pub fn into_inner(self) -> CacheError {
        match self {
            PullError::Unreachable(why) | PullError::Refused(why) => why,
        }
    }
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Unreachable(why) | PullError::Refused(why) => why.fmt(f),
        }
    }
}

impl From<CacheError> for PullError {
    fn from(why: CacheError) -> Self {
        PullError::Refused(why)
    }
}

/// Fetches and checks the descriptor of `key`; None if the cache has none.
pub fn descriptor(
    remote: &Remote,
    trusted: &[TrustedKey],
    key: &str,
) -> Result<Option<(Descriptor, Option<String>)>, PullError> {
    let Some(bytes) = remote
        .get(&layout::descriptor(key))
        .map_err(PullError::Unreachable)?
    else {
        return Ok(None);
    };
    let descriptor: Descriptor = serde_json::from_slice(&bytes).map_err(|e| {
        CacheError::Unsound(format!("{}: unreadable: {e}", layout::descriptor(key)))
    })?;
    descriptor.check_shape(key)?;
    let signer = sign::check(
        trusted,
        descriptor.signed.as_ref(),
        &descriptor.signed_bytes(),
    )?;
    let manifest_json =
        serde_json::to_vec_pretty(&descriptor.manifest).expect("manifest serializes");
    if hex_sha256(&manifest_json) != descriptor.meta.manifest_sha256 {
        return Err(PullError::Refused(CacheError::Unsound(
            "its manifest does not match the checksum in its meta".into(),
        )));
    }
    Ok(Some((descriptor, signer)))
}

/// Restores `key` from the cache into `store`, assembling it under
/// `staging` (on the store's filesystem). Ok(None) if the cache lacks it.
pub fn pull(
    remote: &Remote,
    trusted: &[TrustedKey],
    store: &Store,
    staging: &Path,
    key: &str,
) -> Result<Option<Pulled>, PullError> {
    let Some((descriptor, signer)) = descriptor(remote, trusted, key)? else {
        return Ok(None);
    };
    let dir = staging.join(format!("{key}.{}.pull", std::process::id()));
    let result = assemble(remote, &descriptor, &dir).and_then(|mut pulled| {
        let mut meta = descriptor.meta.clone();
        meta.manifest_sha256.clear();
        meta.extras.clear();
        let committed = store
            .commit(&dir.join("out"), Some(&dir.join("extras")), meta)
            .map_err(CacheError::local(&dir))?;
        if committed.meta != descriptor.meta {
            store.discard(key).map_err(CacheError::local(&dir))?;
            return Err(CacheError::Unsound(
                "the restored checkpoint differs from its descriptor".into(),
            ));
        }
        pulled.signer = signer;
        Ok(pulled)
    });
    let _ = fs::remove_dir_all(&dir);
    Ok(Some(result?))
}

/// Downloads every file of the checkpoint into `dir/out` (the tree) and
/// `dir/extras`, each verified, and checks the tree against the manifest.
fn assemble(remote: &Remote, descriptor: &Descriptor, dir: &Path) -> Result<Pulled, CacheError> {
    let io = |what: &Path, e: std::io::Error| CacheError::local(what)(e);
    let _ = fs::remove_dir_all(dir);
    let out = dir.join("out");
    let extras = dir.join("extras");
    for d in [&out, &extras] {
        fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    // Where each blob goes: its first path; a blob named twice in one
    // checkpoint is downloaded once and copied.
    let mut targets: BTreeMap<String, Vec<(PathBuf, Option<u32>)>> = BTreeMap::new();
    for entry in &descriptor.manifest {
        let path = out.join(&entry.path);
        match entry.kind {
            FileKind::Dir => fs::create_dir(&path).map_err(|e| io(&path, e))?,
            FileKind::Symlink => {
                let target = entry.link.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &path).map_err(|e| io(&path, e))?;
            }
            FileKind::File => {
                let sha256 = entry.sha256.clone().unwrap_or_default();
                targets
                    .entry(sha256)
                    .or_default()
                    .push((path, Some(entry.mode)));
            }
        }
    }
    for (name, sha256) in &descriptor.meta.extras {
        targets
            .entry(sha256.clone())
            .or_default()
            .push((extras.join(name), None));
    }
    let mut pulled = Pulled::default();
    let names: Vec<String> = targets.keys().map(|sha256| layout::blob(sha256)).collect();
    remote.get_each(&names, |name, bytes| {
        let sha256 = &name["blobs/".len()..];
        let bytes = bytes
            .ok_or_else(|| CacheError::Unsound(format!("{name} is missing from the cache")))?;
        let actual = hex_sha256(&bytes);
        if actual != sha256 {
            return Err(CacheError::Unsound(format!(
                "{name}: expected sha256 {sha256}, got {actual} ({} bytes)",
                bytes.len()
            )));
        }
        pulled.files += 1;
        pulled.bytes += bytes.len() as u64;
        for (path, mode) in &targets[sha256] {
            fs::write(path, &bytes).map_err(|e| io(path, e))?;
            if let Some(mode) = mode {
                set_mode(path, *mode).map_err(|e| io(path, e))?;
            }
        }
        Ok(())
    })?;
    // Directories last and deepest first, so a read-only one is filled first.
    for entry in descriptor.manifest.iter().rev() {
        if entry.kind == FileKind::Dir {
            let path = out.join(&entry.path);
            set_mode(&path, entry.mode).map_err(|e| io(&path, e))?;
        }
    }
    let actual = manifest::of_tree(&out).map_err(CacheError::local(&out))?;
    if let Some(difference) = manifest::first_difference(&descriptor.manifest, &actual) {
        return Err(CacheError::Unsound(format!(
            "the restored tree differs from its manifest: {difference}"
        )));
    }
    Ok(pulled)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
