//! Reading the project's YAML files with errors that point at `file:line`.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// Reads and parses a YAML file. Empty files, invalid UTF-8, unknown keys and
/// wrong types all become [`Error::Input`] with the line where they were found.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).io_context(|| format!("reading {}", path.display()))?;
    parse(path, &bytes)
}

pub fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
            + 1;
        Error::input(path, Some(line), "invalid UTF-8")
    })?;
    if text.trim().is_empty() {
        return Err(Error::input(path, Some(1), "the file is empty"));
    }
    serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let mut message = first_line(&e.to_string());
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            && let Some(hint) = crate::schema::missing_field_hint(path, field)
        {
            message += &hint;
        }
        Error::input(path, line, message)
    })
}

/// serde-saphyr renders a source snippet after its message; the message alone
/// reads better behind our own `file:line:` prefix.
fn first_line(message: &str) -> String {
    let mut message = message.lines().next().unwrap_or(message).trim();
    message = message.strip_prefix("error: ").unwrap_or(message);
    // Drop a "line L column C: " that duplicates our prefix.
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        message = after;
    }
    // Advice meant for programmers using the parser, not for users.
    if let Some(i) = message
        .find(", set ")
        .filter(|_| message.contains(" in Options"))
    {
        message = &message[..i];
    }
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The line of a spanned value, for semantic errors found after parsing.
pub fn line_of<T>(spanned: &serde_saphyr::Spanned<T>) -> Option<u64> {
    Some(spanned.referenced.line()).filter(|&l| l > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        name: String,
        count: u32,
    }

    fn err(text: &[u8]) -> String {
        parse::<Small>(Path::new("x.yaml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_key_has_line() {
        let e = err(b"name: a\ncount: 1\ncolour: red\n");
        assert!(e.starts_with("x.yaml:3:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_has_line() {
        let e = err(b"name: a\ncount: many\n");
        assert!(e.starts_with("x.yaml:2:"), "{e}");
    }

    #[test]
    fn empty_and_utf8() {
        assert_eq!(err(b"  \n"), "x.yaml:1: the file is empty");
        assert_eq!(err(b"name: a\ncount: \xff\n"), "x.yaml:2: invalid UTF-8");
    }

    #[test]
    fn duplicate_key_is_refused() {
        let e = err(b"name: a\nname: b\ncount: 1\n");
        assert!(e.starts_with("x.yaml:2:"), "{e}");
    }
}
