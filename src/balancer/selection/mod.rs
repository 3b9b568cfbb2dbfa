//! Node selection: which backend a request goes to, one strategy per file.
//!
//! A [`Selector`] is built by [`build`] from a snapshot of the membership each time
//! membership changes, and is then shared read-only by every connection; `pick`
//! touches only atomics (and, for smooth weighted round robin with huge weights, one
//! short mutex, see [`weighted_round_robin`]). Live load reaches the selectors through
//! the counters in [`Backend`], which the membership table updates in place.
//!
//! Rules shared by every strategy:
//! - a backend of weight 0 is never picked (that is how a draining node takes no
//!   new work before it is removed);
//! - with no backend of positive weight, `pick` returns `None`;
//! - the index returned is an index into the `backends` slice given to [`build`].

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub mod bounded_load;
pub mod consistent_hash;
pub mod least;
pub mod p2c;
pub mod random;
pub mod round_robin;
pub mod weighted_round_robin;

#[cfg(test)]
mod tests;

/// One backend as a selector sees it. Counters are shared with the membership table and updated live.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Stable node id; consistent hashing places the backend on the ring by it, so it
    /// must be the same in every balancer.
    pub id: Arc<str>,
    /// Relative capacity; a backend of weight 2 should get twice the work of weight 1.
    pub weight: u32,
    /// Requests sent and not yet answered, for load-aware strategies.
    pub inflight: Arc<AtomicU64>,
    /// Open client connections assigned to the backend, for least connections.
    pub conns: Arc<AtomicU64>,
}

impl Backend {
    /// A backend with fresh zeroed counters; handy for tests and static setups.
    pub fn new(id: impl Into<Arc<str>>, weight: u32) -> Self {
        Backend {
            id: id.into(),
            weight,
            inflight: Arc::new(AtomicU64::new(0)),
            conns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Current in-flight requests.
    pub fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Current connections.
    pub fn conns(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }
}

/// Chooses a backend index for a request. Built once per membership change; `pick` is lock-free (atomics only).
pub trait Selector: Send + Sync {
    /// The index of the chosen backend, or `None` if none can take work. `key` is the
    /// request's affinity key; strategies that do not hash ignore it.
    fn pick(&self, key: Option<&[u8]>) -> Option<usize>;
    /// The strategy's configuration name, for logs and status pages.
    fn name(&self) -> &'static str;
}

/// The selection strategies a service can be configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Same key, same backend (Ketama ring); keyless requests go to a random point.
    ConsistentHash,
    /// Consistent hashing that spills keys off backends above `load_factor` x mean.
    BoundedLoad,
    /// Each backend in turn, ignoring weights.
    RoundRobin,
    /// nginx's smooth weighted round robin.
    WeightedRoundRobin,
    /// Fewest in-flight requests per unit of weight.
    LeastInflight,
    /// Fewest connections per unit of weight.
    LeastConnections,
    /// Power of two random choices on in-flight requests.
    P2c,
    /// Weighted random.
    Random,
}

impl Algorithm {
    /// Every strategy, in declaration order; for help texts, benches and tests.
    pub const ALL: [Algorithm; 8] = [
        Algorithm::ConsistentHash,
        Algorithm::BoundedLoad,
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastInflight,
        Algorithm::LeastConnections,
        Algorithm::P2c,
        Algorithm::Random,
    ];

    /// The configuration name, identical to the serde spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::BoundedLoad => "bounded_load",
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastInflight => "least_inflight",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::P2c => "p2c",
            Algorithm::Random => "random",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the [`Algorithm`]s; the message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown balancing algorithm {:?}: expected one of ",
            self.0
        )?;
        for (i, alg) in Algorithm::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{alg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Accepts the configuration names, and `-` in place of `_` for command lines.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == wanted)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// Tuning shared by the strategies that need it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Ring points per unit of weight for the hashing strategies.
    pub vnodes: u32,
    /// Bounded load's `c`: no backend takes more than this times its fair share.
    pub load_factor: f64,
}

/// Bounded load's default `c`; 1.25 is the value the paper and Vimeo's deployment use.
pub const DEFAULT_LOAD_FACTOR: f64 = 1.25;

impl Default for Options {
    fn default() -> Self {
        Options {
            vnodes: crate::ring::DEFAULT_VNODES,
            load_factor: DEFAULT_LOAD_FACTOR,
        }
    }
}

/// Builds the selector for `alg` over `backends` (one membership snapshot).
pub fn build(alg: Algorithm, backends: Arc<[Backend]>, opts: &Options) -> Box<dyn Selector> {
    match alg {
        Algorithm::ConsistentHash => {
            Box::new(consistent_hash::ConsistentHash::new(backends, opts.vnodes))
        }
        Algorithm::BoundedLoad => Box::new(bounded_load::BoundedLoad::new(
            backends,
            opts.vnodes,
            opts.load_factor,
        )),
        Algorithm::RoundRobin => Box::new(round_robin::RoundRobin::new(&backends)),
        Algorithm::WeightedRoundRobin => {
            Box::new(weighted_round_robin::WeightedRoundRobin::new(&backends))
        }
        Algorithm::LeastInflight => Box::new(least::Least::new(backends, least::Load::Inflight)),
        Algorithm::LeastConnections => {
            Box::new(least::Least::new(backends, least::Load::Connections))
        }
        Algorithm::P2c => Box::new(p2c::P2c::new(backends)),
        Algorithm::Random => Box::new(random::WeightedRandom::new(&backends)),
    }
}

/// Indices of the backends that may be picked (positive weight), in slice order.
fn eligible(backends: &[Backend]) -> Vec<usize> {
    (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect()
}

/// What [`measure`] found for one strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Fraction of keys sent to a different backend once one of the backends is
    /// removed; 1/n is the least possible (the removed backend's own keys).
    pub key_movement_on_removal: f64,
    /// Keys on the busiest backend divided by the mean; 1.0 is perfect balance.
    pub peak_to_mean: f64,
}

/// Compares strategies on a simulated workload, for benchmarks and design notes.
///
/// `keys` requests with keys `key-0`, `key-1`, … go to `n_backends` backends of
/// weight 1; each pick adds one in-flight request to its backend and none ever
/// finishes, so load-aware strategies see the load they create. Then backend
/// `n_backends / 2` is removed and the same keys are replayed on fresh counters.
pub fn measure(alg: Algorithm, n_backends: usize, keys: usize) -> Stats {
    let ids: Vec<String> = (1..=n_backends).map(|i| format!("node-{i}")).collect();
    let full = replay(alg, &ids, keys);
    let mut fewer_ids = ids.clone();
    if !fewer_ids.is_empty() {
        fewer_ids.remove(n_backends / 2);
    }
    let fewer = replay(alg, &fewer_ids, keys);

    let mut counts = vec![0usize; n_backends];
    let mut moved = 0usize;
    for (before, after) in full.iter().zip(&fewer) {
        if let Some(i) = *before {
            counts[i] += 1;
        }
        let before = before.map(|i| &ids[i]);
        let after = after.map(|i| &fewer_ids[i]);
        if before != after {
            moved += 1;
        }
    }
    let mean = keys as f64 / n_backends.max(1) as f64;
    let peak = counts.iter().copied().max().unwrap_or(0) as f64;
    Stats {
        key_movement_on_removal: moved as f64 / keys.max(1) as f64,
        peak_to_mean: if mean > 0.0 { peak / mean } else { 0.0 },
    }
}

/// The backend index each key goes to under [`measure`]'s workload.
fn replay(alg: Algorithm, ids: &[String], keys: usize) -> Vec<Option<usize>> {
    let backends: Arc<[Backend]> = ids.iter().map(|id| Backend::new(id.as_str(), 1)).collect();
    let selector = build(alg, backends.clone(), &Options::default());
    (0..keys)
        .map(|k| {
            let key = format!("key-{k}");
            let picked = selector.pick(Some(key.as_bytes()))?;
            backends[picked].inflight.fetch_add(1, Ordering::Relaxed);
            backends[picked].conns.fetch_add(1, Ordering::Relaxed);
            Some(picked)
        })
        .collect()
}
