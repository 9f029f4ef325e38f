//! Progress and messages for a run. The engine emits events; a reporter shows
//! them: a live bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::color::{Stream, Style, paint};
use crate::times::{Eta, human};

/// Progress goes to stderr, in the colours of `crate::color`.
fn styled(style: Style, text: &str) -> String {
    paint(Stream::Stderr, style, text)
}

/// What the engine tells its reporter, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stage begins; `runner` names the runner of its steps.
    StageStarted {
        stage: String,
        runner: String,
    },
    /// A step begins: `action` is "building", or what an audit does. A run
    /// says how long the step should take and what is left of the run,
    /// from earlier builds' times.
    StepStarted {
        index: usize,
        total: usize,
        id: String,
        action: &'static str,
        expected: Option<Duration>,
        eta: Option<Eta>,
    },
    /// A step's checkpoint is sound and fits: it is not built.
    StepRestored {
        index: usize,
        total: usize,
        id: String,
        key: String,
    },
    StepBuilt {
        index: usize,
        total: usize,
        id: String,
        elapsed: Duration,
    },
    /// A step built again produced what its checkpoint before held: the
    /// steps after it keep their checkpoints (early cut-off).
    OutputUnchanged {
        id: String,
    },
    /// `run --only` gave a step another output: `later` see it, and the
    /// next run builds them again.
    Invalidates {
        id: String,
        later: Vec<String>,
    },
    /// The shared cache gave the step's checkpoint.
    Pulled {
        id: String,
    },
    /// The shared cache had no usable checkpoint of the step, and why.
    NotPulled {
        id: String,
        why: String,
    },
    /// The checkpoint under the step's key is not used: it is discarded and
    /// the step built again.
    Discarded {
        id: String,
        key: String,
        why: Unusable,
    },
    /// `run --update-checksums` wrote the outputs file.
    OutputsRecorded {
        steps: usize,
        path: PathBuf,
    },
    Warning(String),
    Note(String),
}

/// Why a checkpoint on disk is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Its files do not match its manifest (or its manifest its meta).
    Damaged(String),
    /// It is sound, but its runner says it does not fit the steps before it.
    DoesNotFit(String),
}

pub trait Reporter {
    fn event(&mut self, event: Event);
    fn warn(&mut self, message: &str) {
        self.event(Event::Warning(message.to_string()));
    }
    fn info(&mut self, message: &str) {
        self.event(Event::Note(message.to_string()));
    }
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

/// What a starting step is expected to take, and what is left of the run:
/// ` (usually 42.1s; about 5m10s left)`, `+` when some step has no time yet.
fn timing(expected: Option<Duration>, eta: Option<Eta>) -> String {
    let left = eta.filter(|e| e.left > Duration::ZERO).map(|e| {
        let more = if e.unknown > 0 { "+" } else { "" };
        format!("about {}{more} left", human(e.left))
    });
    match (expected.map(|d| format!("usually {}", human(d))), left) {
        (Some(a), Some(b)) => format!(" ({a}; {b})"),
        (Some(a), None) | (None, Some(a)) => format!(" ({a})"),
        (None, None) => String::new(),
    }
}

/// An event as a line for people.
fn line(event: &Event) -> String {
    let warning = |text: String| format!("{} {text}", styled(Style::Warning, "warning:"));
    match event {
        Event::StageStarted { stage, runner } => format!("stage {stage} (runner: {runner})"),
        Event::StepStarted {
            index,
            total,
            id,
            action,
            expected,
            eta,
        } => format!(
            "{} {id}: {action}{}",
            position(*index, *total),
            timing(*expected, *eta)
        ),
        Event::StepRestored {
            index,
            total,
            id,
            key,
        } => format!(
            "{} {id}: {} {} (not rebuilt)",
            position(*index, *total),
            styled(Style::Note, "restored from checkpoint"),
            short(key)
        ),
        Event::StepBuilt {
            index,
            total,
            id,
            elapsed,
        } => format!(
            "{} {id}: {} in {:.1}s",
            position(*index, *total),
            styled(Style::Good, "built and checkpointed"),
            elapsed.as_secs_f64()
        ),
        Event::OutputUnchanged { id } => format!(
            "{id}: {}",
            styled(Style::Good, "rebuilt, output unchanged: later steps kept")
        ),
        Event::Invalidates { id, later } if later.is_empty() => {
            format!("{id}: its output changed; no later step sees it")
        }
        Event::Invalidates { id, later } => warning(format!(
            "{id}: its output changed, which invalidates {}; run --resume builds them again",
            later.join(", ")
        )),
        Event::Pulled { id } => format!("{id}: pulled from the cache"),
        Event::NotPulled { id, why } => warning(format!(
            "{id}: not pulled from the cache ({why}); building it"
        )),
        Event::Discarded { id, key, why } => {
            let why = match why {
                Unusable::Damaged(why) => format!("is damaged: {why}"),
                Unusable::DoesNotFit(why) => format!("no longer fits: {why}"),
            };
            warning(format!(
                "the checkpoint of {id} ({}) {why}; discarding it and rebuilding",
                short(key)
            ))
        }
        Event::OutputsRecorded { steps, path } => format!(
            "recorded the outputs of {steps} steps in {}",
            path.display()
        ),
        Event::Warning(message) => warning(message.clone()),
        Event::Note(message) => message.clone(),
    }
}

/// One line per event, for logs and CI.
pub struct PlainReporter;

impl Reporter for PlainReporter {
    fn event(&mut self, event: Event) {
        eprintln!("{}", line(&event));
    }
}

/// A spinner with the step, its position and the elapsed time; other
/// events stay above it as lines.
pub struct TerminalReporter {
    bar: Option<ProgressBar>,
}

impl Reporter for TerminalReporter {
    fn event(&mut self, event: Event) {
        if let Event::StepStarted {
            index,
            total,
            id,
            action,
            expected,
            eta,
        } = &event
        {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed_precise}]")
                    .expect("valid template"),
            );
            bar.set_prefix(position(*index, *total));
            bar.set_message(format!("{id}: {action}{}", timing(*expected, *eta)));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
            return;
        }
        let text = line(&event);
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

use crate::mirror::fetch::{FetchReporter, Outcome, Progress};
use indicatif::MultiProgress;

pub fn fetch_reporter() -> Box<dyn FetchReporter> {
    if std::io::stderr().is_terminal() {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        );
        overall.set_prefix("mirror");
        Box::new(FetchBars { multi, overall })
    } else {
        Box::new(FetchLines)
    }
}

/// One bar overall and one per active download.
struct FetchBars {
    multi: MultiProgress,
    overall: ProgressBar,
}

struct Bar {
    bar: ProgressBar,
    overall: ProgressBar,
    last: std::sync::atomic::AtomicU64,
}

impl Progress for Bar {
    fn set_length(&self, total: u64) {
        self.bar.set_length(total);
    }
    fn set_position(&self, done: u64) {
        let last = self.last.swap(done, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_position(done);
        if done >= last {
            self.overall.inc(done - last);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl FetchReporter for FetchBars {
    fn begin(&self, files: usize, bytes: u64) {
        self.overall.set_length(bytes);
        self.overall.set_message(format!("{files} files to fetch"));
    }
    fn started(&self, name: &str, size: u64) -> Box<dyn Progress + '_> {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("  {prefix:30!} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template"),
        );
        bar.set_prefix(name.to_string());
        Box::new(Bar {
            bar,
            overall: self.overall.clone(),
            last: Default::default(),
        })
    }
    fn finished(&self, name: &str, outcome: &Outcome) {
        self.multi
            .suspend(|| eprintln!("{}", outcome_line(name, outcome)));
    }
}

impl Drop for FetchBars {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
    }
}

/// Plain lines, one per finished file.
struct FetchLines;

struct NoBar;

impl Progress for NoBar {
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
}

impl FetchReporter for FetchLines {
    fn begin(&self, files: usize, bytes: u64) {
        if files > 0 {
            eprintln!("fetching {files} file(s), {bytes} bytes");
        }
    }
    fn started(&self, _: &str, _: u64) -> Box<dyn Progress + '_> {
        Box::new(NoBar)
    }
    fn finished(&self, name: &str, outcome: &Outcome) {
        eprintln!("{}", outcome_line(name, outcome));
    }
}

fn outcome_line(name: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Present => format!("{}  {name}", styled(Style::Dim, "present")),
        Outcome::Fetched { from } => {
            format!("{}  {name}  from {from}", styled(Style::Good, "fetched"))
        }
        Outcome::Failed { errors } => format!(
            "{}   {name}\n{}",
            styled(Style::Error, "FAILED"),
            errors
                .iter()
                .map(|e| format!("         {e}\n"))
                .collect::<String>()
                .trim_end()
        ),
    }
}
