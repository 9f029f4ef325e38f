//! `stagebuild lock …`

use std::path::Path;
use std::time::Duration;

use super::Paths;
use crate::cli::LockCommand;
use crate::digest::file_sha256;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;
use crate::lock::{Lock, LockEntry};
use crate::lockedit;
use crate::mirror::{Mirror, fetch::Progress, http::HttpFetcher};
use crate::outputs;
use crate::plan::{Plan, StepState};
use crate::project::Project;
use crate::state::StateDir;

struct Quiet;

impl Progress for Quiet {
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
}

pub fn run(paths: &Paths, command: &LockCommand) -> Result<()> {
    match command {
        LockCommand::Outputs { target } => record_outputs(paths, target),
        LockCommand::Add {
            apt: Some(apt),
            source,
            name,
            url,
            update,
        } => super::lock_apt::add(
            paths,
            apt,
            source.as_deref(),
            name.as_deref(),
            url.as_deref(),
            *update,
        ),
        LockCommand::Add {
            apt: None,
            source: None,
            ..
        } => Err(Error::Usage(
            "lock add needs a URL or a file, or --apt PKG=VERSION".into(),
        )),
        LockCommand::Add {
            apt: None,
            source: Some(source),
            name,
            url,
            update,
        } => add(paths, source, name.as_deref(), url.as_deref(), *update),
    }
}

/// Writes the outputs file from a completed run's checkpoints, each verified.
fn record_outputs(paths: &Paths, target: &str) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let state = StateDir::open(paths.state.clone())?;
    let plan = Plan::load(&project, &state, target, &[])?;
    let store = state.store();
    let mut manifests = Vec::new();
    for (planned, state) in plan.steps.iter().zip(&plan.states) {
        let checkpoint = match (state, store.load(&planned.key)) {
            (StepState::Done, Ok(Some(checkpoint))) => checkpoint,
            _ => {
                return Err(Error::Usage(format!(
                    "step {} of {target} has no valid checkpoint; finish the run first (stagebuild run --target {target} --resume)",
                    planned.id()
                )));
            }
        };
        manifests.push((planned.id().to_string(), checkpoint.manifest));
    }
    let path = outputs::path_for(&project.root, target);
    atomic_write(&path, outputs::render(target, &manifests).as_bytes())?;
    println!(
        "recorded the outputs of {} steps in {}",
        manifests.len(),
        path.display()
    );
    Ok(())
}

fn add(
    paths: &Paths,
    source: &str,
    name: Option<&str>,
    url: Option<&str>,
    update: bool,
) -> Result<()> {
    let lock_path = paths.project.join("sources.lock");
    let lock = Lock::load(&lock_path)?;
    let mirror = Mirror::new(paths.mirror.clone());

    // The file: downloaded into the mirror's scratch space, or a local one.
    let is_url = source.contains("://");
    let published = match (is_url, url) {
        (true, _) => source.to_string(),
        (false, Some(url)) => url.to_string(),
        (false, None) => {
            return Err(Error::Usage(format!(
                "{source} is a local file: say where it is published with --url, so that others can fetch it"
            )));
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("lock-add-")
        .tempfile_in(mirror.tmp_dir()?)
        .io_context(|| "creating a temporary file in the mirror")?;
    let file: &Path = if is_url {
        let http = HttpFetcher::new(Duration::from_secs(30), 4, Duration::from_millis(500))
            .map_err(|e| Error::Host {
                context: "setting up HTTP".into(),
                problem: e.to_string(),
            })?;
        http.fetch_url(source, None, tmp.path(), &Quiet)
            .map_err(|e| Error::Fetch(format!("{source}: {e}")))?;
        tmp.path()
    } else {
        Path::new(source)
    };
    let (sha256, size) = file_sha256(file).io_context(|| format!("reading {}", file.display()))?;
    if size == 0 {
        return Err(Error::Usage(format!(
            "{source} is empty; an empty file is never a source"
        )));
    }
    let name = match name {
        Some(name) => name.to_string(),
        None => source
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "cannot tell a file name from {source}; give --name"
                ))
            })?
            .to_string(),
    };

    // The name becomes a file name in the mirror; the URL is what others fetch.
    crate::names::plain_file_name(&name).map_err(|why| Error::Usage(format!("--name {why}")))?;
    crate::names::download_url(&published).map_err(|why| Error::Usage(why.to_string()))?;

    let text = std::fs::read_to_string(&lock_path)
        .io_context(|| format!("reading {}", lock_path.display()))?;
    match lock.get(&name) {
        Some(old) if old.sha256 == sha256 && old.size == size => {
            println!("{name} is already pinned to sha256 {sha256}");
            return adopt(&mirror, &lock, &name, file);
        }
        Some(old) if !update => {
            return Err(Error::Usage(format!(
                "{name} is already in {} with another checksum:\n  pinned  sha256 {} ({} bytes)\n  this    sha256 {sha256} ({size} bytes)\nPass --update to change it.",
                lock_path.display(),
                old.sha256,
                old.size
            )));
        }
        _ => {}
    }
    let entry = match lock.get(&name) {
        Some(old) => LockEntry {
            sha256,
            size,
            ..old.clone()
        },
        None => LockEntry {
            name: name.clone(),
            sha256,
            size,
            urls: vec![published],
            apt: None,
            git: None,
            line: None,
        },
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
    println!(
        "pinned {name}: sha256 {}, {} bytes",
        entry.sha256, entry.size
    );
    let lock = Lock::parse(&lock_path, new_text.as_bytes())?;
    adopt(&mirror, &lock, &name, file)
}

fn adopt(mirror: &Mirror, lock: &Lock, name: &str, file: &Path) -> Result<()> {
    let entry = lock.get(name).ok_or_else(|| {
        Error::input(&lock.path, None, format!("{name:?} is not in it after all"))
    })?;
    if !mirror.has(entry) {
        mirror.adopt(entry, file)?;
    }
    Ok(())
}
