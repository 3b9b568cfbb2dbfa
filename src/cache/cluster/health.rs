//! Which slots of a Redis Cluster recently failed, and rate-limited warnings about it.
//!
//! A failure marks only its own slot down for [`RETRY_AFTER`], so a master failing
//! over cools its own slots and the others stay in use.

use super::super::redis::{RETRY_AFTER, WARN_EVERY};
use super::super::script::SLOTS;
use super::super::CacheError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Per-slot down marks of one cluster client.
pub(super) struct SlotHealth {
    /// Reference point of the millisecond clocks below.
    epoch: Instant,
    /// Per slot: calls fail fast until this time (ms since `epoch`).
    down_until_ms: Box<[AtomicU64]>,
    /// When the last warning was logged (ms since `epoch`, `u64::MAX` = never).
    last_warn_ms: AtomicU64,
    /// Failures since the last warning.
    unwarned: AtomicU64,
    /// Whether the last call failed (to log recovery once).
    down: AtomicBool,
}

impl SlotHealth {
    pub(super) fn new() -> SlotHealth {
        SlotHealth {
            epoch: Instant::now(),
            down_until_ms: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            last_warn_ms: AtomicU64::new(u64::MAX),
            unwarned: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether `slot` failed less than [`RETRY_AFTER`] ago.
    pub(super) fn is_down(&self, slot: u16) -> bool {
        self.now_ms() < self.down_until_ms[usize::from(slot)].load(Ordering::Relaxed)
    }

    /// A call succeeded: logs the recovery once.
    pub(super) fn succeeded(&self, label: &str) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(redis = %label, "redis cluster reachable again");
        }
    }

    /// A call for `slot` failed because of `why`: marks the slot down when `mark` is
    /// set, warns at most once per [`WARN_EVERY`], and returns the error.
    pub(super) fn failed(&self, label: &str, slot: u16, mark: bool, why: &str) -> CacheError {
        let now = self.now_ms();
        if mark {
            self.down_until_ms[usize::from(slot)]
                .store(now + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        }
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
            tracing::warn!(
                redis = %label,
                slot,
                error = why,
                failures = unwarned,
                "redis cluster slot unavailable; answering from the store"
            );
        }
        CacheError::Unavailable(format!("{label} (slot {slot}): {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_marks_only_its_own_slot() {
        let h = SlotHealth::new();
        let e = h.failed("redis cluster x", 7, true, "refused");
        assert!(matches!(e, CacheError::Unavailable(m) if m.contains("slot 7")));
        assert!(h.is_down(7));
        assert!(!h.is_down(8));
        h.failed("redis cluster x", 9, false, "too few replicas");
        assert!(!h.is_down(9));
    }
}
