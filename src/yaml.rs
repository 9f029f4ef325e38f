//! Reading the project's YAML files with errors that point at
//! `file:line:column` and show the line with a caret under the value.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

use crate::error::{Error, IoContext, Result, Spot};

/// A project file's text, kept after parsing so that problems found in the
/// values later (a bad name, a NUL byte) can show their line too.
pub struct Doc {
    pub path: PathBuf,
    text: String,
}

impl Doc {
    pub fn read(path: &Path) -> Result<Doc> {
        let bytes = std::fs::read(path).io_context(|| format!("reading {}", path.display()))?;
        Doc::new(path, &bytes)
    }

    /// Invalid UTF-8 and empty files are refused here, before the parser.
    pub fn new(path: &Path, bytes: &[u8]) -> Result<Doc> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            // Column of the first bad byte, in the characters before it.
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count() as u64
                + 1;
            let shown = String::from_utf8_lossy(bytes);
            Error::input(
                path,
                Some(Spot::in_text(&shown, line, column, 1)),
                "invalid UTF-8",
            )
        })?;
        if text.trim().is_empty() {
            return Err(Error::input(
                path,
                Some(Spot::in_text(text, 1, 1, 0)),
                "the file is empty",
            ));
        }
        Ok(Doc {
            path: path.to_path_buf(),
            text: text.to_string(),
        })
    }

    /// Unknown keys, wrong types, duplicate keys and syntax errors become
    /// [`Error::Input`] at the value the parser stopped on.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_saphyr::from_str(&self.text).map_err(|e| {
            let inner = original(&e);
            // The formatter for users leaves out advice about parser options.
            let mut message: String = UserMessageFormatter
                .format_message(inner)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if let serde_saphyr::Error::SerdeMissingField { field, .. } = inner
                && let Some(hint) = crate::schema::missing_field_hint(&self.path, field)
            {
                message += &hint;
            }
            Error::input(&self.path, e.location().map(|l| self.spot(l)), message)
        })
    }

    /// An error about a value found after parsing, at that value.
    pub fn error<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> Error {
        Error::input(&self.path, self.spot_of(value), message)
    }

    /// Where a parsed value is, to report it later (after other files are read).
    pub fn spot_of<T>(&self, value: &Spanned<T>) -> Option<Spot> {
        Some(value.referenced)
            .filter(|l| l.line() > 0)
            .map(|l| self.spot(l))
    }

    /// An error about a whole line (the first, for what the file lacks).
    pub fn error_at_line(&self, line: u64, message: impl Into<String>) -> Error {
        Error::input(
            &self.path,
            Some(Spot::in_text(&self.text, line, 1, 0)),
            message,
        )
    }

    fn spot(&self, at: Location) -> Spot {
        Spot::in_text(&self.text, at.line(), at.column(), at.span().len())
    }
}

/// The error itself, under the wrappers that add a snippet or an alias.
fn original(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    e
}

/// Reads and parses a YAML file whose values need no later checks.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    Doc::read(path)?.parse()
}

/// The line of a spanned value, for the book's `file:line` references.
pub fn line_of<T>(spanned: &Spanned<T>) -> Option<u64> {
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
        Doc::new(Path::new("x.yaml"), text)
            .and_then(|doc| doc.parse::<Small>())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unknown_key_is_shown_with_its_line_and_a_caret_under_it() {
        assert_eq!(
            err(b"name: a\ncount: 1\ncolour: red\n"),
            "x.yaml:3:1: unknown field `colour`, expected one of name, count\n  |\n3 | colour: red\n  | ^^^^^^"
        );
    }

    #[test]
    fn a_wrong_type_points_at_the_value_not_its_key() {
        let e = err(b"name: a\ncount: many\n");
        assert!(e.starts_with("x.yaml:2:8: "), "{e}");
        assert!(e.ends_with("2 | count: many\n  |        ^^^^"), "{e}");
    }

    #[test]
    fn empty_and_utf8() {
        assert_eq!(err(b""), "x.yaml:1:1: the file is empty");
        assert_eq!(
            err(b"name: a\ncount: \xff\n"),
            "x.yaml:2:8: invalid UTF-8\n  |\n2 | count: \u{fffd}\n  |        ^"
        );
    }

    #[test]
    fn duplicate_key_is_refused() {
        let e = err(b"name: a\nname: b\ncount: 1\n");
        assert!(e.starts_with("x.yaml:2:1: duplicate mapping key"), "{e}");
    }

    #[test]
    fn values_checked_after_parsing_are_shown_where_they_are() {
        #[derive(serde::Deserialize)]
        struct Named {
            name: Spanned<String>,
        }
        let doc = Doc::new(Path::new("x.yaml"), b"# a comment\nname:   Bad!\n").unwrap();
        let named: Named = doc.parse().unwrap();
        assert_eq!(
            doc.error(&named.name, "a bad name").to_string(),
            "x.yaml:2:9: a bad name\n  |\n2 | name:   Bad!\n  |         ^^^^"
        );
    }
}
