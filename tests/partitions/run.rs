//! A run: the cluster, its workload, the end-of-run reads and the verdict.

use super::checker::{check, Anomaly, Kind, Op, Outcome};
use super::faults::Injected;
use super::topology::Cluster;
use super::workload::{tally, Route, Workload};
use serde_json::json;
use std::time::Duration;

/// Configurations explored per key before the checker gives up on it.
const BUDGET: usize = 2_000_000;

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations the clients ran.
    pub ops: usize,
    /// Answered (acknowledged writes, reads, `not_found`, `conflict`).
    pub ok: usize,
    /// Definite failures.
    pub failed: usize,
    /// Ambiguous outcomes.
    pub ambiguous: usize,
    /// Operations given to the checker (the run's and the end-of-run reads).
    pub checked: usize,
    /// Keys whose history (with the nodes' final reads) is not linearizable.
    pub anomalies: Vec<Anomaly>,
    /// Keys whose MariaDB row contradicts the history: an acknowledged write lost.
    pub lost: Vec<Anomaly>,
}

/// Client routes: `proxy` through the proxy (keyed), `direct` per node straight to it.
pub fn routes(c: &Cluster, proxy: usize, direct: usize) -> Vec<Route> {
    let mut r: Vec<Route> = (0..proxy)
        .map(|_| Route {
            via: "proxy".into(),
            addr: c.proxy(),
            keyed: true,
        })
        .collect();
    for i in 0..c.nodes.len() {
        for _ in 0..direct {
            r.push(Route {
                via: c.nodes[i].name.clone(),
                addr: c.node_addr(i),
                keyed: false,
            });
        }
    }
    r
}

/// A read recorded at `at` (ns) by pseudo-process `process`.
fn final_read(process: usize, via: &str, key: &str, at: u64, value: Option<String>) -> Op {
    Op {
        process,
        via: via.to_owned(),
        key: key.to_owned(),
        kind: Kind::Read,
        value: None,
        invoke: at,
        complete: at + 1,
        outcome: Outcome::Read(value),
    }
}

/// Stops the workload, lets in-flight writes settle, reads every key on every node and
/// in MariaDB, checks the history and prints a summary named `name`.
pub fn finish(
    name: &str,
    c: &Cluster,
    w: Workload,
    token: &str,
    keys: &[String],
    faults: &[Injected],
) -> Report {
    let t0 = w.t0;
    let mut history = w.finish();
    // A write the client gave up on finishes or fails within the store's timeout.
    std::thread::sleep(Duration::from_secs(4));
    let (ok, failed, ambiguous) = tally(&history);
    let ops = history.len();
    for (i, node) in c.nodes.iter().enumerate() {
        for key in keys {
            let at = t0.elapsed().as_nanos() as u64;
            let body = json!({ "id_card": key });
            match c.call(&c.node_addr(i), "blacklist.query", body, Some(token)) {
                Ok(b) => {
                    let v =
                        (b["listed"] == true).then(|| b["name"].as_str().unwrap_or("").to_owned());
                    history.push(final_read(100_000 + i, &node.name, key, at, v));
                }
                Err(e) => eprintln!("{name}: final read of {key} on {} failed: {e}", node.name),
            }
        }
    }
    let rows = c.sql(&format!(
        "SELECT id_card, name FROM blacklist WHERE id_card LIKE '{}%'",
        keys[0].rsplit_once('-').map(|(p, _)| p).unwrap_or("")
    ));
    let in_db: std::collections::HashMap<&str, &str> =
        rows.lines().filter_map(|l| l.split_once('\t')).collect();
    let at = t0.elapsed().as_nanos() as u64 + 1_000;
    let db_reads: Vec<Op> = keys
        .iter()
        .map(|k| {
            final_read(
                200_000,
                "mariadb",
                k,
                at,
                in_db.get(k.as_str()).map(|v| v.to_string()),
            )
        })
        .collect();
    if let Ok(dir) = std::env::var("DSF_PARTITIONS_HISTORY") {
        let text: Vec<String> = history.iter().map(super::checker::describe).collect();
        let file = std::path::Path::new(&dir).join(format!("{name}.history"));
        std::fs::write(&file, text.join("\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
    let check_t0 = std::time::Instant::now();
    let anomalies = check(&history, BUDGET);
    let checked = history.len() + db_reads.len();
    history.extend(db_reads);
    let lost = check(&history, BUDGET)
        .into_iter()
        .filter(|a| !anomalies.iter().any(|b| b.key == a.key))
        .collect();
    eprintln!(
        "{name}: history checked in {:.1} s",
        check_t0.elapsed().as_secs_f64()
    );
    let r = Report {
        ops,
        ok,
        failed,
        ambiguous,
        checked,
        anomalies,
        lost,
    };
    print_summary(name, &r, faults, t0.elapsed());
    r
}

fn print_summary(name: &str, r: &Report, faults: &[Injected], took: Duration) {
    let mut out = format!(
        "== partitions/{name}: {} ops in {:.0} s ({:.0}/s): {} ok, {} failed, {} ambiguous; \
         {} checked; {} anomalies; {} lost acknowledged writes\n",
        r.ops,
        took.as_secs_f64(),
        r.ops as f64 / took.as_secs_f64().max(1e-9),
        r.ok,
        r.failed,
        r.ambiguous,
        r.checked,
        r.anomalies.len(),
        r.lost.len()
    );
    out.push_str(&format!("   faults ({}):", faults.len()));
    for f in faults {
        out.push_str(&format!(
            " [{} {:.1}–{:.1} s]",
            f.fault.name(),
            f.from,
            f.to
        ));
    }
    out.push('\n');
    for a in &r.anomalies {
        out.push_str(&format!("   ANOMALY key {}: {}\n", a.key, a.detail));
    }
    for a in &r.lost {
        out.push_str(&format!(
            "   LOST key {} (MariaDB disagrees): {}\n",
            a.key, a.detail
        ));
    }
    eprint!("{out}");
    println!("{out}");
}

/// Panics unless the report shows no anomaly and no lost write.
pub fn assert_clean(name: &str, r: &Report) {
    assert!(
        r.anomalies.is_empty() && r.lost.is_empty(),
        "{name}: {} keys not linearizable, {} lost acknowledged writes: {:?} {:?}",
        r.anomalies.len(),
        r.lost.len(),
        r.anomalies,
        r.lost
    );
}
