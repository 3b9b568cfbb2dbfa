//! Outage bookkeeping shared by the Redis clients: a millisecond clock, whether the
//! last call failed (so the recovery is logged once), and warnings rate-limited to
//! one per [`WARN_EVERY`] with the number of failures since the last one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one warning per server (or cluster) this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The outage state of one Redis client.
pub(crate) struct Outages {
    /// Reference point of the millisecond clocks (here and in the caller).
    epoch: Instant,
    /// When the last warning was logged (ms since `epoch`, `u64::MAX` = never).
    last_warn_ms: AtomicU64,
    /// Failures since the last warning.
    unwarned: AtomicU64,
    /// Whether the last call failed (to log recovery once).
    down: AtomicBool,
}

impl Outages {
    /// No failure yet; the clock starts now.
    pub(crate) fn new() -> Outages {
        Outages {
            epoch: Instant::now(),
            last_warn_ms: AtomicU64::new(u64::MAX),
            unwarned: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// Milliseconds since this state was made.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A call succeeded: whether calls were failing until now (true once per outage,
    /// for the caller to log the recovery).
    pub(crate) fn recovered(&self) -> bool {
        self.down.swap(false, Ordering::Relaxed)
    }

    /// A call failed at `now` (ms, [`Outages::now_ms`]): the number of failures since
    /// the last warning when a warning is due (at most one per [`WARN_EVERY`], for
    /// the caller to log), else `None`.
    pub(crate) fn failed(&self, now: u64) -> Option<u64> {
        self.down.store(true, Ordering::Relaxed);
        let unwarned = self.unwarned.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.unwarned.store(0, Ordering::Relaxed);
            return Some(unwarned);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_on_the_first_failure_then_once_per_period_with_the_count() {
        let o = Outages::new();
        assert!(!o.recovered());
        assert_eq!(o.failed(0), Some(1));
        assert_eq!(o.failed(5), None);
        assert_eq!(o.failed(WARN_EVERY.as_millis() as u64 - 1), None);
        assert_eq!(o.failed(WARN_EVERY.as_millis() as u64), Some(3));
        assert!(o.recovered());
        assert!(!o.recovered());
    }
}
