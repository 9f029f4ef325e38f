//! `VAR=VALUE` from the command line (`--set`), for `run`, `plan` and
//! `cache pull`.

/// A `--set` that is not `VAR=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error("expected VAR=VALUE, got {0:?}")]
pub struct NotAnAssignment(String);

pub fn parse(s: &str) -> Result<(String, String), NotAnAssignment> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| NotAnAssignment(s.to_string()))
}
