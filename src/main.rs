use std::process::ExitCode;

use clap::Parser;
use stagebuild::color::{Stream, Style, paint};

fn main() -> ExitCode {
    let cli = stagebuild::cli::Cli::parse();
    stagebuild::color::init(cli.color);
    match stagebuild::commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let prefix = paint(Stream::Stderr, Style::Error, "error:");
            eprintln!("{prefix} {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
