//! Warnings that repeat while a condition lasts, logged at most every 10 s
//! (the condition is counted every time; the log says so).

use std::time::{Duration, Instant};

/// How often a repeated warning is logged.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Remembers when a warning was last logged.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Whether to log now (and if so, starts the next quiet period).
    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_none_or(|t| now - t > WARN_EVERY) {
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}
