use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stagebuild::cli::Cli::parse();
    match stagebuild::commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
