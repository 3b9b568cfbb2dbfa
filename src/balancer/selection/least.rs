//! Least in-flight requests and least connections: the backend with the least load per unit of weight.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Backend, Selector};

/// Which live counter counts as load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `Backend::inflight`: reacts to slow backends within one request.
    Inflight,
    /// `Backend::conns`: for long-lived connections whose requests are few.
    Connections,
}

/// Picks the backend with the least `load / weight`, as nginx's `least_conn` does, so
/// that a backend of weight 2 is kept at about twice the load of one of weight 1.
///
/// Ties go to the higher weight, then to the first backend after a start position
/// that rotates with every pick: an idle cluster is served round robin rather than
/// piling every request onto the first backend. `pick` scans all backends (n atomic
/// loads), which is cheap next to forwarding a request for clusters of hundreds.
#[derive(Debug)]
pub struct Least {
    /// The membership snapshot, for the live counters.
    backends: Arc<[Backend]>,
    /// Backends of positive weight, in slice order.
    order: Vec<usize>,
    /// The counter compared.
    load: Load,
    /// Picks so far; picks the scan's starting point.
    start: AtomicUsize,
}

impl Least {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: Arc<[Backend]>, load: Load) -> Self {
        Least {
            order: super::eligible(&backends),
            backends,
            load,
            start: AtomicUsize::new(0),
        }
    }

    /// The load counter this selector compares.
    fn load_of(&self, backend: &Backend) -> u64 {
        match self.load {
            Load::Inflight => backend.inflight(),
            Load::Connections => backend.conns(),
        }
    }
}

/// Compares `load_a / weight_a` with `load_b / weight_b` without division or overflow.
pub(crate) fn compare_load(load_a: u64, weight_a: u32, load_b: u64, weight_b: u32) -> CmpOrdering {
    let a = u128::from(load_a) * u128::from(weight_b);
    let b = u128::from(load_b) * u128::from(weight_a);
    a.cmp(&b)
}

impl Selector for Least {
    fn pick(&self, _key: Option<&[u8]>) -> Option<usize> {
        let n = self.order.len();
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u32)> = None;
        for step in 0..n {
            let index = self.order[(start + step) % n];
            let backend = &self.backends[index];
            let (load, weight) = (self.load_of(backend), backend.weight);
            let better = match best {
                None => true,
                Some((_, best_load, best_weight)) => {
                    match compare_load(load, weight, best_load, best_weight) {
                        CmpOrdering::Less => true,
                        CmpOrdering::Equal => weight > best_weight,
                        CmpOrdering::Greater => false,
                    }
                }
            };
            if better {
                best = Some((index, load, weight));
            }
        }
        best.map(|(index, _, _)| index)
    }

    fn name(&self) -> &'static str {
        match self.load {
            Load::Inflight => "least_inflight",
            Load::Connections => "least_connections",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::selection::tests::{backends, shares};

    /// A backend with many requests in flight gets nothing while others are idle.
    #[test]
    fn avoids_a_loaded_backend() {
        let backends = backends(&[1, 1, 1]);
        backends[1].inflight.store(50, Ordering::Relaxed);
        let selector = Least::new(backends.clone(), Load::Inflight);
        for _ in 0..30 {
            assert_ne!(selector.pick(None), Some(1));
        }
    }

    /// When picks add load, backends fill in proportion to their weights.
    #[test]
    fn load_follows_weights() {
        let backends = backends(&[1, 2, 3, 4]);
        let selector = Least::new(backends.clone(), Load::Connections);
        for _ in 0..1_000 {
            let i = selector.pick(None).unwrap();
            backends[i].conns.fetch_add(1, Ordering::Relaxed);
        }
        let conns: Vec<u64> = backends.iter().map(Backend::conns).collect();
        assert_eq!(conns, [100, 200, 300, 400]);
    }

    /// Among equally loaded backends the heavier one wins.
    #[test]
    fn ties_go_to_weight() {
        let backends = backends(&[1, 3, 1]);
        let selector = Least::new(backends.clone(), Load::Inflight);
        for _ in 0..10 {
            assert_eq!(selector.pick(None), Some(1));
        }
    }

    /// An idle cluster of equal weights is served in rotation, not all by the first.
    #[test]
    fn idle_ties_rotate() {
        let backends = backends(&[1, 1, 1, 1]);
        let selector = Least::new(backends.clone(), Load::Inflight);
        let got = shares(&selector, 4, 400, |_| None);
        assert_eq!(got, [0.25; 4]);
    }

    /// Least connections reads `conns`, not `inflight`.
    #[test]
    fn connections_use_conns() {
        let backends = backends(&[1, 1]);
        backends[0].conns.store(5, Ordering::Relaxed);
        backends[1].inflight.store(5, Ordering::Relaxed);
        let selector = Least::new(backends, Load::Connections);
        assert_eq!(selector.pick(None), Some(1));
        assert_eq!(selector.name(), "least_connections");
    }
}
