//! Round robin: each backend in turn, ignoring weights.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Selector};

/// Hands requests to backends in a fixed rotation. Ignores weight except that weight
/// 0 excludes a backend; use weighted round robin when capacities differ.
#[derive(Debug)]
pub struct RoundRobin {
    /// Backends of positive weight, in slice order.
    order: Vec<usize>,
    /// Picks so far; wrapping is harmless, it only shifts the rotation once.
    next: AtomicUsize,
}

impl RoundRobin {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: &[Backend]) -> Self {
        RoundRobin {
            order: super::eligible(backends),
            next: AtomicUsize::new(0),
        }
    }
}

impl Selector for RoundRobin {
    fn pick(&self, _key: Option<&[u8]>) -> Option<usize> {
        if self.order.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.order[turn % self.order.len()])
    }

    fn name(&self) -> &'static str {
        "round_robin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::selection::tests::backends;

    /// Backends come in turn, skipping weight 0, whatever the other weights.
    #[test]
    fn rotates() {
        let backends = backends(&[1, 0, 5, 1]);
        let selector = RoundRobin::new(&backends);
        let picks: Vec<_> = (0..6).map(|_| selector.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 2, 3, 0, 2, 3]);
    }
}
