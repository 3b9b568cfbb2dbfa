//! Power of two random choices: draw two backends, send to the less loaded.

use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;

use super::least::compare_load;
use super::random::WeightTable;
use super::{Backend, Selector};

/// Power of two random choices (Mitzenmacher) on in-flight requests.
///
/// Two distinct candidates are drawn in proportion to weight and the one with the lower
/// `inflight / weight` wins (the first drawn on ties). Nearly as good as least
/// in-flight at avoiding hot backends, yet it reads two counters instead of all of
/// them, and concurrent balancers do not all herd onto the same least-loaded one.
#[derive(Debug)]
pub struct P2c {
    /// The membership snapshot, for the live counters.
    backends: Arc<[Backend]>,
    /// Weighted draws over backends of positive weight.
    table: WeightTable,
}

impl P2c {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: Arc<[Backend]>) -> Self {
        P2c {
            table: WeightTable::new(&backends),
            backends,
        }
    }
}

impl Selector for P2c {
    fn pick(&self, _key: Option<&[u8]>) -> Option<usize> {
        let (first, second) = self.table.sample_two(&mut rand::thread_rng())?;
        let Some(second) = second else {
            return Some(first);
        };
        let (a, b) = (&self.backends[first], &self.backends[second]);
        match compare_load(b.inflight(), b.weight, a.inflight(), a.weight) {
            CmpOrdering::Less => Some(second),
            CmpOrdering::Equal | CmpOrdering::Greater => Some(first),
        }
    }

    fn name(&self) -> &'static str {
        "p2c"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::balancer::selection::tests::{backends, shares};

    /// A loaded backend always meets a less loaded one, so it gets nothing.
    #[test]
    fn prefers_less_loaded() {
        let backends = backends(&[1, 1, 1, 1]);
        backends[2].inflight.store(10, Ordering::Relaxed);
        let selector = P2c::new(backends.clone());
        let got = shares(&selector, backends.len(), 10_000, |_| None);
        assert_eq!(got[2], 0.0, "{got:?}");
    }

    /// Under a graded load the least loaded backend gets the most picks, the most
    /// loaded the fewest.
    #[test]
    fn picks_fall_with_load() {
        let backends = backends(&[1, 1, 1, 1]);
        for (i, b) in backends.iter().enumerate() {
            b.inflight.store(i as u64 * 10, Ordering::Relaxed);
        }
        let selector = P2c::new(backends.clone());
        let got = shares(&selector, backends.len(), 20_000, |_| None);
        // Expected 3/6, 2/6, 1/6, 0 (all six pairs equally likely).
        for (share, want) in got.iter().zip([0.5, 1.0 / 3.0, 1.0 / 6.0, 0.0]) {
            assert!((share - want).abs() < 0.02, "{got:?}");
        }
    }

    /// Idle, picks follow the weights.
    #[test]
    fn idle_follows_weights() {
        let backends = backends(&[1, 3]);
        let selector = P2c::new(backends.clone());
        let got = shares(&selector, backends.len(), 20_000, |_| None);
        assert!((got[1] - 0.75).abs() < 0.02, "{got:?}");
    }

    /// When picks add load, a backend of weight 3 ends with about three times the load.
    #[test]
    fn load_follows_weights() {
        let backends = backends(&[1, 3]);
        let selector = P2c::new(backends.clone());
        for _ in 0..4_000 {
            let i = selector.pick(None).unwrap();
            backends[i].inflight.fetch_add(1, Ordering::Relaxed);
        }
        let ratio = backends[1].inflight() as f64 / backends[0].inflight() as f64;
        assert!((2.7..3.3).contains(&ratio), "ratio {ratio}");
    }
}
