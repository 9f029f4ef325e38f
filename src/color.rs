//! Colour for people: decided once per run from `--color` and the
//! environment, then used the same way by progress, errors and reports.
//! `--color always|never` wins; with `auto`, NO_COLOR (set and not empty)
//! turns colour off, CLICOLOR_FORCE (set, not empty, not "0") turns it on,
//! and otherwise a stream is coloured when it is a terminal.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// Whether to colour output: `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy)]
struct Decided {
    stdout: bool,
    stderr: bool,
}

static DECIDED: OnceLock<Decided> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Failures: `error:`, FAILED, MISSING.
    Error,
    /// `warning:`, invalidated steps.
    Warning,
    /// Success: built, done, ok.
    Good,
    /// Restored from a checkpoint; names of things.
    Note,
    /// Secondary detail: keys, paths.
    Dim,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Error => "1;31",
            Style::Warning => "33",
            Style::Good => "32",
            Style::Note => "36",
            Style::Dim => "2",
        }
    }
}

/// Decides, once, whether stdout and stderr get colour.
pub fn init(choice: ColorChoice) {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let no_color = env("NO_COLOR").is_some();
    let force = env("CLICOLOR_FORCE").is_some_and(|v| v != "0");
    let _ = DECIDED.set(Decided {
        stdout: decide(choice, no_color, force, std::io::stdout().is_terminal()),
        stderr: decide(choice, no_color, force, std::io::stderr().is_terminal()),
    });
}

fn decide(choice: ColorChoice, no_color: bool, force: bool, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && (force || terminal),
    }
}

/// The `--color` given in raw arguments (`--color X` or `--color=X`), for
/// clap's own help and usage errors, which it prints before parsing is done.
pub fn choice_in_args(args: &[std::ffi::OsString]) -> Option<ColorChoice> {
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let value = words.iter().enumerate().rev().find_map(|(i, w)| {
        w.strip_prefix("--color=").or_else(|| {
            (*w == "--color")
                .then(|| words.get(i + 1).copied())
                .flatten()
        })
    })?;
    <ColorChoice as clap::ValueEnum>::from_str(value, false).ok()
}

/// Whether `stream` gets colour; before [`init`] (in tests of the library),
/// never.
pub fn enabled(stream: Stream) -> bool {
    DECIDED.get().is_some_and(|d| match stream {
        Stream::Stdout => d.stdout,
        Stream::Stderr => d.stderr,
    })
}

/// `text` in `style`, if `stream` gets colour.
pub fn paint(stream: Stream, style: Style, text: &str) -> String {
    if enabled(stream) {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_then_no_color_then_clicolor_force_then_the_terminal() {
        use ColorChoice::*;
        assert!(decide(Always, true, false, false));
        assert!(!decide(Never, false, true, true));
        assert!(!decide(Auto, true, true, true));
        assert!(decide(Auto, false, true, false));
        assert!(decide(Auto, false, false, true));
        assert!(!decide(Auto, false, false, false));
    }

    #[test]
    fn the_flag_is_found_in_raw_arguments_either_way_and_the_last_wins() {
        let args = |s: &str| s.split(' ').map(Into::into).collect::<Vec<_>>();
        assert_eq!(
            choice_in_args(&args("stagebuild --color never plan")),
            Some(ColorChoice::Never)
        );
        assert_eq!(
            choice_in_args(&args("stagebuild --color=always plan --color never")),
            Some(ColorChoice::Never)
        );
        assert_eq!(choice_in_args(&args("stagebuild plan --color")), None);
        assert_eq!(choice_in_args(&args("stagebuild plan")), None);
    }
}
