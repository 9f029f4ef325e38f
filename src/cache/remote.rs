//! The object store behind a synchronous interface: `object_store` is async,
//! so each `Remote` drives it on its own small current-thread runtime and the
//! engine stays synchronous.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::config::CacheUrl;
use super::error::CacheError;

pub type RemoteResult<T> = std::result::Result<T, CacheError>;

/// Requests in flight at once when moving many objects: a checkpoint is
/// often thousands of small files, and one at a time each costs a round trip.
const CONCURRENCY: usize = 16;

pub struct Remote {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// Where this cache is, for messages.
    pub url: String,
    /// An HTTP mirror: pull only.
    pub read_only: bool,
    /// The S3 key prefix every object name goes under ("" for none).
    prefix: String,
}

/// Few, quick retries: a cache that does not answer must not hold up a
/// build for minutes, since building the step is always an option.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    }
}

fn client(url: &CacheUrl) -> ClientOptions {
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120));
    // Plain HTTP only where it cannot leave the machine, unless the
    // environment allows it the way the AWS tools do (AWS_ALLOW_HTTP).
    options.with_allow_http(url.is_loopback() || allow_http_from_env())
}

fn allow_http_from_env() -> bool {
    std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Remote {
    pub fn open(url: &CacheUrl) -> RemoteResult<Remote> {
        // rustls needs one process-wide crypto provider; ring, as for the mirror.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store: Arc<dyn ObjectStore> = match url {
            CacheUrl::S3 { bucket, .. } => {
                // Endpoint, region and credentials come from the environment,
                // named as the AWS tools name them (AWS_ENDPOINT_URL, ...).
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client(url))
                    .with_retry(retry());
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| CacheError::Open(e.to_string()))?,
                )
            }
            CacheUrl::Http { base, .. } => Arc::new(
                HttpBuilder::new()
                    .with_url(base.clone())
                    .with_client_options(client(url))
                    .with_retry(retry())
                    .build()
                    .map_err(|e| CacheError::Open(e.to_string()))?,
            ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CacheError::Open(format!("starting the cache's I/O runtime: {e}")))?;
        Ok(Remote {
            store,
            runtime,
            url: url.to_string(),
            read_only: matches!(url, CacheUrl::Http { .. }),
            prefix: match url {
                CacheUrl::S3 { prefix, .. } => prefix.clone(),
                CacheUrl::Http { .. } => String::new(),
            },
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// An object's bytes, or None if there is no such object.
    pub fn get(&self, name: &str) -> RemoteResult<Option<Vec<u8>>> {
        let path = self.path(name);
        self.runtime.block_on(async {
            match self.store.get(&path).await {
                Ok(result) => result
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(CacheError::remote(name)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(CacheError::remote(name)(e)),
            }
        })
    }

    pub fn exists(&self, name: &str) -> RemoteResult<bool> {
        let path = self.path(name);
        self.runtime.block_on(async {
            match self.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(CacheError::remote(name)(e)),
            }
        })
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> RemoteResult<()> {
        self.writable()?;
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(CacheError::remote(name))
    }

    pub fn delete(&self, name: &str) -> RemoteResult<()> {
        self.writable()?;
        let path = self.path(name);
        self.runtime
            .block_on(self.store.delete(&path))
            .map_err(CacheError::remote(name))
    }

    /// Fetches each object, several at a time, and hands each to `each` as
    /// it arrives (in any order; None for a missing one). At most
    /// [`CONCURRENCY`] objects are held at once. The first error stops it all.
    pub fn get_each(
        &self,
        names: &[String],
        mut each: impl FnMut(&str, Option<Vec<u8>>) -> RemoteResult<()>,
    ) -> RemoteResult<()> {
        self.runtime.block_on(async {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut pending = names.iter();
            loop {
                while in_flight.len() < CONCURRENCY
                    && let Some(name) = pending.next()
                {
                    let (store, path, name) = (self.store.clone(), self.path(name), name.clone());
                    in_flight.spawn(async move {
                        let result = match store.get(&path).await {
                            Ok(found) => found.bytes().await.map(|b| Some(b.to_vec())),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        };
                        (name, result)
                    });
                }
                let Some(joined) = in_flight.join_next().await else {
                    return Ok(());
                };
                let (name, result) = joined.map_err(CacheError::remote(&self.url))?;
                each(&name, result.map_err(CacheError::remote(&name))?)?;
            }
        })
    }

    /// Which of the objects exist, several asked at a time.
    pub fn exists_each(&self, names: &[String]) -> RemoteResult<Vec<bool>> {
        self.runtime.block_on(async {
            let mut found = vec![false; names.len()];
            let mut in_flight = tokio::task::JoinSet::new();
            let mut pending = names.iter().enumerate();
            loop {
                while in_flight.len() < CONCURRENCY
                    && let Some((i, name)) = pending.next()
                {
                    let (store, path) = (self.store.clone(), self.path(name));
                    in_flight.spawn(async move { (i, store.head(&path).await) });
                }
                let Some(joined) = in_flight.join_next().await else {
                    return Ok(found);
                };
                match joined.map_err(CacheError::remote(&self.url))? {
                    (i, Ok(_)) => found[i] = true,
                    (_, Err(object_store::Error::NotFound { .. })) => {}
                    (i, Err(e)) => return Err(CacheError::remote(&names[i])(e)),
                }
            }
        })
    }

    /// Uploads each (name, bytes) the iterator yields, several at a time;
    /// the iterator is advanced only as uploads finish, so at most
    /// [`CONCURRENCY`] objects are held at once. The first error stops it all.
    pub fn put_each(
        &self,
        items: impl Iterator<Item = RemoteResult<(String, Vec<u8>)>>,
    ) -> RemoteResult<()> {
        self.writable()?;
        self.runtime.block_on(async {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut pending = items;
            loop {
                while in_flight.len() < CONCURRENCY
                    && let Some(item) = pending.next()
                {
                    let (name, bytes) = item?;
                    let (store, path) = (self.store.clone(), self.path(&name));
                    in_flight.spawn(async move {
                        let result = store.put(&path, PutPayload::from(bytes)).await;
                        (name, result)
                    });
                }
                let Some(joined) = in_flight.join_next().await else {
                    return Ok(());
                };
                if let (name, Err(e)) = joined.map_err(CacheError::remote(&self.url))? {
                    return Err(CacheError::remote(&name)(e));
                }
            }
        })
    }

    /// The objects directly under `dir`, with their sizes.
    pub fn list(&self, dir: &str) -> RemoteResult<Vec<(String, u64)>> {
        if self.read_only {
            return Err(CacheError::ReadOnly {
                url: self.url.clone(),
                why: "it cannot be listed",
            });
        }
        let prefix = self.path(dir);
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(CacheError::remote(dir))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
            .collect())
    }

    /// Whether objects can be written here: not on a read-only HTTP mirror.
    pub fn writable(&self) -> RemoteResult<()> {
        if self.read_only {
            Err(CacheError::ReadOnly {
                url: self.url.clone(),
                why: "push to the S3 cache it publishes",
            })
        } else {
            Ok(())
        }
    }
}
