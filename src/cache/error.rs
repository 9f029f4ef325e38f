//! Why the shared cache could not do something: one variant per kind of
//! failure, the text inside naming the object or file for the message.

use std::fmt::Display;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The cache's client or its I/O runtime could not be made.
    #[error("{0}")]
    Open(String),
    /// The object store did not answer, or failed on an object.
    #[error("{object}: {problem}")]
    Remote { object: String, problem: String },
    /// A read-only HTTP mirror was asked to write or to list.
    #[error("{url} is a read-only HTTP mirror: {why}")]
    ReadOnly { url: String, why: &'static str },
    /// A file on this machine: a checkpoint's, or a key's.
    #[error("{path}: {problem}")]
    Local { path: String, problem: String },
    /// What the cache holds cannot be used: a descriptor's shape, a missing
    /// or damaged blob, a restored tree that differs.
    #[error("{0}")]
    Unsound(String),
    /// A key or a signature: malformed, missing or not trusted.
    #[error("{0}")]
    Key(String),
    /// The cache did not answer once; this run does not ask it again.
    #[error("{0}; not asking it again in this run")]
    Unreachable(Box<CacheError>),
    /// An upload not tried, since an earlier one failed.
    #[error("not tried after {after} failed")]
    NotTried { after: String },
}

impl CacheError {
    /// For `map_err` on an operation on `object`.
    pub fn remote<E: Display>(object: &str) -> impl FnOnce(E) -> CacheError + '_ {
        move |e| CacheError::Remote {
            object: object.to_string(),
            problem: e.to_string(),
        }
    }

    /// For `map_err` on an operation on the local file `path`.
    pub fn local<E: Display>(path: &Path) -> impl FnOnce(E) -> CacheError + '_ {
        move |e| CacheError::Local {
            path: path.display().to_string(),
            problem: e.to_string(),
        }
    }
}
