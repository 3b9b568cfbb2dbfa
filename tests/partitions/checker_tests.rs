//! The checker against histories whose answer is known.

use super::*;

/// An operation on key `k` by process `p` from `t0` to `t1` (ms).
fn op(p: usize, kind: Kind, value: Option<&str>, t0: u64, t1: u64, outcome: Outcome) -> Op {
    Op {
        process: p,
        via: "test".into(),
        key: "k".into(),
        kind,
        value: value.map(str::to_owned),
        invoke: t0 * 1_000_000,
        complete: t1 * 1_000_000,
        outcome,
    }
}

fn read(p: usize, t0: u64, t1: u64, v: Option<&str>) -> Op {
    op(
        p,
        Kind::Read,
        None,
        t0,
        t1,
        Outcome::Read(v.map(str::to_owned)),
    )
}

fn write(p: usize, kind: Kind, v: &str, t0: u64, t1: u64) -> Op {
    op(p, kind, Some(v), t0, t1, Outcome::Ok)
}

const BUDGET: usize = 1_000_000;

#[test]
fn a_linearizable_history_passes() {
    let h = vec![
        read(0, 0, 1, None),
        write(0, Kind::Insert, "a", 2, 5),
        // Concurrent with the insert: may see either.
        read(1, 3, 4, None),
        read(1, 4, 6, Some("a")),
        write(0, Kind::Update, "b", 7, 10),
        read(1, 8, 9, Some("b")),
        read(2, 8, 11, Some("b")),
        op(2, Kind::Insert, Some("x"), 12, 13, Outcome::Conflict),
        op(0, Kind::Delete, None, 14, 15, Outcome::Ok),
        op(1, Kind::Update, Some("y"), 16, 17, Outcome::NotFound),
        op(2, Kind::Delete, None, 16, 18, Outcome::NotFound),
        read(0, 19, 20, None),
        // A definite failure applied nothing.
        op(
            1,
            Kind::Insert,
            Some("z"),
            21,
            22,
            Outcome::Failed("unavailable".into()),
        ),
        read(0, 23, 24, None),
    ];
    assert!(check(&h, BUDGET).is_empty(), "{:?}", check(&h, BUDGET));
}

#[test]
fn a_planted_stale_read_is_rejected() {
    // The case: the update to "new" is acknowledged, then another node answers
    // with the old name.
    let h = vec![
        write(0, Kind::Insert, "old", 0, 1),
        read(1, 2, 3, Some("old")),
        write(0, Kind::Update, "new", 4, 5),
        read(1, 6, 7, Some("old")),
    ];
    let found = check(&h, BUDGET);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].detail.contains("not linearizable"), "{found:?}");
    assert!(
        found[0].detail.contains("\"old\""),
        "names the stale read: {found:?}"
    );
}

#[test]
fn new_then_old_reads_are_rejected() {
    // The update is still in flight, so either read alone is fine; but once a read saw
    // the new name, a later read may not see the old one.
    let h = vec![
        write(0, Kind::Insert, "old", 0, 1),
        write(0, Kind::Update, "new", 2, 20),
        read(1, 3, 4, Some("new")),
        read(2, 5, 6, Some("old")),
    ];
    assert_eq!(check(&h, BUDGET).len(), 1);
}

#[test]
fn a_read_after_an_acknowledged_delete_must_be_absent() {
    let h = vec![
        write(0, Kind::Insert, "a", 0, 1),
        op(0, Kind::Delete, None, 2, 3, Outcome::Ok),
        read(1, 4, 5, Some("a")),
    ];
    assert_eq!(check(&h, BUDGET).len(), 1);
}

#[test]
fn an_ambiguous_write_that_is_later_observed_passes() {
    let amb = |p, kind, v: &str, t0, t1| {
        op(
            p,
            kind,
            Some(v),
            t0,
            t1,
            Outcome::Ambiguous("timeout".into()),
        )
    };
    let h = vec![
        write(0, Kind::Insert, "a", 0, 1),
        amb(0, Kind::Update, "b", 2, 3),
        // Long after the client gave up, the write shows.
        read(1, 10, 11, Some("a")),
        read(1, 12, 13, Some("b")),
        read(2, 14, 15, Some("b")),
    ];
    assert!(check(&h, BUDGET).is_empty(), "{:?}", check(&h, BUDGET));
    // …and one that never shows is fine too.
    let h = vec![
        write(0, Kind::Insert, "a", 0, 1),
        op(
            0,
            Kind::Delete,
            None,
            2,
            3,
            Outcome::Ambiguous("outcome_unknown".into()),
        ),
        read(1, 4, 5, Some("a")),
    ];
    assert!(check(&h, BUDGET).is_empty(), "{:?}", check(&h, BUDGET));
    // But it cannot take effect before it was invoked.
    let h = vec![
        write(0, Kind::Insert, "a", 0, 1),
        read(1, 2, 3, Some("b")),
        amb(0, Kind::Update, "b", 4, 5),
    ];
    assert_eq!(check(&h, BUDGET).len(), 1);
}

#[test]
fn a_read_of_a_name_never_written_is_rejected() {
    let h = vec![read(0, 0, 1, Some("ghost"))];
    let found = check(&h, BUDGET);
    assert!(found[0].detail.contains("never written"), "{found:?}");
}

#[test]
fn keys_are_checked_independently_and_long_histories_stay_cheap() {
    // 20,000 operations over 4 keys from 8 overlapping processes, each a correct run.
    let mut h = Vec::new();
    let mut t = 0;
    for round in 0..2_500u64 {
        for k in 0..4 {
            let v = format!("v{round}-{k}");
            let mut w = write(
                k,
                if round == 0 {
                    Kind::Insert
                } else {
                    Kind::Update
                },
                &v,
                t,
                t + 3,
            );
            w.key = format!("k{k}");
            let mut r = read(k + 4, t + 1, t + 4, Some(&v));
            r.key = format!("k{k}");
            h.push(w);
            h.push(r);
        }
        t += 5;
    }
    let t0 = std::time::Instant::now();
    assert!(check(&h, BUDGET).is_empty());
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
}
