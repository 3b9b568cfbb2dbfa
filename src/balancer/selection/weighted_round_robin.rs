//! Smooth weighted round robin, as in nginx: weighted, and interleaved rather than bursty.
//!
//! Every pick, each backend's `current` grows by its weight; the backend with the
//! largest `current` (the first one on ties) is chosen and its `current` drops by the
//! total weight. Weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{Backend, Selector};

/// Longest schedule precomputed at build time: 64 Ki entries, 512 KiB.
///
/// The smooth sequence repeats after `sum(weights) / gcd(weights)` picks, so for any
/// realistic weights it is computed once and `pick` is one atomic increment.
const SCHEDULE_LIMIT: u64 = 1 << 16;

/// nginx's smooth weighted round robin.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// How picks are made; see [`Mode`].
    mode: Mode,
}

/// The two ways of producing the same sequence.
#[derive(Debug)]
enum Mode {
    /// The whole period, precomputed; `pick` only bumps the cursor. Lock-free.
    Schedule {
        /// Backend indices in pick order, one full period.
        order: Vec<usize>,
        /// Picks so far.
        cursor: AtomicUsize,
    },
    /// For periods beyond [`SCHEDULE_LIMIT`]: the state machine behind a mutex. The
    /// state is one counter per backend, all updated together on every pick, which
    /// atomics cannot do consistently; the lock is held for `n` additions, never
    /// across I/O, so it is short and, at request rates, rarely contended.
    Live(Mutex<Smooth>),
}

impl WeightedRoundRobin {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: &[Backend]) -> Self {
        let indices = super::eligible(backends);
        let divisor = indices
            .iter()
            .fold(0u64, |g, &i| gcd(g, u64::from(backends[i].weight)));
        let weights: Vec<i64> = indices
            .iter()
            .map(|&i| (u64::from(backends[i].weight) / divisor.max(1)) as i64)
            .collect();
        let period: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut smooth = Smooth::new(indices, weights);
        let mode = if period <= SCHEDULE_LIMIT {
            Mode::Schedule {
                order: (0..period).filter_map(|_| smooth.next()).collect(),
                cursor: AtomicUsize::new(0),
            }
        } else {
            Mode::Live(Mutex::new(smooth))
        };
        WeightedRoundRobin { mode }
    }
}

impl Selector for WeightedRoundRobin {
    fn pick(&self, _key: Option<&[u8]>) -> Option<usize> {
        match &self.mode {
            Mode::Schedule { order, cursor } => {
                if order.is_empty() {
                    return None;
                }
                let turn = cursor.fetch_add(1, Ordering::Relaxed);
                Some(order[turn % order.len()])
            }
            // A poisoned lock only means another pick panicked mid-update; the
            // counters are still usable, at worst slightly unfair for one period.
            Mode::Live(state) => state.lock().unwrap_or_else(|e| e.into_inner()).next(),
        }
    }

    fn name(&self) -> &'static str {
        "weighted_round_robin"
    }
}

/// The smooth weighted round robin state machine.
#[derive(Debug)]
struct Smooth {
    /// Backend index of each entry.
    indices: Vec<usize>,
    /// Weight of each entry, divided by the weights' greatest common divisor.
    weights: Vec<i64>,
    /// Each entry's running `current` weight.
    current: Vec<i64>,
    /// Sum of `weights`.
    total: i64,
}

impl Smooth {
    /// Starts with every `current` at zero, as nginx does.
    fn new(indices: Vec<usize>, weights: Vec<i64>) -> Self {
        let total = weights.iter().sum();
        let current = vec![0; weights.len()];
        Smooth {
            indices,
            weights,
            current,
            total,
        }
    }

    /// The next backend index in the sequence.
    fn next(&mut self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for entry in 0..self.weights.len() {
            self.current[entry] += self.weights[entry];
            if best.is_none_or(|b| self.current[entry] > self.current[b]) {
                best = Some(entry);
            }
        }
        let best = best?;
        self.current[best] -= self.total;
        Some(self.indices[best])
    }
}

/// Greatest common divisor, with `gcd(0, x) == x`.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::selection::tests::{backends, shares};

    /// Weights 5:1:1 interleave exactly as nginx documents.
    #[test]
    fn smooth_sequence_matches_nginx() {
        let backends = backends(&[5, 1, 1]);
        let selector = WeightedRoundRobin::new(&backends);
        let picks: Vec<_> = (0..14).map(|_| selector.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    /// Over many picks the shares equal the weights exactly, weight 0 excluded.
    #[test]
    fn follows_weights() {
        let backends = backends(&[1, 2, 3, 4, 0]);
        let selector = WeightedRoundRobin::new(&backends);
        let got = shares(&selector, backends.len(), 10_000, |_| None);
        assert_eq!(got, [0.1, 0.2, 0.3, 0.4, 0.0]);
    }

    /// Weights too large to precompute use the locked state machine, same sequence.
    #[test]
    fn live_mode_for_huge_weights() {
        let backends = backends(&[500_000, 100_001]);
        let selector = WeightedRoundRobin::new(&backends);
        assert!(matches!(selector.mode, Mode::Live(_)));
        let got = shares(&selector, backends.len(), 600_001, |_| None);
        assert!((got[0] - 500_000.0 / 600_001.0).abs() < 1e-9, "{got:?}");
    }
}
