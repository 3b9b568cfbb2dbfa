//! Ring and selector microbenchmarks; run with `cargo bench --bench ring`.
//!
//! Prints ring build time and lookup cost for 10, 100 and 1,000 members, then for
//! every selection algorithm its pick cost, the share of keys that move when one of
//! 10 backends is removed, and the busiest backend's load over the mean.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsf::balancer::selection::{build, measure, Algorithm, Backend, Options};
use dsf::ring::{Ring, DEFAULT_VNODES};

/// Keys looked up per timing; enough to hide timer overhead, few enough to stay quick.
const LOOKUPS: usize = 1_000_000;

/// Keys for the key movement and balance simulation.
const SIMULATED_KEYS: usize = 100_000;

fn main() {
    let keys: Vec<[u8; 8]> = (0..LOOKUPS as u64).map(|k| k.to_le_bytes()).collect();

    println!("ring, {DEFAULT_VNODES} vnodes per weight");
    println!(
        "{:>8} {:>10} {:>12} {:>14} {:>16}",
        "members", "points", "build", "get ns/op", "bounded ns/op"
    );
    for members in [10, 100, 1_000] {
        let ids = (0..members).map(|i| (format!("10.0.{}.{}:7000", i / 256, i % 256), 1));
        let (ring, built) = timed(|| Ring::new(ids, DEFAULT_VNODES));
        let (_, get) = timed(|| {
            for key in &keys {
                black_box(ring.get(black_box(key)));
            }
        });
        let (_, bounded) = timed(|| {
            for (i, key) in keys.iter().enumerate() {
                black_box(ring.get_bounded(
                    black_box(key),
                    |_| i as u64 % 7,
                    7 * members as u64,
                    1.25,
                ));
            }
        });
        println!(
            "{members:>8} {:>10} {:>12?} {:>14.1} {:>16.1}",
            members * DEFAULT_VNODES as usize,
            built,
            per_op(get),
            per_op(bounded),
        );
    }

    println!();
    println!("selectors, 10 backends of weight 1, {SIMULATED_KEYS} keys (ideal movement 0.100)");
    println!(
        "{:>22} {:>14} {:>14} {:>14}",
        "algorithm", "pick ns/op", "key movement", "peak/mean"
    );
    for alg in Algorithm::ALL {
        let backends: Arc<[Backend]> = (0..10)
            .map(|i| Backend::new(format!("node-{i}"), 1))
            .collect();
        let selector = build(alg, backends, &Options::default());
        let (_, picked) = timed(|| {
            for key in &keys {
                black_box(selector.pick(Some(black_box(key))));
            }
        });
        let stats = measure(alg, 10, SIMULATED_KEYS);
        println!(
            "{:>22} {:>14.1} {:>14.3} {:>14.3}",
            alg.to_string(),
            per_op(picked),
            stats.key_movement_on_removal,
            stats.peak_to_mean,
        );
    }
}

/// Runs `f` once, returning its result and how long it took.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let result = f();
    (result, start.elapsed())
}

/// Nanoseconds per lookup for a run over [`LOOKUPS`] keys.
fn per_op(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / LOOKUPS as f64
}
