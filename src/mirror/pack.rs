//! Carrying a mirror across an air gap as one tar: a manifest first, then
//! each file under `sha256/<hash>`. Unpacking verifies every file before it
//! lands, so a damaged pack leaves nothing corrupt behind.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Mirror;
use crate::digest::{HashingWriter, is_sha256_hex};
use crate::error::{Error, IoContext, Result};
use crate::lock::LockEntry;

const MANIFEST: &str = "stagebuild-mirror.json";

/// A manifest lists names and checksums: 64 MiB holds hundreds of
/// thousands of files, and bounds what a hostile pack makes us read.
const MANIFEST_LIMIT: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    files: Vec<PackedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackedFile {
    sha256: String,
    size: u64,
    names: Vec<String>,
}

/// Writes every verified mirror file of `entries` to `out` (through a
/// temporary file and a rename). Returns how many files it packed.
pub fn pack(mirror: &Mirror, entries: &[&LockEntry], out: &Path) -> Result<usize> {
    let mut files: Vec<PackedFile> = Vec::new();
    for entry in entries {
        mirror.checked(entry)?;
        match files.iter_mut().find(|f| f.sha256 == entry.sha256) {
            Some(f) => f.names.push(entry.name.clone()),
            None => files.push(PackedFile {
                sha256: entry.sha256.clone(),
                size: entry.size,
                names: vec![entry.name.clone()],
            }),
        }
    }
    files.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    let manifest = serde_json::to_vec_pretty(&Manifest {
        version: 1,
        files: files.clone(),
    })
    .expect("manifest serializes");

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".pack-")
        .tempfile_in(dir)
        .io_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o444);
        h.set_mtime(0);
        h
    };
    let context = || format!("writing {}", out.display());
    builder
        .append_data(
            &mut header(manifest.len() as u64),
            MANIFEST,
            manifest.as_slice(),
        )
        .io_context(context)?;
    for file in &files {
        let source = fs::File::open(mirror.stored(&file.sha256)).io_context(context)?;
        builder
            .append_data(
                &mut header(file.size),
                format!("sha256/{}", file.sha256),
                source,
            )
            .io_context(context)?;
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .and_then(|()| tmp.as_file().sync_all())
        .io_context(context)?;
    tmp.persist(out).map_err(|e| e.error).io_context(context)?;
    Ok(files.len())
}

/// Unpacks a pack into `mirror`. Each file streams into a temporary file
/// while it is hashed, and is renamed into place only if its checksum and
/// size match the manifest. Returns the names unpacked.
pub fn unpack(mirror: &Mirror, pack: &Path) -> Result<Vec<String>> {
    let bad = |message: String| Error::input(pack, None, message);
    let file = fs::File::open(pack).io_context(|| format!("opening {}", pack.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = archive
        .entries()
        .io_context(|| format!("reading {}", pack.display()))?;

    let mut first = entries
        .next()
        .ok_or_else(|| bad("empty pack".into()))?
        .io_context(|| format!("reading {}", pack.display()))?;
    if first.path_bytes().as_ref() != MANIFEST.as_bytes() {
        return Err(bad(format!("the pack does not start with {MANIFEST}")));
    }
    let mut manifest_bytes = Vec::new();
    (&mut first)
        .take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut manifest_bytes)
        .io_context(|| format!("reading {}", pack.display()))?;
    if manifest_bytes.len() as u64 > MANIFEST_LIMIT {
        return Err(bad(format!(
            "{MANIFEST} is larger than {MANIFEST_LIMIT} bytes"
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    check_manifest(&manifest).map_err(|why| bad(format!("{MANIFEST}: {why}")))?;

    let tmp_dir = mirror.tmp_dir()?;
    let mut unpacked = Vec::new();
    for entry in entries {
        let mut entry = entry.io_context(|| format!("reading {}", pack.display()))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let sha = path
            .strip_prefix("sha256/")
            .filter(|s| is_sha256_hex(s) && entry.header().entry_type().is_file())
            .ok_or_else(|| bad(format!("unexpected entry {path:?}")))?
            .to_string();
        let file = manifest
            .files
            .iter()
            .find(|f| f.sha256 == sha)
            .ok_or_else(|| bad(format!("{path} is not in the manifest")))?;
        let names: Vec<&str> = file.names.iter().map(String::as_str).collect();
        let tmp = tmp_dir.join(format!("{sha}.unpack"));
        // A new file: a leftover of a killed unpack goes first, and nothing
        // already there (a link) is written through.
        let _ = fs::remove_file(&tmp);
        let out =
            fs::File::create_new(&tmp).io_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = HashingWriter::new(out);
        let copied = std::io::copy(&mut entry, &mut writer);
        let (_, actual, size) = writer.finish();
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(bad(format!("{} ({path}): {e}", names.join(", "))));
        }
        if actual != file.sha256 || size != file.size {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Checksum {
                name: names.join(", "),
                path: format!("{}:{path}", pack.display()).into(),
                expected: format!("{} ({} bytes)", file.sha256, file.size),
                actual: format!("{actual} ({size} bytes)"),
            });
        }
        mirror.land(&file.sha256, file.size, &names, &tmp)?;
        unpacked.extend(file.names.iter().cloned());
    }
    Ok(unpacked)
}

/// Every name in a pack's manifest becomes a link in the mirror's `by-name/`,
/// so each must be a plain file name; each checksum names a stored file.
fn check_manifest(manifest: &Manifest) -> Result<(), BadManifest> {
    if manifest.version != 1 {
        return Err(BadManifest::Version(manifest.version));
    }
    for file in &manifest.files {
        if !is_sha256_hex(&file.sha256) {
            return Err(BadManifest::NotASha256(file.sha256.clone()));
        }
        if file.names.is_empty() {
            return Err(BadManifest::NoName(file.sha256.clone()));
        }
        for name in &file.names {
            crate::names::plain_file_name(name)?;
        }
    }
    Ok(())
}

/// Why a pack's manifest is refused.
#[derive(Debug, thiserror::Error)]
enum BadManifest {
    #[error("unsupported version {0} (this stagebuild reads 1)")]
    Version(u32),
    #[error("{0:?} is not a sha256")]
    NotASha256(String),
    #[error("{0} has no name")]
    NoName(String),
    #[error("source name {0}")]
    Name(#[from] crate::names::Refused),
}
