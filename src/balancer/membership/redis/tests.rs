use super::*;

fn record(node: &str, heartbeat_unix_ms: u64) -> NodeRecord {
    NodeRecord {
        heartbeat_unix_ms,
        ..NodeRecord::for_test(node, &format!("{node}:7001"))
    }
}

fn put(node: &str, ms: u64, announce: bool) -> Write {
    Write::Put {
        record: record(node, ms),
        announce,
    }
}

#[test]
fn an_outage_leaves_one_write_per_node_with_its_latest_record() {
    let mut p = Pending::default();
    p.push(put("a", 1, true));
    p.push(put("b", 1, true));
    // 45 s of heartbeats while Redis cannot be reached.
    for ms in 2..=45 {
        p.push(put("a", ms, false));
        p.push(put("b", ms, false));
    }
    assert_eq!(p.len(), 2);
    // The registrations were never announced: the announcement is still owed.
    assert_eq!(p.take(), vec![put("a", 45, true), put("b", 45, true)]);
    assert_eq!(p.len(), 0);
    assert_eq!(p.take(), vec![]);
}

#[test]
fn a_withdrawal_replaces_a_renewal_and_a_return_replaces_a_withdrawal() {
    let mut p = Pending::default();
    p.push(put("a", 1, false));
    p.push(Write::Remove("a".into()));
    assert_eq!(p.take(), vec![Write::Remove("a".into())]);
    p.push(Write::Remove("a".into()));
    p.push(put("a", 2, false));
    assert_eq!(p.take(), vec![put("a", 2, true)]);
}

#[test]
fn failed_writes_go_back_first_under_newer_ones() {
    let mut p = Pending::default();
    p.push(put("a", 1, true));
    p.push(put("b", 1, false));
    let failed = p.take();
    // While the pipeline was failing: c joined, b renewed.
    p.push(put("c", 2, true));
    p.push(put("b", 2, false));
    p.restore(failed);
    assert_eq!(
        p.take(),
        vec![put("a", 1, true), put("b", 2, false), put("c", 2, true)]
    );
    // A node withdrawn meanwhile stays withdrawn.
    p.push(put("a", 3, false));
    let failed = p.take();
    p.push(Write::Remove("a".into()));
    p.restore(failed);
    assert_eq!(p.take(), vec![Write::Remove("a".into())]);
}
