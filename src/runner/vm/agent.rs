//! What the guest agent (`vm/agent`) says over the control channel, one
//! line per message.

use std::fmt;

/// The kernel a guest runs, as its agent announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -m`: `i686`, `x86_64`.
    pub machine: String,
    /// `uname -r`.
    pub release: String,
}

/// As the checkpoint records it (see `guest::KERNEL`): `uname -m` and `uname -r`.
impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.machine, self.release)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `HELLO <machine> <release>`: the agent is up, on this kernel. A kexec
    /// step hears it twice: from the kernel it starts in and the one it loads.
    Hello(Kernel),
    /// `LOG <text>`: a line of the step's output.
    Log(String),
    /// `KEXEC`: a kernel is loaded and the guest jumps to it.
    Kexec,
    /// `EXIT <code>`: the step's script ended.
    Exit(i32),
    /// `DONE`: the output tar is written and synced.
    Done,
    /// A line that is none of these, kept whole.
    Unknown(String),
}

impl Message {
    /// One line as the agent wrote it, without its newline.
    pub fn parse(line: &str) -> Message {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let parsed = match word {
            "HELLO" => rest.split_once(' ').map(|(machine, release)| {
                Message::Hello(Kernel {
                    machine: machine.to_string(),
                    release: release.to_string(),
                })
            }),
            "LOG" => Some(Message::Log(rest.to_string())),
            "KEXEC" if rest.is_empty() => Some(Message::Kexec),
            "EXIT" => rest.trim().parse().ok().map(Message::Exit),
            "DONE" if rest.is_empty() => Some(Message::Done),
            _ => None,
        };
        parsed.unwrap_or_else(|| Message::Unknown(line.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_the_agent_writes_is_a_message() {
        let i686 = Kernel {
            machine: "i686".into(),
            release: "6.1.4".into(),
        };
        assert_eq!(
            Message::parse("HELLO i686 6.1.4"),
            Message::Hello(i686.clone())
        );
        assert_eq!(i686.to_string(), "i686 6.1.4");
        assert_eq!(
            Message::parse("LOG   indented, with a trailing space "),
            Message::Log("  indented, with a trailing space ".into())
        );
        assert_eq!(Message::parse("LOG "), Message::Log(String::new()));
        assert_eq!(Message::parse("KEXEC"), Message::Kexec);
        assert_eq!(Message::parse("EXIT 0"), Message::Exit(0));
        assert_eq!(Message::parse("EXIT 125"), Message::Exit(125));
        assert_eq!(Message::parse("DONE"), Message::Done);
        for odd in ["HELLO i686", "EXIT", "EXIT one", "DONE now", "hello", ""] {
            assert_eq!(Message::parse(odd), Message::Unknown(odd.into()), "{odd:?}");
        }
    }
}
