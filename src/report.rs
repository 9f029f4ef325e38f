//! Progress and messages for a run. The engine emits events; a reporter shows
//! them: a live bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub trait Reporter {
    /// A step begins: `action` is "building" or "restoring".
    fn step_started(&mut self, index: usize, total: usize, id: &str, action: &str);
    fn step_restored(&mut self, index: usize, total: usize, id: &str, key: &str);
    fn step_built(&mut self, index: usize, total: usize, id: &str, elapsed: Duration);
    fn warn(&mut self, message: &str);
    fn info(&mut self, message: &str);
}

pub fn for_stderr() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Box::new(TerminalReporter { bar: None })
    } else {
        Box::new(PlainReporter)
    }
}

fn position(index: usize, total: usize) -> String {
    format!("[{}/{total}]", index + 1)
}

pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// One line per event, for logs and CI.
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn step_started(&mut self, index: usize, total: usize, id: &str, action: &str) {
        eprintln!("{} {id}: {action}", position(index, total));
    }
    fn step_restored(&mut self, index: usize, total: usize, id: &str, key: &str) {
        eprintln!(
            "{} {id}: restored from checkpoint {} (not rebuilt)",
            position(index, total),
            short(key)
        );
    }
    fn step_built(&mut self, index: usize, total: usize, id: &str, elapsed: Duration) {
        eprintln!(
            "{} {id}: built and checkpointed in {:.1}s",
            position(index, total),
            elapsed.as_secs_f64()
        );
    }
    fn warn(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn info(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// A spinner with the step, its position and the elapsed time; finished
/// steps stay above it as lines.
pub struct TerminalReporter {
    bar: Option<ProgressBar>,
}

impl TerminalReporter {
    fn line(&mut self, text: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Reporter for TerminalReporter {
    fn step_started(&mut self, index: usize, total: usize, id: &str, action: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed_precise}]")
                .expect("valid template"),
        );
        bar.set_prefix(position(index, total));
        bar.set_message(format!("{id}: {action}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(bar);
    }
    fn step_restored(&mut self, index: usize, total: usize, id: &str, key: &str) {
        self.line(format!(
            "{} {id}: restored from checkpoint {} (not rebuilt)",
            position(index, total),
            short(key)
        ));
    }
    fn step_built(&mut self, index: usize, total: usize, id: &str, elapsed: Duration) {
        self.line(format!(
            "{} {id}: built and checkpointed in {:.1}s",
            position(index, total),
            elapsed.as_secs_f64()
        ));
    }
    fn warn(&mut self, message: &str) {
        self.line(format!("warning: {message}"));
    }
    fn info(&mut self, message: &str) {
        self.line(message.to_string());
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
