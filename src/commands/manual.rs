//! `stagebuild completions SHELL` and `stagebuild man`: generated at run time
//! from the same clap definitions the parser uses, so they always match the
//! binary that prints them, and installing them needs no build step.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{IoContext, Result};

pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "stagebuild", &mut std::io::stdout());
    Ok(())
}

/// The top page on stdout, or every page (`stagebuild.1`,
/// `stagebuild-run.1`, …) written into `dir`.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .io_context(|| "writing the manual page"),
        Some(dir) => {
            std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .io_context(|| format!("writing manual pages into {}", dir.display()))?;
            println!("wrote the manual pages into {}", dir.display());
            Ok(())
        }
    }
}
