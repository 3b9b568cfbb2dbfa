//! Which slots of a Redis Cluster recently failed, and rate-limited warnings about it.
//!
//! A failure marks only its own slot down for [`RETRY_AFTER`], so a master failing
//! over cools its own slots and the others stay in use.

use super::super::outage::Outages;
use super::super::redis::RETRY_AFTER;
use super::super::script::SLOTS;
use super::super::CacheError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-slot down marks of one cluster client.
pub(super) struct SlotHealth {
    /// The clock, the recovery note and rate-limited warnings.
    outages: Outages,
    /// Per slot: calls fail fast until this time ([`Outages::now_ms`]).
    down_until_ms: Box<[AtomicU64]>,
}

impl SlotHealth {
    pub(super) fn new() -> SlotHealth {
        SlotHealth {
            outages: Outages::new(),
            down_until_ms: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.outages.now_ms()
    }

    /// Whether `slot` failed less than [`RETRY_AFTER`] ago.
    pub(super) fn is_down(&self, slot: u16) -> bool {
        self.now_ms() < self.down_until_ms[usize::from(slot)].load(Ordering::Relaxed)
    }

    /// A call succeeded: logs the recovery once.
    pub(super) fn succeeded(&self, label: &str) {
        if self.outages.recovered() {
            tracing::info!(redis = %label, "redis cluster reachable again");
        }
    }

    /// A call for `slot` failed because of `why`: marks the slot down when `mark` is
    /// set, warns at most once per
    /// [`WARN_EVERY`](super::super::outage::WARN_EVERY), and returns the error.
    pub(super) fn failed(&self, label: &str, slot: u16, mark: bool, why: &str) -> CacheError {
        let now = self.now_ms();
        if mark {
            self.down_until_ms[usize::from(slot)]
                .store(now + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        }
        if let Some(unwarned) = self.outages.failed(now) {
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
