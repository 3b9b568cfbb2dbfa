//! Weighted random: each pick draws a backend with probability proportional to weight.

use rand::Rng;

use super::{Backend, Selector};

/// Picks at random in proportion to weight. Stateless, so it needs no coordination
/// between threads and spreads load well when requests are many and alike.
#[derive(Debug)]
pub struct WeightedRandom {
    /// The draw table over eligible backends.
    table: WeightTable,
}

impl WeightedRandom {
    /// Builds the selector over one membership snapshot.
    pub fn new(backends: &[Backend]) -> Self {
        WeightedRandom {
            table: WeightTable::new(backends),
        }
    }
}

impl Selector for WeightedRandom {
    fn pick(&self, _key: Option<&[u8]>) -> Option<usize> {
        self.table.sample(&mut rand::thread_rng())
    }

    fn name(&self) -> &'static str {
        "random"
    }
}

/// Cumulative weights for drawing a backend in proportion to its weight by one
/// uniform number and a binary search; shared with power of two choices.
#[derive(Debug)]
pub(crate) struct WeightTable {
    /// Running sum of weights; entry `i` is the sum up to and including `indices[i]`.
    cumulative: Vec<u64>,
    /// Backend index of each entry (backends of weight 0 are left out).
    indices: Vec<usize>,
}

impl WeightTable {
    /// Builds the table over the backends of positive weight.
    pub(crate) fn new(backends: &[Backend]) -> Self {
        let indices = super::eligible(backends);
        let mut total = 0u64;
        let cumulative = indices
            .iter()
            .map(|&i| {
                total += u64::from(backends[i].weight);
                total
            })
            .collect();
        WeightTable {
            cumulative,
            indices,
        }
    }

    /// A backend index drawn in proportion to weight, or `None` if there is none.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Option<usize> {
        let total = *self.cumulative.last()?;
        Some(self.indices[self.entry_at(rng.gen_range(0..total))])
    }

    /// Two distinct backend indices, each drawn in proportion to weight (the second
    /// among those left), or one if only one backend can be picked.
    pub(crate) fn sample_two(&self, rng: &mut impl Rng) -> Option<(usize, Option<usize>)> {
        let total = *self.cumulative.last()?;
        let first = self.entry_at(rng.gen_range(0..total));
        let end = self.cumulative[first];
        let weight = end
            - if first == 0 {
                0
            } else {
                self.cumulative[first - 1]
            };
        if total == weight {
            return Some((self.indices[first], None));
        }
        // Draw over the other entries' weight by skipping the first one's range.
        let mut ticket = rng.gen_range(0..total - weight);
        if ticket >= end - weight {
            ticket += weight;
        }
        let second = self.entry_at(ticket);
        Some((self.indices[first], Some(self.indices[second])))
    }

    /// The entry whose weight range holds `ticket` (which must be below the total).
    fn entry_at(&self, ticket: u64) -> usize {
        self.cumulative.partition_point(|&upto| upto <= ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::selection::tests::{backends, shares};

    /// Picks follow the weights 1:2:3:4.
    #[test]
    fn follows_weights() {
        let backends = backends(&[1, 2, 3, 4]);
        let selector = WeightedRandom::new(&backends);
        let got = shares(&selector, backends.len(), 100_000, |_| None);
        for (i, share) in got.into_iter().enumerate() {
            let want = (i + 1) as f64 / 10.0;
            assert!(
                (share - want).abs() < 0.01,
                "backend {i}: {share} vs {want}"
            );
        }
    }

    /// Pairs are distinct, and the second follows the weights of those left.
    #[test]
    fn pairs_are_distinct() {
        let backends = backends(&[1, 2, 1]);
        let table = WeightTable::new(&backends);
        let mut rng = rand::thread_rng();
        let mut second_counts = [0u32; 3];
        for _ in 0..20_000 {
            let (first, second) = table.sample_two(&mut rng).unwrap();
            let second = second.unwrap();
            assert_ne!(first, second);
            if first == 0 {
                second_counts[second] += 1;
            }
        }
        let ratio = f64::from(second_counts[1]) / f64::from(second_counts[2]);
        assert!((1.7..2.3).contains(&ratio), "ratio {ratio}");
        let lone = WeightTable::new(&backends[..1]);
        assert_eq!(lone.sample_two(&mut rng), Some((0, None)));
    }

    /// A backend of weight 0 is never drawn.
    #[test]
    fn skips_weight_zero() {
        let backends = backends(&[0, 1, 0]);
        let selector = WeightedRandom::new(&backends);
        for _ in 0..1_000 {
            assert_eq!(selector.pick(None), Some(1));
        }
    }
}
