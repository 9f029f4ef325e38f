//! The guest's console log: its last lines are what a VM failure shows.

use std::path::Path;

use crate::error::Error;
use crate::runner::steplog::log_tail;

/// Lines of the guest console shown when something goes wrong.
const CONSOLE_LINES: usize = 40;

/// A guest that did not finish its step, with the end of its console.
pub fn failure(step: &str, console: &Path, problem: impl Into<String>) -> Error {
    Error::Vm {
        step: step.to_string(),
        problem: problem.into(),
        tail: log_tail(console, CONSOLE_LINES),
        console: console.to_path_buf(),
    }
}
