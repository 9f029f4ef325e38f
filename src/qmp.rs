//! A small QMP client: JSON lines over a unix socket. Replies are matched by
//! `id`; events are queued whenever they arrive, even between a command and
//! its reply; events and fields this client has never heard of are kept, not
//! rejected. (The qapi crate's typed schema fails on events newer than it,
//! and then hands one command's reply to the next.)

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: qemu closed the connection")]
    Closed,
    #[error("QMP: timed out after {0:?}")]
    Timeout(Duration),
    #[error("QMP: unexpected message: {0}")]
    Protocol(String),
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    events: VecDeque<Event>,
    /// The server's greeting (`{"QMP": {"version": …}}`).
    pub greeting: Value,
    timeout: Duration,
    /// A line read only in part when a timeout struck; completed by the next read.
    partial: String,
}

impl Qmp {
    /// Connects (retrying while qemu creates the socket), reads the greeting
    /// and leaves negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source: e,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_id: 1,
            events: VecDeque::new(),
            greeting: Value::Null,
            timeout,
            partial: String::new(),
        };
        let greeting = qmp.read_message(deadline)?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.greeting = greeting;
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = serde_json::to_vec(&message).expect("JSON serializes");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read_message(deadline)?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                // A reply to someone else (or to nothing): not ours, skip it.
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            let error = message
                .get("error")
                .ok_or_else(|| QmpError::Protocol(message.to_string()))?;
            let text = |key: &str| {
                error
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Err(QmpError::Command {
                command: command.to_string(),
                class: text("class"),
                desc: text("desc"),
            });
        }
    }

    /// Runs a monitor (HMP) command. HMP reports failure as a successful
    /// string, so one that starts with "Error" is turned into an error.
    pub fn hmp(&mut self, command_line: &str) -> Result<String, QmpError> {
        let out = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        let text = out.as_str().unwrap_or("").to_string();
        if text.trim_start().starts_with("Error") {
            return Err(QmpError::Command {
                command: command_line.to_string(),
                class: "HMP".into(),
                desc: text.trim().to_string(),
            });
        }
        Ok(text)
    }

    /// The next event, waiting up to `timeout` for one.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_message(deadline) {
                Ok(_) => {
                    // A stray reply: read_message queued any event.
                    if let Some(event) = self.events.pop_front() {
                        return Ok(Some(event));
                    }
                }
                Err(QmpError::Timeout(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for an event named one of `names`; others stay queued.
    pub fn wait_event(&mut self, names: &[&str], timeout: Duration) -> Result<Event, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| names.contains(&e.name.as_str()))
            {
                return Ok(self.events.remove(i).expect("index exists"));
            }
            self.read_message(deadline)?;
        }
    }

    /// Events received so far and not yet taken.
    pub fn pending_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Reads one message that is not an event; events are queued on the way.
    fn read_message(&mut self, deadline: Instant) -> Result<Value, QmpError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout(self.timeout));
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
            match self.reader.read_line(&mut self.partial) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(_) if !self.partial.ends_with('\n') => return Err(QmpError::Closed),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(QmpError::Timeout(self.timeout));
                }
                Err(e) => return Err(e.into()),
            }
            let line = std::mem::take(&mut self.partial);
            if line.trim().is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(&line)
                .map_err(|_| QmpError::Protocol(line.trim().to_string()))?;
            match message.get("event").and_then(Value::as_str) {
                Some(name) => self.events.push_back(Event {
                    name: name.to_string(),
                    data: message.get("data").cloned().unwrap_or(Value::Null),
                }),
                None => return Ok(message),
            }
        }
    }
}
