//! Where in a file a problem is, and how it is shown: `file:line:column:`,
//! then the offending line with a caret under the value.

use std::fmt::Write as _;
use std::path::Path;

use crate::color::Style;

/// A position in a project file, with the line itself when the text is at
/// hand (it is for everything read through [`crate::yaml`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    /// 1-based.
    pub line: u64,
    /// 1-based, in characters; `None` when only the line is known.
    pub column: Option<u64>,
    /// How many characters the caret underlines (at least one is drawn).
    pub width: u64,
    /// The text of the line, without its newline.
    pub source: Option<String>,
}

impl Spot {
    /// A line alone, for files whose text is not kept (the outputs file).
    pub fn line(line: u64) -> Spot {
        Spot {
            line,
            column: None,
            width: 0,
            source: None,
        }
    }

    /// A whole line of `text`, for files read line by line (patches, the
    /// outputs file): the line is shown without a caret.
    pub fn whole_line(text: &str, line: u64) -> Spot {
        Spot {
            column: None,
            ..Spot::in_text(text, line, 1, 0)
        }
    }

    /// A position in `text`, taking its line from it.
    pub fn in_text(text: &str, line: u64, column: u64, width: u64) -> Spot {
        let source = usize::try_from(line.saturating_sub(1))
            .ok()
            .and_then(|i| text.lines().nth(i))
            .map(str::to_string);
        Spot {
            line,
            column: Some(column.max(1)),
            width,
            source,
        }
    }

    /// `:line:column` (or `:line`), to follow a file name.
    fn suffix(&self) -> String {
        match self.column {
            Some(column) => format!(":{}:{column}", self.line),
            None => format!(":{}", self.line),
        }
    }
}

/// `path:line:column`, or as much of it as is known.
pub fn location(path: &Path, spot: Option<&Spot>) -> String {
    let suffix = spot.map(Spot::suffix).unwrap_or_default();
    format!("{}{suffix}", path.display())
}

/// The snippet under a message: the line with its number in a gutter and a
/// caret under the offending value. `paint` colours the gutter and the caret
/// (identity for plain text).
pub fn snippet(spot: &Spot, paint: &dyn Fn(Style, &str) -> String) -> String {
    let Some(source) = &spot.source else {
        return String::new();
    };
    let number = spot.line.to_string();
    let pad = " ".repeat(number.len());
    let bar = paint(Style::Dim, "|");
    // Control characters (tabs included) would move the caret or reach the
    // terminal; each becomes one visible character so that columns still line up.
    let shown: String = source
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "\n{pad} {bar}\n{} {bar} {shown}",
        paint(Style::Dim, &number)
    );
    if let Some(column) = spot.column {
        let length = shown.chars().count() as u64;
        let start = column.saturating_sub(1).min(length);
        let width = spot.width.min(length.saturating_sub(start)).max(1);
        let caret = "^".repeat(width as usize);
        let _ = write!(
            out,
            "\n{pad} {bar} {}{}",
            " ".repeat(start as usize),
            paint(Style::Error, &caret)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(spot: &Spot) -> String {
        snippet(spot, &|_, s| s.to_string())
    }

    #[test]
    fn the_caret_sits_under_the_value_and_as_wide_as_it() {
        let spot = Spot::in_text("name: a\ncount: many\n", 2, 8, 4);
        assert_eq!(plain(&spot), "\n  |\n2 | count: many\n  |        ^^^^");
        assert_eq!(location(Path::new("x.yaml"), Some(&spot)), "x.yaml:2:8");
    }

    #[test]
    fn a_caret_past_the_end_of_its_line_stays_on_it_and_controls_are_replaced() {
        let spot = Spot::in_text("a:\tb\n", 1, 40, 3);
        assert_eq!(plain(&spot), "\n  |\n1 | a:\u{fffd}b\n  |     ^");
        let only_line = Spot::line(7);
        assert_eq!(plain(&only_line), "");
        assert_eq!(location(Path::new("o"), Some(&only_line)), "o:7");
        let whole = Spot::whole_line("x\ny\n", 2);
        assert_eq!(plain(&whole), "\n  |\n2 | y");
        assert_eq!(location(Path::new("o"), Some(&whole)), "o:2");
    }
}
