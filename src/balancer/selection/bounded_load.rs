//! Consistent hashing with bounded loads: key affinity, but no backend above `c` x its share.

use std::sync::Arc;

use super::consistent_hash::{random_key, ring_of, Slot};
use super::{Backend, Selector};
use crate::ring::Ring;

/// Consistent hashing with bounded loads (Mirrokni et al.) on live in-flight counts.
///
/// A key goes to its ring backend unless that backend already carries more than
/// `load_factor` times its weighted share of all in-flight requests; then it goes to
/// the next backend clockwise that has room. Hot keys and slow backends thus spill
/// over instead of piling up, and keys return home as load falls.
///
/// `pick` reads every backend's counter once to get the total (n relaxed loads).
/// Concurrent picks may all see the same room, so the bound can be exceeded by the
/// number of picks racing at that instant; it is a steering rule, not a hard limit.
/// Requests without a key start from a random point of the ring.
#[derive(Debug)]
pub struct BoundedLoad {
    /// The membership snapshot, for the live counters.
    backends: Arc<[Backend]>,
    /// The ring, built once per membership snapshot.
    ring: Ring<Slot>,
    /// `c`: the most a backend may carry, as a multiple of its fair share.
    load_factor: f64,
}

impl BoundedLoad {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: Arc<[Backend]>, vnodes: u32, load_factor: f64) -> Self {
        BoundedLoad {
            ring: ring_of(&backends, vnodes),
            backends,
            load_factor,
        }
    }
}

impl Selector for BoundedLoad {
    fn pick(&self, key: Option<&[u8]>) -> Option<usize> {
        let random;
        let key = match key {
            Some(key) => key,
            None => {
                random = random_key();
                &random
            }
        };
        // Only backends on the ring count: weight 0 means taking no new work.
        let total = self
            .ring
            .members()
            .map(|(slot, _)| self.backends[slot.index].inflight())
            .sum();
        let load_of = |slot: &Slot| self.backends[slot.index].inflight();
        let slot = self
            .ring
            .get_bounded(key, load_of, total, self.load_factor)?;
        Some(slot.index)
    }

    fn name(&self) -> &'static str {
        "bounded_load"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::balancer::selection::consistent_hash::ConsistentHash;
    use crate::balancer::selection::tests::backends;
    use crate::ring::DEFAULT_VNODES;

    /// Idle, it agrees with plain consistent hashing.
    #[test]
    fn idle_matches_consistent_hash() {
        let backends = backends(&[1, 1, 1, 1]);
        let bounded = BoundedLoad::new(backends.clone(), DEFAULT_VNODES, 1.25);
        let plain = ConsistentHash::new(backends, DEFAULT_VNODES);
        for k in 0..1_000 {
            let key = format!("key-{k}");
            assert_eq!(
                bounded.pick(Some(key.as_bytes())),
                plain.pick(Some(key.as_bytes()))
            );
        }
    }

    /// One hot key cannot push its backend past the bound: the overflow spills.
    #[test]
    fn hot_key_spills() {
        let backends = backends(&[1, 1, 1, 1]);
        let selector = BoundedLoad::new(backends.clone(), DEFAULT_VNODES, 1.25);
        for _ in 0..1_000 {
            let i = selector.pick(Some(b"hot")).unwrap();
            backends[i].inflight.fetch_add(1, Ordering::Relaxed);
        }
        let peak = backends.iter().map(Backend::inflight).max().unwrap();
        assert!(
            peak as f64 <= (1.25f64 * 1_000.0 / 4.0).ceil(),
            "peak {peak}"
        );
    }

    /// Under sustained load no backend exceeds 1.25x the mean.
    #[test]
    fn load_stays_bounded() {
        let backends = backends(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        let selector = BoundedLoad::new(backends.clone(), DEFAULT_VNODES, 1.25);
        for k in 0..20_000 {
            let key = format!("key-{k}");
            let i = selector.pick(Some(key.as_bytes())).unwrap();
            backends[i].inflight.fetch_add(1, Ordering::Relaxed);
        }
        let peak = backends.iter().map(Backend::inflight).max().unwrap();
        assert!(peak as f64 <= 1.25 * 2_000.0, "peak {peak}");
    }
}
