//! Helpers shared by the strategies' tests, and the rules every strategy obeys.

use std::sync::Arc;

use super::*;

/// Backends `b0`, `b1`, … with the given weights and idle counters.
pub(crate) fn backends(weights: &[u32]) -> Arc<[Backend]> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("b{i}"), w))
        .collect()
}

/// The fraction of `picks` picks each of `n` backends received; `key(k)` is the key
/// of pick `k`.
pub(crate) fn shares(
    selector: &dyn Selector,
    n: usize,
    picks: usize,
    key: impl Fn(usize) -> Option<Vec<u8>>,
) -> Vec<f64> {
    let mut counts = vec![0usize; n];
    for k in 0..picks {
        counts[selector.pick(key(k).as_deref()).expect("a backend")] += 1;
    }
    counts.iter().map(|&c| c as f64 / picks as f64).collect()
}

/// With no backends, or only backends of weight 0, every strategy answers `None`.
#[test]
fn empty_backends_give_none() {
    for alg in Algorithm::ALL {
        for weights in [&[][..], &[0, 0][..]] {
            let selector = build(alg, backends(weights), &Options::default());
            assert_eq!(selector.pick(None), None, "{alg} {weights:?}");
            assert_eq!(selector.pick(Some(b"key")), None, "{alg} {weights:?}");
        }
    }
}

/// A single backend gets every request under every strategy.
#[test]
fn single_backend_gets_everything() {
    for alg in Algorithm::ALL {
        let selector = build(alg, backends(&[0, 3]), &Options::default());
        for k in 0..20 {
            assert_eq!(selector.pick(Some(&[k])), Some(1), "{alg}");
            assert_eq!(selector.pick(None), Some(1), "{alg}");
        }
    }
}

/// Names round-trip through `Display`, `FromStr`, serde and the selector's `name`.
#[test]
fn algorithm_names_round_trip() {
    for alg in Algorithm::ALL {
        let name = alg.to_string();
        assert_eq!(name.parse::<Algorithm>(), Ok(alg));
        assert_eq!(serde_json::to_string(&alg).unwrap(), format!("\"{name}\""));
        assert_eq!(
            serde_json::from_str::<Algorithm>(&format!("\"{name}\"")).unwrap(),
            alg
        );
        assert_eq!(build(alg, backends(&[1]), &Options::default()).name(), name);
    }
    assert_eq!("Least-Inflight".parse(), Ok(Algorithm::LeastInflight));
    let err = "fastest".parse::<Algorithm>().unwrap_err().to_string();
    assert!(err.contains("fastest") && err.contains("p2c"), "{err}");
}

/// Consistent hashing moves only the removed backend's keys; round robin moves most.
#[test]
fn measure_shows_the_difference() {
    let hash = measure(Algorithm::ConsistentHash, 10, 20_000);
    assert!(
        (0.07..0.13).contains(&hash.key_movement_on_removal),
        "{hash:?}"
    );
    assert!(hash.peak_to_mean < 1.2, "{hash:?}");
    let rr = measure(Algorithm::RoundRobin, 10, 20_000);
    assert!(rr.key_movement_on_removal > 0.5, "{rr:?}");
    assert!((rr.peak_to_mean - 1.0).abs() < 1e-9, "{rr:?}");
    let lone = measure(Algorithm::P2c, 1, 10);
    assert_eq!(lone.key_movement_on_removal, 1.0);
    assert_eq!(measure(Algorithm::Random, 0, 10).peak_to_mean, 0.0);
}
