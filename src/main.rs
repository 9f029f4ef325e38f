use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use stagebuild::cli::{Cli, ColorChoice};
use stagebuild::color::{Stream, Style, paint};

fn main() -> ExitCode {
    // clap prints help and usage errors while it parses, so the colour flag
    // is looked for first, for those too.
    let args: Vec<_> = std::env::args_os().collect();
    let clap_color = match stagebuild::color::choice_in_args(&args) {
        Some(ColorChoice::Always) => clap::ColorChoice::Always,
        Some(ColorChoice::Never) => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    let matches = Cli::command().color(clap_color).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    stagebuild::color::init(cli.color);
    match stagebuild::commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let prefix = paint(Stream::Stderr, Style::Error, "error:");
            eprintln!("{prefix} {}", e.render(Stream::Stderr));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
