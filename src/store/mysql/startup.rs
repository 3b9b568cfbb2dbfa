//! Pacing of start-up attempts while the database cannot be reached.

use super::MySqlStore;
use crate::store::{StoreError, StoreResult};
use std::time::{Duration, Instant};

/// First pause between start-up attempts; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Longest pause between start-up attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// While waiting, at most one warning this often.
const WAIT_WARN_EVERY: Duration = Duration::from_secs(10);

/// The next start-up attempt: after how long, and whether to log the failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Retry {
    /// The pause before the next attempt.
    pub(super) delay: Duration,
    /// Whether this failure should be logged.
    pub(super) warn: bool,
}

/// Pacing of start-up attempts while the database cannot be reached.
#[derive(Debug)]
pub(super) struct StartupWait {
    /// Give up once this much time has passed; zero = never.
    limit: Duration,
    /// Failed attempts so far.
    pub(super) attempts: u32,
    /// The next pause.
    delay: Duration,
    /// When (since the start) the last warning was logged.
    warned_at: Option<Duration>,
}

impl StartupWait {
    pub(super) fn new(limit: Duration) -> StartupWait {
        StartupWait {
            limit,
            attempts: 0,
            delay: FIRST_RETRY_DELAY,
            warned_at: None,
        }
    }

    /// After a failed attempt `elapsed` into the start: the next one, or `None` once
    /// the limit has passed.
    pub(super) fn next(&mut self, elapsed: Duration) -> Option<Retry> {
        self.attempts += 1;
        if !self.limit.is_zero() && elapsed >= self.limit {
            return None;
        }
        let mut delay = self.delay;
        if !self.limit.is_zero() {
            delay = delay.min(self.limit - elapsed);
        }
        self.delay = (self.delay * 2).min(MAX_RETRY_DELAY);
        let warn = self
            .warned_at
            .is_none_or(|at| elapsed.saturating_sub(at) >= WAIT_WARN_EVERY);
        if warn {
            self.warned_at = Some(elapsed);
        }
        Some(Retry { delay, warn })
    }
}

impl MySqlStore {
    /// Applies migrations, waiting (with capped backoff) while the database is
    /// unreachable or unresponsive, for at most `limit` (zero = as long as it takes).
    /// Any other failure ends the wait at once. Returns the attempts made.
    pub(super) async fn wait_and_migrate(
        &self,
        limit: Duration,
        started: Instant,
    ) -> StoreResult<u32> {
        let mut wait = StartupWait::new(limit);
        loop {
            match self.migrate().await {
                Ok(()) => return Ok(wait.attempts + 1),
                Err(e @ (StoreError::Unavailable(_) | StoreError::Timeout(_))) => {
                    match wait.next(started.elapsed()) {
                        Some(Retry { delay, warn }) => {
                            if warn {
                                tracing::warn!(
                                    database = %self.target,
                                    error = %e,
                                    attempts = wait.attempts,
                                    waited_ms = started.elapsed().as_millis() as u64,
                                    "waiting for the database"
                                );
                            }
                            async_io::Timer::after(delay).await;
                        }
                        None => {
                            return Err(StoreError::Unavailable(format!(
                                "{}: gave up after {:?} (store.startup_timeout): {e}",
                                self.target,
                                started.elapsed()
                            )))
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
