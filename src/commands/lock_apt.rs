//! `stagebuild lock add --apt PKG=VERSION`: pin a file of a distribution's
//! source package, fetched through the host's package tool, with the `apt:`
//! source that lets `mirror fetch` get it again.

use std::path::{Path, PathBuf};

use super::Paths;
use crate::digest::file_sha256;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;
use crate::lock::{AptSource, Lock, LockEntry};
use crate::lockedit;
use crate::mirror::Mirror;
use crate::mirror::apt::run_apt_get;

pub fn add(
    paths: &Paths,
    apt: &str,
    file: Option<&str>,
    name: Option<&str>,
    url: Option<&str>,
    update: bool,
) -> Result<()> {
    let (package, version) = apt
        .split_once('=')
        .filter(|(p, v)| !p.is_empty() && !v.is_empty())
        .ok_or_else(|| Error::Usage(format!("--apt wants PKG=VERSION, got {apt:?}")))?;
    if update {
        return Err(Error::Usage(
            "--update is for URL and file sources; to change an apt source, edit its entry in sources.lock"
                .into(),
        ));
    }
    if let Some(url) = url.filter(|u| !u.contains("://")) {
        return Err(Error::Usage(format!("--url {url:?} is not a URL")));
    }
    let lock_path = paths.project.join("sources.lock");
    let lock = Lock::load(&lock_path)?;
    let mirror = Mirror::new(paths.mirror.clone());

    let work = tempfile::Builder::new()
        .prefix("lock-add-apt-")
        .tempdir_in(mirror.tmp_dir()?)
        .io_context(|| "creating a temporary directory in the mirror")?;
    let failure = run_apt_get(apt, false, work.path()).map_err(|e| Error::Fetch(e.to_string()))?;
    let file_name = match file {
        Some(file) => plain_name(file)?.to_string(),
        None => orig_tarball(work.path(), failure.as_deref())?,
    };
    let path = work.path().join(&file_name);
    if !path.is_file() {
        return Err(Error::Fetch(format!(
            "apt-get source {apt} did not give {file_name}{}",
            failure.map(|f| format!(": {f}")).unwrap_or_default()
        )));
    }
    let (sha256, size) = file_sha256(&path).io_context(|| format!("reading {}", path.display()))?;
    check_against_dsc(work.path(), &file_name, &sha256, size)?;

    let name = match name {
        Some(name) => plain_name(name)?.to_string(),
        None => match url {
            Some(url) => {
                plain_name(url.trim_end_matches('/').rsplit('/').next().unwrap_or(""))?.to_string()
            }
            None => file_name.clone(),
        },
    };
    match lock.get(&name) {
        Some(old) if old.sha256 == sha256 && old.size == size => {
            println!("{name} is already pinned to sha256 {sha256}");
        }
        Some(old) => {
            return Err(Error::Usage(format!(
                "{name} is already in {} with another checksum:\n  pinned  sha256 {} ({} bytes)\n  apt     sha256 {sha256} ({size} bytes)",
                lock_path.display(),
                old.sha256,
                old.size
            )));
        }
        None => {
            let text = std::fs::read_to_string(&lock_path)
                .io_context(|| format!("reading {}", lock_path.display()))?;
            let entry = LockEntry {
                name: name.clone(),
                sha256: sha256.clone(),
                size,
                urls: url.map(str::to_string).into_iter().collect(),
                apt: Some(AptSource {
                    package: package.to_string(),
                    version: version.to_string(),
                    file: file_name.clone(),
                    binary: false,
                }),
                git: None,
                line: None,
            };
            // The edit is parsed back, as sources.lock, before it replaces it.
            let (new_text, rewritten) = lockedit::with_entry(&lock_path, &lock, &text, &entry)?;
            if rewritten {
                eprintln!(
                    "note: {} was written out again whole in block style (its comments are not kept)",
                    lock_path.display()
                );
            }
            atomic_write(&lock_path, new_text.as_bytes())?;
            println!("pinned {name}: sha256 {sha256}, {size} bytes, from apt-get source {apt}");
        }
    }
    let lock = Lock::load(&lock_path)?;
    let entry = lock.get(&name).expect("pinned above");
    if !mirror.has(entry) {
        mirror.adopt(entry, &path)?;
    }
    Ok(())
}

fn plain_name(name: &str) -> Result<&str> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::Usage(format!(
            "{name:?} is not a plain file name; give --name"
        )));
    }
    Ok(name)
}

/// The upstream tarball of a source package, `PKG_VERSION.orig.tar.*`.
fn orig_tarball(dir: &Path, failure: Option<&str>) -> Result<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .io_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    let origs: Vec<&String> = files
        .iter()
        .filter(|f| f.contains(".orig.tar.") && !f.ends_with(".asc"))
        .collect();
    match origs.as_slice() {
        [one] => Ok(one.to_string()),
        [] if files.is_empty() => Err(Error::Fetch(format!(
            "apt-get source gave no file{}",
            failure.map(|f| format!(": {f}")).unwrap_or_default()
        ))),
        _ => Err(Error::Usage(format!(
            "cannot tell which file to pin: apt-get gave {}{}; name one after --apt",
            if files.is_empty() {
                "nothing".to_string()
            } else {
                files.join(", ")
            },
            failure.map(|f| format!(" ({f})")).unwrap_or_default()
        ))),
    }
}

/// Checks the file against the source package's .dsc when apt-get wrote one.
/// (apt itself checks every file against the archive's index before moving
/// it out of its partial directory.)
fn check_against_dsc(dir: &Path, file: &str, sha256: &str, size: u64) -> Result<()> {
    let dsc: Option<PathBuf> = std::fs::read_dir(dir)
        .io_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "dsc"));
    let Some(dsc) = dsc else { return Ok(()) };
    let text = std::fs::read_to_string(&dsc).io_context(|| format!("reading {}", dsc.display()))?;
    let listed = text
        .lines()
        .skip_while(|l| !l.starts_with("Checksums-Sha256:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?, words.next()?))
        })
        .find(|(_, _, f)| *f == file);
    match listed {
        Some((expected, expected_size, _))
            if expected != sha256 || expected_size != size.to_string() =>
        {
            Err(Error::Checksum {
                name: file.to_string(),
                path: dsc,
                expected: format!("{expected} ({expected_size} bytes)"),
                actual: format!("{sha256} ({size} bytes)"),
            })
        }
        _ => Ok(()),
    }
}
