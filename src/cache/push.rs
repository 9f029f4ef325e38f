//! Sharing a checkpoint: each of its files is uploaded once, by sha256,
//! unless the cache already holds it, and its descriptor last, so that a
//! descriptor in the cache never names a blob that is not there yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use super::config::CacheSettings;
use super::error::CacheError;
use super::layout::{self, Descriptor, FORMAT};
use super::remote::Remote;
use super::sign;
use crate::checkpoint::Checkpoint;
use crate::digest::hex_sha256;

/// What pushing one checkpoint did.
#[derive(Debug, Default, Clone)]
pub struct Pushed {
    /// The cache already had its descriptor: nothing was sent.
    pub already: bool,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs the cache already held (shared with other checkpoints).
    pub reused: usize,
    pub elapsed: Duration,
}

/// The descriptor of a local checkpoint, signed if a key is given.
pub fn describe(checkpoint: &Checkpoint, key: Option<&SigningKey>) -> Descriptor {
    let mut descriptor = Descriptor {
        format: FORMAT,
        meta: checkpoint.meta.clone(),
        manifest: checkpoint.manifest.clone(),
        signed: None,
    };
    descriptor.signed = key.map(|k| sign::sign(k, &descriptor.signed_bytes()));
    descriptor
}

pub fn push(
    remote: &Remote,
    key: Option<&SigningKey>,
    checkpoint: &Checkpoint,
) -> Result<Pushed, CacheError> {
    remote.writable()?;
    let started = Instant::now();
    let name = layout::descriptor(&checkpoint.meta.key);
    if remote.exists(&name)? {
        return Ok(Pushed {
            already: true,
            elapsed: started.elapsed(),
            ..Pushed::default()
        });
    }
    let descriptor = describe(checkpoint, key);
    // Where each blob is on disk: a tree file, or an extra beside the tree.
    let mut local: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in &checkpoint.manifest {
        if let Some(sha256) = &entry.sha256 {
            local
                .entry(sha256.clone())
                .or_insert_with(|| checkpoint.tree.join(&entry.path));
        }
    }
    for (extra, sha256) in &checkpoint.meta.extras {
        local
            .entry(sha256.clone())
            .or_insert_with(|| checkpoint.dir.join(extra));
    }
    let names: Vec<String> = local.keys().map(|sha256| layout::blob(sha256)).collect();
    let present = remote.exists_each(&names)?;
    let mut pushed = Pushed {
        reused: present.iter().filter(|p| **p).count(),
        ..Pushed::default()
    };
    let missing = local
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|((sha256, path), _)| {
            let bytes = std::fs::read(path).map_err(CacheError::local(path))?;
            // The checkpoint was verified when committed or loaded; a file
            // changed since then must not be shared under its old name.
            if hex_sha256(&bytes) != *sha256 {
                return Err(CacheError::local(path)(
                    "it changed since it was checkpointed",
                ));
            }
            pushed.uploaded += 1;
            pushed.uploaded_bytes += bytes.len() as u64;
            Ok((layout::blob(sha256), bytes))
        });
    remote.put_each(missing)?;
    let json = serde_json::to_vec_pretty(&descriptor).expect("descriptor serializes");
    remote.put(&name, json)?;
    pushed.elapsed = started.elapsed();
    Ok(pushed)
}

/// One checkpoint's upload: which step, and how it went.
pub struct Outcome {
    pub step: String,
    pub result: Result<Pushed, CacheError>,
}

/// Uploads checkpoints on a thread of its own while the next step builds.
pub struct Uploader {
    sender: Option<mpsc::Sender<Checkpoint>>,
    worker: Option<JoinHandle<Vec<Outcome>>>,
}

impl Uploader {
    pub fn start(settings: CacheSettings) -> Uploader {
        let (sender, receiver) = mpsc::channel::<Checkpoint>();
        let worker = std::thread::spawn(move || {
            let opened = Remote::open(&settings.url).and_then(|remote| {
                let key = settings
                    .signing_key
                    .as_deref()
                    .map(sign::load_signing_key)
                    .transpose()?;
                Ok((remote, key))
            });
            // After one failure the rest are not tried: a cache that is down
            // would otherwise cost its timeouts once per step at the run's end.
            let mut failed: Option<String> = None;
            receiver
                .into_iter()
                .map(|checkpoint| {
                    let result = match (&opened, &failed) {
                        (Err(e), _) => Err(e.clone()),
                        (_, Some(step)) => Err(CacheError::NotTried {
                            after: step.clone(),
                        }),
                        (Ok((remote, key)), None) => push(remote, key.as_ref(), &checkpoint),
                    };
                    if result.is_err() && failed.is_none() {
                        failed = Some(checkpoint.meta.step.clone());
                    }
                    Outcome {
                        step: checkpoint.meta.step.clone(),
                        result,
                    }
                })
                .collect()
        });
        Uploader {
            sender: Some(sender),
            worker: Some(worker),
        }
    }

    pub fn offer(&self, checkpoint: Checkpoint) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(checkpoint);
        }
    }

    /// Waits for every upload offered so far to finish or fail.
    pub fn finish(&mut self) -> Vec<Outcome> {
        self.sender.take();
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(outcomes)) => outcomes,
            Some(Err(_)) => vec![Outcome {
                step: "(uploader)".into(),
                result: Err(CacheError::Open("the upload thread panicked".into())),
            }],
            None => Vec::new(),
        }
    }
}
