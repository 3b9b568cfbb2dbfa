//! Consistent hashing: the same key goes to the same backend while membership holds.

use std::sync::Arc;

use super::{Backend, Selector};
use crate::ring::Ring;

/// A backend's place on the ring: hashed by its id, resolving to its slice index.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// The backend's id, which fixes its ring points in every balancer.
    id: Arc<str>,
    /// Index into the membership snapshot.
    pub(crate) index: usize,
}

impl AsRef<str> for Slot {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

/// The ring over the backends of positive weight, each with its weight.
pub(crate) fn ring_of(backends: &[Backend], vnodes: u32) -> Ring<Slot> {
    let slots = backends.iter().enumerate().map(|(index, b)| {
        let slot = Slot {
            id: b.id.clone(),
            index,
        };
        (slot, b.weight)
    });
    Ring::new(slots, vnodes)
}

/// A key that lands on a uniformly random ring point, for requests without a key.
pub(crate) fn random_key() -> [u8; 8] {
    rand::random::<u64>().to_le_bytes()
}

/// Ketama consistent hashing over backend ids (see [`crate::ring`] for the scheme).
///
/// A request without a key has no affinity to keep, so it goes to a random point of
/// the ring: backends then receive keyless traffic in the same proportions as keyed
/// traffic (their share of the ring), with no shared state between picks.
#[derive(Debug)]
pub struct ConsistentHash {
    /// The ring, built once per membership snapshot.
    ring: Ring<Slot>,
}

impl ConsistentHash {
    /// Builds the selector over one membership snapshot with `vnodes` points per weight.
    pub fn new(backends: Arc<[Backend]>, vnodes: u32) -> Self {
        ConsistentHash {
            ring: ring_of(&backends, vnodes),
        }
    }
}

impl Selector for ConsistentHash {
    fn pick(&self, key: Option<&[u8]>) -> Option<usize> {
        let slot = match key {
            Some(key) => self.ring.get(key),
            None => self.ring.get(&random_key()),
        };
        slot.map(|s| s.index)
    }

    fn name(&self) -> &'static str {
        "consistent_hash"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::selection::tests::{backends, shares};
    use crate::ring::DEFAULT_VNODES;

    /// The same key always gets the same backend, whatever the input order.
    #[test]
    fn same_key_same_backend() {
        let forward = backends(&[1, 1, 1, 1, 1]);
        let reversed: Arc<[Backend]> = forward.iter().rev().cloned().collect();
        let a = ConsistentHash::new(forward.clone(), DEFAULT_VNODES);
        let b = ConsistentHash::new(reversed.clone(), DEFAULT_VNODES);
        for k in 0..1_000 {
            let key = format!("user:{k}");
            let ia = a.pick(Some(key.as_bytes())).unwrap();
            assert_eq!(a.pick(Some(key.as_bytes())), Some(ia));
            let ib = b.pick(Some(key.as_bytes())).unwrap();
            assert_eq!(forward[ia].id, reversed[ib].id);
        }
    }

    /// Keyed and keyless traffic both follow the weights.
    #[test]
    fn follows_weights() {
        let backends = backends(&[1, 2, 1, 0]);
        let selector = ConsistentHash::new(backends.clone(), DEFAULT_VNODES);
        let keyed = shares(&selector, 4, 100_000, |k| {
            Some(format!("key-{k}").into_bytes())
        });
        let keyless = shares(&selector, 4, 100_000, |_| None);
        for got in [keyed, keyless] {
            assert!((got[1] - 0.5).abs() < 0.04, "{got:?}");
            assert_eq!(got[3], 0.0);
        }
    }
}
