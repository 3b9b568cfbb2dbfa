//! Golden and statistical tests pinning the ring's scheme and balance.

use std::collections::HashMap;

use super::*;

/// Ids `node-1` … `node-n`, each of weight 1.
fn nodes(n: usize) -> Vec<(String, u32)> {
    (1..=n).map(|i| (format!("node-{i}"), 1)).collect()
}

/// Keys `key-0` … `key-{n-1}`.
fn keys(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("key-{i}"))
}

/// How many of `n` keys each member receives.
fn counts(ring: &Ring<String>, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in keys(n) {
        *counts
            .entry(ring.get(key.as_bytes()).unwrap().clone())
            .or_default() += 1;
    }
    counts
}

/// The hash is XXH3-64 with seed 0: pinned against its published empty-input value
/// and two ring points, so a change of hash crate cannot silently move keys.
#[test]
fn hash_is_pinned() {
    assert_eq!(key_point(b""), 0x2d06_8005_38d3_94c2);
    assert_eq!(vnode_point("node-1", 0), xxh3_64(b"node-1#0"));
    assert_eq!(vnode_point("node-1", 159), xxh3_64(b"node-1#159"));
    assert_eq!(vnode_point("node-1", 0), GOLDEN_POINT_NODE1_0);
}

/// `xxh3_64("node-1#0")`.
const GOLDEN_POINT_NODE1_0: u64 = 0x3452_cf15_246f_ac7f;

/// Twenty keys over five members map exactly as they always have.
#[test]
fn golden_table() {
    let ring = Ring::new(nodes(5), DEFAULT_VNODES);
    let golden: [(&str, &str); 20] = GOLDEN;
    for (key, member) in golden {
        assert_eq!(ring.get(key.as_bytes()).unwrap(), member, "key {key}");
    }
}

/// `key-0` … `key-19` over `node-1` … `node-5` with [`DEFAULT_VNODES`].
const GOLDEN: [(&str, &str); 20] = [
    ("key-0", "node-5"),
    ("key-1", "node-4"),
    ("key-2", "node-5"),
    ("key-3", "node-2"),
    ("key-4", "node-1"),
    ("key-5", "node-1"),
    ("key-6", "node-1"),
    ("key-7", "node-2"),
    ("key-8", "node-4"),
    ("key-9", "node-2"),
    ("key-10", "node-4"),
    ("key-11", "node-3"),
    ("key-12", "node-3"),
    ("key-13", "node-2"),
    ("key-14", "node-4"),
    ("key-15", "node-2"),
    ("key-16", "node-4"),
    ("key-17", "node-4"),
    ("key-18", "node-4"),
    ("key-19", "node-2"),
];

/// Print the table above (run with `--ignored --nocapture` after a deliberate change).
#[test]
#[ignore]
fn print_golden_table() {
    let ring = Ring::new(nodes(5), DEFAULT_VNODES);
    println!(
        "const GOLDEN_POINT_NODE1_0: u64 = {:#x};",
        vnode_point("node-1", 0)
    );
    for key in keys(20) {
        println!(
            "    (\"{key}\", \"{}\"),",
            ring.get(key.as_bytes()).unwrap()
        );
    }
}

/// The order in which members are given does not change the mapping.
#[test]
fn order_does_not_matter() {
    let forward = Ring::new(nodes(10), DEFAULT_VNODES);
    let mut reversed_members = nodes(10);
    reversed_members.reverse();
    let reversed = Ring::new(reversed_members, DEFAULT_VNODES);
    for key in keys(10_000) {
        assert_eq!(forward.get(key.as_bytes()), reversed.get(key.as_bytes()));
    }
}

/// A later duplicate id replaces the earlier entry, and weight 0 removes a member.
#[test]
fn duplicates_and_zero_weights() {
    let ring = Ring::new(
        [
            ("a".to_string(), 1),
            ("b".to_string(), 3),
            ("a".to_string(), 2),
            ("c".to_string(), 0),
        ],
        DEFAULT_VNODES,
    );
    let members: Vec<(&String, u32)> = ring.members().collect();
    assert_eq!(members, [(&"a".to_string(), 2), (&"b".to_string(), 3)]);
    assert_eq!(ring.len(), 2);
}

/// Removing one of ten members moves only that member's keys.
#[test]
fn removal_moves_only_the_removed_members_keys() {
    let before = Ring::new(nodes(10), DEFAULT_VNODES);
    let after = Ring::new(
        nodes(10).into_iter().filter(|(id, _)| id != "node-4"),
        DEFAULT_VNODES,
    );
    let mut moved = 0;
    for key in keys(100_000) {
        let (old, new) = (
            before.get(key.as_bytes()).unwrap(),
            after.get(key.as_bytes()).unwrap(),
        );
        if old == "node-4" {
            assert_ne!(new, "node-4");
            moved += 1;
        } else {
            assert_eq!(old, new, "key {key} moved although its member stayed");
        }
    }
    assert!(moved > 0);
}

/// Adding an eleventh member moves about 1/11 of the keys, all of them to it.
#[test]
fn addition_moves_a_fair_share_to_the_new_member() {
    let before = Ring::new(nodes(10), DEFAULT_VNODES);
    let after = Ring::new(nodes(11), DEFAULT_VNODES);
    let mut moved = 0;
    for key in keys(100_000) {
        let (old, new) = (
            before.get(key.as_bytes()).unwrap(),
            after.get(key.as_bytes()).unwrap(),
        );
        if old != new {
            assert_eq!(new, "node-11", "key {key} moved between old members");
            moved += 1;
        }
    }
    let fraction = moved as f64 / 100_000.0;
    assert!((0.06..0.13).contains(&fraction), "moved {fraction}");
}

/// With the default virtual nodes, the busiest of ten equal members stays within
/// 1.15x of the mean.
#[test]
fn default_vnodes_balance() {
    let ring = Ring::new(nodes(10), DEFAULT_VNODES);
    let counts = counts(&ring, 100_000);
    assert_eq!(counts.len(), 10);
    let peak = *counts.values().max().unwrap() as f64;
    assert!(peak / 10_000.0 <= 1.15, "peak to mean {}", peak / 10_000.0);
}

/// A member of weight 2 gets about twice the keys of a member of weight 1.
#[test]
fn weight_two_gets_twice_the_keys() {
    let mut members = nodes(5);
    members[2].1 = 2;
    let ring = Ring::new(members, DEFAULT_VNODES);
    let counts = counts(&ring, 100_000);
    let heavy = counts["node-3"] as f64;
    let light_mean = (counts.values().sum::<usize>() - counts["node-3"]) as f64 / 4.0;
    let ratio = heavy / light_mean;
    assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
}

/// Bounded loads with c = 1.25: assigning keys one by one, no member ever holds more
/// than 1.25x the mean.
#[test]
fn bounded_load_caps_the_peak() {
    let ring = Ring::new(nodes(10), DEFAULT_VNODES);
    let mut load: HashMap<String, u64> = HashMap::new();
    for (total, key) in keys(100_000).enumerate() {
        let total = total as u64;
        let member = ring
            .get_bounded(
                key.as_bytes(),
                |m| load.get(m).copied().unwrap_or(0),
                total,
                1.25,
            )
            .unwrap()
            .clone();
        let held = load.entry(member).or_default();
        *held += 1;
        let mean_after = (total + 1) as f64 / 10.0;
        assert!(*held as f64 <= (1.25 * mean_after).ceil(), "step {total}");
    }
    let peak = *load.values().max().unwrap() as f64;
    assert!(peak <= 1.25 * 10_000.0, "peak {peak}");
}

/// Bounded loads leave a key on its usual member while that member has room.
#[test]
fn bounded_load_agrees_with_get_when_idle() {
    let ring = Ring::new(nodes(10), DEFAULT_VNODES);
    for key in keys(1_000) {
        let bounded = ring.get_bounded(key.as_bytes(), |_| 0, 0, 1.25);
        assert_eq!(bounded, ring.get(key.as_bytes()));
    }
}

/// An empty ring (or one whose members all have weight 0) answers `None`.
#[test]
fn empty_ring_returns_none() {
    let empty: Ring<String> = Ring::new([], DEFAULT_VNODES);
    assert!(empty.is_empty());
    assert_eq!(empty.get(b"k"), None);
    assert_eq!(empty.get_bounded(b"k", |_| 0, 0, 1.25), None);
    assert!(empty.shares().is_empty());
    let zero = Ring::new([("a".to_string(), 0)], DEFAULT_VNODES);
    assert_eq!(zero.get(b"k"), None);
    let no_vnodes = Ring::new(nodes(3), 0);
    assert_eq!(no_vnodes.get(b"k"), None);
}

/// Shares sum to one, follow weights, and a lone member owns everything.
#[test]
fn shares_follow_weights() {
    let ring = Ring::new([("a".to_string(), 1), ("b".to_string(), 3)], DEFAULT_VNODES);
    let shares = ring.shares();
    let sum: f64 = shares.iter().map(|(_, s)| s).sum();
    assert!((sum - 1.0).abs() < 1e-9);
    assert!((0.15..0.35).contains(&shares[0].1), "{shares:?}");
    let lone = Ring::new([("a".to_string(), 1)], 1);
    assert_eq!(lone.shares(), [(&"a".to_string(), 1.0)]);
}
