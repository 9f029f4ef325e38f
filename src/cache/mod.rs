//! A shared checkpoint cache on an object store (S3, or a read-only HTTP
//! mirror of the same layout). The engine sees only [`CheckpointCache`]:
//! before a step is built it asks for the step's checkpoint, and after a
//! step it offers its checkpoint. No cache is the default.

pub mod args;
pub mod config;
pub mod error;
pub mod gc;
pub mod layout;
pub mod pull;
pub mod push;
pub mod remote;
pub mod sign;

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::checkpoint::{Checkpoint, Store};
use config::CacheSettings;
pub use error::CacheError;
use push::{Outcome, Uploader};
use remote::Remote;

pub trait CheckpointCache {
    /// Restores the checkpoint of `key` into `store` if the cache holds a
    /// sound one: Ok(true) if it did, Ok(false) if the cache has none, Err
    /// saying why one could not be used (the step is then built).
    fn pull(&mut self, key: &str, store: &Store) -> Result<bool, CacheError>;
    /// A step's checkpoint is in the local store: share it.
    fn offer(&mut self, checkpoint: &Checkpoint);
}

/// No shared cache: every step is restored locally or built.
pub struct NoCache;

impl CheckpointCache for NoCache {
    fn pull(&mut self, _key: &str, _store: &Store) -> Result<bool, CacheError> {
        Ok(false)
    }
    fn offer(&mut self, _checkpoint: &Checkpoint) {}
}

/// The cache a run uses: pulls on the run's thread, pushes on another.
pub struct SharedCache {
    settings: CacheSettings,
    /// Opened on first use; an error is kept, so a dead cache is tried once.
    remote: Option<Result<Remote, CacheError>>,
    /// Where pulled checkpoints are assembled: on the store's filesystem.
    staging: PathBuf,
    uploader: Option<Uploader>,
    /// Keys this run pulled, which need no push.
    pulled: BTreeSet<String>,
    /// Set when the cache did not answer: it is not asked again this run,
    /// so that a dead cache costs one timeout, not one per step.
    unreachable: bool,
}

impl SharedCache {
    pub fn new(settings: CacheSettings, staging: PathBuf) -> SharedCache {
        let uploader = matches!(settings.url, config::CacheUrl::S3 { .. })
            .then(|| Uploader::start(settings.clone()));
        SharedCache {
            settings,
            remote: None,
            staging,
            uploader,
            pulled: BTreeSet::new(),
            unreachable: false,
        }
    }

    /// Waits for the uploads; returns their outcomes.
    pub fn finish(&mut self) -> Vec<Outcome> {
        self.uploader
            .as_mut()
            .map(Uploader::finish)
            .unwrap_or_default()
    }

    pub fn url(&self) -> String {
        self.settings.url.to_string()
    }
}

impl CheckpointCache for SharedCache {
    fn pull(&mut self, key: &str, store: &Store) -> Result<bool, CacheError> {
        if self.unreachable {
            return Ok(false);
        }
        let remote = self
            .remote
            .get_or_insert_with(|| Remote::open(&self.settings.url))
            .as_ref()
            .map_err(|e| CacheError::Open(format!("the cache {}: {e}", self.settings.url)))?;
        match pull::pull(remote, &self.settings.trusted, store, &self.staging, key) {
            Ok(Some(_)) => {
                self.pulled.insert(key.to_string());
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(pull::PullError::Unreachable(why)) => {
                self.unreachable = true;
                Err(CacheError::Unreachable(Box::new(why)))
            }
            Err(pull::PullError::Refused(why)) => Err(why),
        }
    }

    fn offer(&mut self, checkpoint: &Checkpoint) {
        if let Some(uploader) = &self.uploader
            && !self.pulled.contains(&checkpoint.meta.key)
        {
            uploader.offer(checkpoint.clone());
        }
    }
}
