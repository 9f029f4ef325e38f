//! The user's interrupt, as a flag the runners and the unpacker poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the user interrupts (SIGINT, SIGTERM); runners poll it and stop
/// their processes.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag raised by SIGINT and SIGTERM.
    pub fn on_signals() -> std::io::Result<Cancel> {
        let cancel = Cancel::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, cancel.0.clone())?;
        }
        Ok(cancel)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Raises the flag, as a signal would.
    #[cfg(test)]
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
