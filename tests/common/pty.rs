//! A program on a pseudo-terminal, as a person at a terminal runs it: it is
//! the session leader with the pty as its controlling terminal; what it
//! writes is collected, and lines are typed into it.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Session {
    child: Child,
    input: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    /// How much of the output an `expect` has already matched.
    seen: usize,
}

impl Session {
    pub fn spawn(command: &mut Command) -> Session {
        let pty = nix::pty::openpty(None, None).unwrap();
        // Neither end may leak into other children (tests run side by side):
        // a child holding the master would keep the terminal open after
        // the test, and its shell would wait on it for ever.
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .unwrap();
        }
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        command
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let input = master.try_clone().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let collected = output.clone();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            // Ends with EIO once every holder of the slave has closed it.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                collected.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Session {
            child,
            input,
            output,
            seen: 0,
        }
    }

    /// Everything written to the terminal so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `text` appears after what the last expect matched.
    pub fn expect(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if let Some(at) = output.get(self.seen..).and_then(|rest| rest.find(text)) {
                self.seen += at + text.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear within {timeout:?}; the terminal shows:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).unwrap();
        self.input.write_all(b"\r").unwrap();
        self.input.flush().unwrap();
    }

    /// Waits for the program to end; kills it if it outlives `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {timeout:?}; the terminal shows:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    /// A test that fails half-way leaves no program behind on its terminal.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
