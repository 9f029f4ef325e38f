//! Restoring a checkpoint from the cache: the descriptor is checked (shape,
//! signature), every blob is verified against its sha256 as it lands, the
//! tree is compared with the manifest, and only then is it committed through
//! the store's own staging-and-rename commit. A failure leaves nothing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// Fetches and checks the descriptor of `key`; None if the cache has none.
pub fn descriptor(
    remote: &Remote,
    trusted: &[TrustedKey],
    key: &str,
) -> Result<Option<(Descriptor, Option<String>)>, String> {
    let Some(bytes) = remote.get(&layout::descriptor(key))? else {
        return Ok(None);
    };
    let descriptor: Descriptor = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: unreadable: {e}", layout::descriptor(key)))?;
    descriptor.check_shape(key)?;
    let signer = sign::check(
        trusted,
        descriptor.signed.as_ref(),
        &descriptor.signed_bytes(),
    )?;
    let manifest_json =
        serde_json::to_vec_pretty(&descriptor.manifest).expect("manifest serializes");
    if hex_sha256(&manifest_json) != descriptor.meta.manifest_sha256 {
        return Err("its manifest does not match the checksum in its meta".into());
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
) -> Result<Option<Pulled>, String> {
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
            .map_err(|e| e.to_string())?;
        if committed.meta != descriptor.meta {
            store.discard(key).map_err(|e| e.to_string())?;
            return Err("the restored checkpoint differs from its descriptor".into());
        }
        pulled.signer = signer;
        Ok(pulled)
    });
    let _ = fs::remove_dir_all(&dir);
    result.map(Some)
}

/// Downloads every file of the checkpoint into `dir/out` (the tree) and
/// `dir/extras`, each verified, and checks the tree against the manifest.
fn assemble(remote: &Remote, descriptor: &Descriptor, dir: &Path) -> Result<Pulled, String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let _ = fs::remove_dir_all(dir);
    let out = dir.join("out");
    let extras = dir.join("extras");
    for d in [&out, &extras] {
        fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    let mut pulled = Pulled::default();
    // A blob named twice in one checkpoint is downloaded once.
    let mut landed: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut fetch = |sha256: &str, to: &Path, pulled: &mut Pulled| -> Result<(), String> {
        if let Some(first) = landed.get(sha256) {
            fs::copy(first, to).map_err(|e| io(to, e))?;
            return Ok(());
        }
        let bytes = remote
            .get(&layout::blob(sha256))?
            .ok_or_else(|| format!("{} is missing from the cache", layout::blob(sha256)))?;
        let actual = hex_sha256(&bytes);
        if actual != sha256 {
            return Err(format!(
                "{}: expected sha256 {sha256}, got {actual} ({} bytes)",
                layout::blob(sha256),
                bytes.len()
            ));
        }
        fs::write(to, &bytes).map_err(|e| io(to, e))?;
        pulled.files += 1;
        pulled.bytes += bytes.len() as u64;
        landed.insert(sha256.to_string(), to.to_path_buf());
        Ok(())
    };
    for entry in &descriptor.manifest {
        let path = out.join(&entry.path);
        match entry.kind {
            FileKind::Dir => fs::create_dir(&path).map_err(|e| io(&path, e))?,
            FileKind::Symlink => {
                let target = entry.link.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &path).map_err(|e| io(&path, e))?;
            }
            FileKind::File => {
                let sha256 = entry.sha256.as_deref().unwrap_or_default();
                fetch(sha256, &path, &mut pulled)?;
                set_mode(&path, entry.mode).map_err(|e| io(&path, e))?;
            }
        }
    }
    // Directories last and deepest first, so a read-only one is filled first.
    for entry in descriptor.manifest.iter().rev() {
        if entry.kind == FileKind::Dir {
            let path = out.join(&entry.path);
            set_mode(&path, entry.mode).map_err(|e| io(&path, e))?;
        }
    }
    for (name, sha256) in &descriptor.meta.extras {
        fetch(sha256, &extras.join(name), &mut pulled)?;
    }
    let actual = manifest::of_tree(&out).map_err(|e| e.to_string())?;
    if let Some(difference) = manifest::first_difference(&descriptor.manifest, &actual) {
        return Err(format!(
            "the restored tree differs from its manifest: {difference}"
        ));
    }
    Ok(pulled)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
