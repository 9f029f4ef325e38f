//! `stagebuild cache ...`, and the cache a `run` uses.

use std::collections::BTreeSet;
use std::path::Path;

use super::Paths;
use crate::cache::args::CacheCommand;
use crate::cache::config::{self, CacheSettings};
use crate::cache::remote::Remote;
use crate::cache::{SharedCache, gc, push, sign};
use crate::error::{Error, IoContext, Result};
use crate::project::Project;
use crate::report::{self, Reporter, short};
use crate::state::StateDir;

/// The shared cache of a run, if one is configured.
pub fn for_run(
    project: &Path,
    flag: Option<&str>,
    state: &StateDir,
) -> Result<Option<SharedCache>> {
    Ok(config::resolve(project, flag)?
        .map(|settings| SharedCache::new(settings, state.tmp().join("cache"))))
}

/// Waits for a run's uploads and says how they went. A failed upload is a
/// warning: the build itself succeeded.
pub fn report_uploads(shared: &mut SharedCache, reporter: &mut dyn Reporter) {
    let outcomes = shared.finish();
    let (mut sent, mut bytes, mut reused, mut already) = (0, 0, 0, 0);
    for outcome in &outcomes {
        match &outcome.result {
            Ok(p) if p.already => already += 1,
            Ok(p) => {
                sent += 1;
                bytes += p.uploaded_bytes;
                reused += p.reused;
            }
            Err(why) => reporter.warn(&format!(
                "could not push {} to the cache {}: {why}",
                outcome.step,
                shared.url()
            )),
        }
    }
    if !outcomes.is_empty() {
        reporter.info(&format!(
            "cache {}: pushed {sent} checkpoints ({bytes} bytes of new files, {reused} files already there); {already} were there already",
            shared.url()
        ));
    }
}

fn settings(paths: &Paths, flag: Option<&str>) -> Result<CacheSettings> {
    config::resolve(&paths.project, flag)?.ok_or_else(|| {
        Error::Usage(format!(
            "no cache configured: pass --cache s3://BUCKET/PREFIX, set {}, or put url: in {}",
            config::URL_VAR,
            paths.project.join(config::CONFIG_FILE).display()
        ))
    })
}

fn open(settings: &CacheSettings) -> Result<Remote> {
    Remote::open(&settings.url).map_err(failed(settings))
}

fn failed(settings: &CacheSettings) -> impl Fn(crate::cache::CacheError) -> Error + '_ {
    move |e| Error::Cache {
        url: settings.url.to_string(),
        problem: e.to_string(),
    }
}

pub fn run(paths: &Paths, flag: Option<&str>, command: &CacheCommand) -> Result<()> {
    if let CacheCommand::Keygen { out } = command {
        return keygen(out);
    }
    let settings = settings(paths, flag)?;
    let remote = open(&settings)?;
    let failed = failed(&settings);
    match command {
        CacheCommand::Push { target } => push_target(paths, &settings, &remote, target),
        CacheCommand::Pull { target, overrides } => {
            pull_target(paths, &settings, target, overrides)
        }
        CacheCommand::Ls { json } => {
            let listed = gc::list(&remote, &settings.trusted).map_err(&failed)?;
            if *json {
                let rows: Vec<_> = listed
                    .iter()
                    .map(|l| match &l.descriptor {
                        Ok(d) => serde_json::json!({
                            "key": l.key, "step": d.meta.step, "version": d.meta.version,
                            "files": d.blobs().len(), "signed_by": d.signed.as_ref().map(|s| &s.key),
                        }),
                        Err(why) => serde_json::json!({ "key": l.key, "problem": why.to_string() }),
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows serialize")
                );
            } else {
                println!("cache {}: {} checkpoints", settings.url, listed.len());
                for l in &listed {
                    match &l.descriptor {
                        Ok(d) => println!(
                            "  {}  {:<20} {:<10} {} files{}",
                            short(&l.key),
                            d.meta.step,
                            d.meta.version,
                            d.blobs().len(),
                            if d.signed.is_some() { ", signed" } else { "" }
                        ),
                        Err(why) => println!("  {}  unusable: {why}", short(&l.key)),
                    }
                }
            }
            Ok(())
        }
        CacheCommand::Verify => {
            let problems = gc::verify(&remote, &settings.trusted).map_err(&failed)?;
            for problem in &problems {
                println!("{problem}");
            }
            if problems.is_empty() {
                println!("cache {}: every checkpoint and file is sound", settings.url);
                Ok(())
            } else {
                Err(Error::Cache {
                    url: settings.url.to_string(),
                    problem: format!("{} problems", problems.len()),
                })
            }
        }
        CacheCommand::Gc { dry_run } => {
            let keep = referenced_keys(paths)?;
            let collected = gc::collect(&remote, &keep, *dry_run).map_err(&failed)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            for key in &collected.removed_checkpoints {
                println!("{verb} checkpoint {key}");
            }
            println!(
                "cache {}: kept {} checkpoints and {} files; {verb} {} checkpoints and {} files ({} bytes)",
                settings.url,
                collected.kept_checkpoints,
                collected.kept_blobs,
                collected.removed_checkpoints.len(),
                collected.removed_blobs,
                collected.freed_bytes
            );
            Ok(())
        }
        CacheCommand::Keygen { .. } => unreachable!("handled above"),
    }
}

/// The keys of every step of every target of the project, as its files are
/// now: a key covers the outputs before it, which are those of the local
/// checkpoints (a step without one gives the later keys a stand-in).
fn referenced_keys(paths: &Paths) -> Result<BTreeSet<String>> {
    let project = Project::open(&paths.project)?;
    let store = StateDir::new(paths.state.clone()).store();
    let mut keys = BTreeSet::new();
    for target in project.target_names() {
        let chain = project.chain(&target, &[])?;
        keys.extend(crate::plan::keys_with(&chain, &project.lock, |key| {
            store.output(key)
        }));
    }
    Ok(keys)
}

fn push_target(
    paths: &Paths,
    settings: &CacheSettings,
    remote: &Remote,
    target: &str,
) -> Result<()> {
    remote.writable().map_err(|e| Error::Usage(e.to_string()))?;
    let state = StateDir::open(paths.state.clone())?;
    let record = state.record(target)?;
    if record.steps.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no run of target {target} to push",
            paths.state.display()
        )));
    }
    let key = settings
        .signing_key
        .as_deref()
        .map(sign::load_signing_key)
        .transpose()
        .map_err(|e| Error::Usage(e.to_string()))?;
    let store = state.store();
    let mut reporter = report::for_stderr();
    let mut failures = 0;
    for (step, recorded) in &record.steps {
        let checkpoint = match store.load(&recorded.key) {
            Ok(Some(c)) => c,
            Ok(None) => {
                reporter.warn(&format!("{step}: no checkpoint to push"));
                failures += 1;
                continue;
            }
            Err(why) => {
                reporter.warn(&format!(
                    "{step}: its checkpoint is damaged ({}); not pushed",
                    why.0
                ));
                failures += 1;
                continue;
            }
        };
        match push::push(remote, key.as_ref(), &checkpoint) {
            Ok(p) if p.already => reporter.info(&format!("{step}: already in the cache")),
            Ok(p) => reporter.info(&format!(
                "{step}: pushed {} files ({} bytes), {} already there, in {:.2}s",
                p.uploaded,
                p.uploaded_bytes,
                p.reused,
                p.elapsed.as_secs_f64()
            )),
            Err(why) => {
                reporter.warn(&format!("{step}: not pushed: {why}"));
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Cache {
            url: settings.url.to_string(),
            problem: format!("{failures} checkpoints were not pushed"),
        });
    }
    Ok(())
}

fn pull_target(
    paths: &Paths,
    settings: &CacheSettings,
    target: &str,
    overrides: &[(String, String)],
) -> Result<()> {
    let project = Project::open(&paths.project)?;
    let state = StateDir::open(paths.state.clone())?;
    let chain = project.chain(target, overrides)?;
    let _lock = state.lock(&std::env::args().collect::<Vec<_>>().join(" "))?;
    let store = state.store();
    let remote = open(settings)?;
    let mut reporter = report::for_stderr();
    let (mut pulled, mut failures) = (0, 0);
    // A key covers the outputs before it: each is known once the checkpoint
    // before it is here, pulled or not.
    let mut keys = crate::plan::Keys::new(&chain, &project.lock);
    for chain_step in &chain.steps {
        let id = &chain_step.id;
        let key = keys.next().key();
        if let Some(output) = store.output(&key) {
            reporter.info(&format!("{id}: already here"));
            keys.produced(&output);
            continue;
        }
        match crate::cache::pull::pull(
            &remote,
            &settings.trusted,
            &store,
            &state.tmp().join("cache"),
            &key,
        ) {
            Ok(Some(p)) => {
                pulled += 1;
                let signer = p
                    .signer
                    .map(|s| format!(", signed by {s}"))
                    .unwrap_or_default();
                reporter.info(&format!(
                    "{id}: pulled {} files ({} bytes){signer}",
                    p.files, p.bytes
                ));
            }
            Ok(None) => reporter.info(&format!("{id}: not in the cache")),
            Err(why) => {
                failures += 1;
                reporter.warn(&format!("{id}: not pulled: {why}"));
            }
        }
        match store.output(&key) {
            Some(output) => keys.produced(&output),
            None => {
                reporter.info(&format!(
                    "the keys after {id} follow its output, which is not here: they are pulled by `run --resume`"
                ));
                break;
            }
        }
    }
    reporter.info(&format!(
        "pulled {pulled} checkpoints; `run --resume` restores them"
    ));
    if failures > 0 {
        return Err(Error::Cache {
            url: settings.url.to_string(),
            problem: format!("{failures} checkpoints could not be pulled"),
        });
    }
    Ok(())
}

fn keygen(out: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = sign::generate().io_context(|| "reading /dev/urandom")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::Usage(format!("{}: {e}", out.display())))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))
        .io_context(|| format!("writing {}", out.display()))?;
    println!("{}", sign::public_hex(&key));
    eprintln!(
        "wrote the secret key to {}; list the public key above under trusted_keys in cache.yaml, and set {}={} where you push",
        out.display(),
        config::SIGNING_KEY_VAR,
        out.display()
    );
    Ok(())
}
