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

/// Why a remote operation failed, for messages.
pub type RemoteResult<T> = std::result::Result<T, String>;

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
                Arc::new(builder.build().map_err(|e| e.to_string())?)
            }
            CacheUrl::Http { base, .. } => Arc::new(
                HttpBuilder::new()
                    .with_url(base.clone())
                    .with_client_options(client(url))
                    .with_retry(retry())
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the cache's I/O runtime: {e}"))?;
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
                    .map_err(|e| format!("{name}: {e}")),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(format!("{name}: {e}")),
            }
        })
    }

    pub fn exists(&self, name: &str) -> RemoteResult<bool> {
        let path = self.path(name);
        self.runtime.block_on(async {
            match self.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(format!("{name}: {e}")),
            }
        })
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> RemoteResult<()> {
        self.writable()?;
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| format!("{name}: {e}"))
    }

    pub fn delete(&self, name: &str) -> RemoteResult<()> {
        self.writable()?;
        let path = self.path(name);
        self.runtime
            .block_on(self.store.delete(&path))
            .map_err(|e| format!("{name}: {e}"))
    }

    /// The objects directly under `dir`, with their sizes.
    pub fn list(&self, dir: &str) -> RemoteResult<Vec<(String, u64)>> {
        if self.read_only {
            return Err(format!(
                "{} is a read-only HTTP mirror; it cannot be listed",
                self.url
            ));
        }
        let prefix = self.path(dir);
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| format!("listing {dir}: {e}"))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
            .collect())
    }

    /// Whether objects can be written here: not on a read-only HTTP mirror.
    pub fn writable(&self) -> RemoteResult<()> {
        if self.read_only {
            Err(format!(
                "{} is a read-only HTTP mirror: push to the S3 cache it publishes",
                self.url
            ))
        } else {
            Ok(())
        }
    }
}
