//! Regression tests for bugs found by the fault, soak and fuzz runs, each with the
//! smallest setup that showed it.

mod common;

use common::stores::{Backend, Client, Stores};
use serde_json::json;
use std::sync::Arc;

/// Nodes sharing one embedded data folder (as `dsf up` runs them) report concurrently
/// and every `collector.report` is acknowledged.
///
/// The report's transaction read the blacklist before inserting; begun deferred, it
/// failed at once with SQLITE_BUSY (answered `timeout`) whenever another process had
/// committed since its read, without waiting for `busy_timeout`. The soak run saw a
/// third of the reports fail this way.
#[test]
fn concurrent_reports_from_nodes_sharing_an_embedded_folder_all_succeed() {
    let stores = Stores::new(Backend::Embedded);
    let nodes: Vec<_> = (0..3).map(|_| stores.node()).collect();
    let token = nodes[0].client().login_new("reporter");
    nodes[0]
        .client()
        .call_with(
            "blacklist.insert",
            json!({"id_card": "LISTED", "name": "x"}),
            Some(token.clone()),
        )
        .unwrap();
    let token = Arc::new(token);
    let workers: Vec<_> = nodes
        .iter()
        .flat_map(|n| [n.addr.clone(), n.addr.clone()])
        .enumerate()
        .map(|(w, addr)| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                c.token = Some((*token).clone());
                let mut failed = Vec::new();
                for i in 0..150 {
                    let id = if i % 10 == 0 {
                        "LISTED".to_owned()
                    } else {
                        format!("W{w}-{i}")
                    };
                    let r = c.call("collector.report", json!({"id_card": id, "name": "n"}));
                    match r {
                        Ok(v) => assert_eq!(v["listed"], json!(id == "LISTED"), "{id}"),
                        Err(e) => failed.push(format!("{id}: {e}")),
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 900 reports failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
