//! A test hook, and nothing else: `STAGEBUILD_FAULT_PAUSE=POINT` makes
//! stagebuild stop itself (SIGSTOP) when it reaches the named point, so
//! that a test can SIGKILL it at a moment that random kills reach only by
//! luck. The points are named where they are reached; a run without the
//! variable never stops.

/// Stops the process here if `STAGEBUILD_FAULT_PAUSE` names `point`.
pub fn reached(point: &str) {
    if std::env::var_os("STAGEBUILD_FAULT_PAUSE").is_some_and(|p| p == point) {
        eprintln!("stagebuild: stopped at fault point {point} (STAGEBUILD_FAULT_PAUSE)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
