//! Where the shared cache is and whom it trusts: `--cache URL`, else the
//! `STAGEBUILD_CACHE` environment variable, else `url:` in the project's
//! `cache.yaml`, which also lists the keys whose signatures are trusted.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The project's cache settings file.
pub const CONFIG_FILE: &str = "cache.yaml";
pub const URL_VAR: &str = "STAGEBUILD_CACHE";
/// The URL that turns a configured cache off: `--cache off`.
pub const NO_CACHE: &str = "off";
/// A file holding the ed25519 key that signs what this machine pushes.
pub const SIGNING_KEY_VAR: &str = "STAGEBUILD_CACHE_SIGNING_KEY";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUrl {
    /// An S3 bucket and a key prefix (without slashes at either end).
    S3 { bucket: String, prefix: String },
    /// A read-only mirror of the same layout, served as static files.
    Http { base: String },
}

/// Why a cache URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCacheUrl {
    #[error("{0}: no bucket (expected s3://BUCKET/PREFIX)")]
    NoBucket(String),
    #[error("{0}: a prefix may not contain . or ..")]
    DotInPrefix(String),
    #[error("{0}: a cache is s3://BUCKET/PREFIX, or https://HOST/PATH for a read-only mirror")]
    Scheme(String),
}

impl CacheUrl {
    pub fn parse(text: &str) -> std::result::Result<CacheUrl, BadCacheUrl> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BadCacheUrl::NoBucket(text.to_string()));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|part| part == "." || part == "..") {
                return Err(BadCacheUrl::DotInPrefix(text.to_string()));
            }
            return Ok(CacheUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(CacheUrl::Http {
                base: text.trim_end_matches('/').to_string(),
            });
        }
        Err(BadCacheUrl::Scheme(text.to_string()))
    }

    /// Whether the cache is on this machine, so plain HTTP is harmless:
    /// its endpoint (AWS_ENDPOINT_URL for S3) is a loopback address.
    pub fn is_loopback(&self) -> bool {
        let endpoint = match self {
            CacheUrl::S3 { .. } => std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .unwrap_or_default(),
            CacheUrl::Http { base } => base.clone(),
        };
        let host = endpoint
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    }
}

impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            CacheUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            CacheUrl::Http { base } => f.write_str(base),
        }
    }
}

/// `cache.yaml` in the project.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    url: Option<String>,
    /// Public keys (hex) whose signatures are trusted, by a name for messages.
    #[serde(default)]
    trusted_keys: Vec<TrustedKeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedKeyEntry {
    name: String,
    key: serde_saphyr::Spanned<String>,
}

/// The cache settings of a command, resolved.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub url: CacheUrl,
    /// When not empty, only checkpoints signed by one of these are pulled.
    pub trusted: Vec<super::sign::TrustedKey>,
    /// The key that signs what is pushed, if one is configured.
    pub signing_key: Option<PathBuf>,
}

/// The cache a command uses, or None when none is configured. A URL given
/// on the command line wins over the environment, which wins over the file.
pub fn resolve(project: &Path, flag: Option<&str>) -> Result<Option<CacheSettings>> {
    let path = project.join(CONFIG_FILE);
    let doc = match path.exists() {
        true => Some(crate::yaml::Doc::read(&path)?),
        false => None,
    };
    let file: ConfigFile = match &doc {
        Some(doc) => doc.parse()?,
        None => ConfigFile::default(),
    };
    let env = std::env::var(URL_VAR).ok().filter(|v| !v.is_empty());
    let Some(url) = flag.map(str::to_string).or(env).or(file.url) else {
        return Ok(None);
    };
    if url == NO_CACHE {
        return Ok(None);
    }
    let url = CacheUrl::parse(&url).map_err(|e| Error::Usage(e.to_string()))?;
    let trusted = file
        .trusted_keys
        .iter()
        .map(|k| {
            super::sign::TrustedKey::parse(&k.name, &k.key.value).map_err(|e| {
                let message = format!("trusted key {}: {e}", k.name);
                match &doc {
                    Some(doc) => doc.error(&k.key, message),
                    None => Error::input(&path, None, message),
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let signing_key = std::env::var_os(SIGNING_KEY_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    Ok(Some(CacheSettings {
        url,
        trusted,
        signing_key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_bucket_and_prefix_or_a_mirror() {
        assert_eq!(
            CacheUrl::parse("s3://b/team/x/").unwrap(),
            CacheUrl::S3 {
                bucket: "b".into(),
                prefix: "team/x".into()
            }
        );
        assert_eq!(
            CacheUrl::parse("s3://b").unwrap(),
            CacheUrl::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            CacheUrl::parse("https://h/c/").unwrap(),
            CacheUrl::Http {
                base: "https://h/c".into()
            }
        );
        assert!(CacheUrl::parse("s3:///x").is_err());
        assert!(CacheUrl::parse("s3://b/../x").is_err());
        assert!(CacheUrl::parse("/some/dir").is_err());
    }

    #[test]
    fn a_bad_trusted_key_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "url: s3://b/p\ntrusted_keys:\n  - name: ci\n    key: 00ff\n",
        )
        .unwrap();
        let e = resolve(dir.path(), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.ends_with(
                "cache.yaml:4:10: trusted key ci: expected 32 bytes, got 2\n  |\n4 |     key: 00ff\n  |          ^^^^"
            ),
            "{e}"
        );
        // --cache off wins over the file.
        assert!(resolve(dir.path(), Some(NO_CACHE)).unwrap().is_none());
    }

    #[test]
    fn only_a_loopback_mirror_counts_as_local() {
        assert!(
            CacheUrl::parse("http://127.0.0.1:8000/c")
                .unwrap()
                .is_loopback()
        );
        assert!(
            !CacheUrl::parse("http://127.0.0.1.example/c")
                .unwrap()
                .is_loopback()
        );
        assert!(
            !CacheUrl::parse("https://cache.example/c")
                .unwrap()
                .is_loopback()
        );
    }
}
