//! The balancer's status page in a real browser: headless Chromium renders it against a
//! live cluster, every node appears, and a killed node's row changes within the lease TTL.

mod common;

use common::cluster::{Balancer, Node, Proc, LEASE_TTL};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Debian's Chromium, which `scripts/test` installs.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium with the flags this machine needs and `extra`; returns stdout.
fn chromium(profile: &Path, extra: &[&str]) -> String {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page's DOM after its scripts ran (it fetches /status.json and renders rows).
fn rendered_dom(profile: &Path, url: &str) -> String {
    chromium(profile, &["--virtual-time-budget=4000", "--dump-dom", url])
}

/// `(node, state)` for each row of the node table.
fn rows(dom: &str) -> Vec<(String, String)> {
    // Only the rendered table body, not the script that renders it.
    let body = dom
        .split("<tbody id=\"nodes\">")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .unwrap_or_default();
    body.split("<tr data-node=\"")
        .skip(1)
        .map(|rest| {
            let node = rest.split('"').next().unwrap_or_default().to_owned();
            let state = rest
                .split("data-state=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_default()
                .to_owned();
            (node, state)
        })
        .collect()
}

fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn admin_url(p: &Proc) -> String {
    format!("http://{}/", p.addr("admin listening on"))
}

/// `dsf up --nodes 3`: the page lists the three nodes, healthy, with their ring shares.
#[test]
fn status_page_lists_dsf_up_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Proc::spawn(
        "up",
        &["up", "--nodes", "3", "--data", data.to_str().unwrap()],
        &[
            ("DSF__BALANCER__REGISTRATION", "127.0.0.1:0"),
            ("DSF__BALANCER__DIRECTORY", "127.0.0.1:0"),
            ("DSF__BALANCER__PROXY", "127.0.0.1:0"),
            ("DSF__NODE__LISTEN", "127.0.0.1:0"),
            ("DSF__ADMIN__LISTEN", "127.0.0.1:0"),
        ],
    );
    up.wait_line(|l| l.contains("ready"), Duration::from_secs(30));
    let url = admin_url(&up);
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let r = rows(&rendered_dom(dir.path(), &url));
        if r.len() == 3 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found.len(), 3, "rows: {found:?}");
    assert!(found.iter().all(|(_, s)| s == "healthy"), "{found:?}");
    let shot = output_dir().join("status-page-up.png");
    chromium(
        dir.path(),
        &[
            "--virtual-time-budget=4000",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
}

/// A balancer and three node processes: killing one changes its row within the lease TTL.
#[test]
fn killed_node_changes_its_row_within_the_lease_ttl() {
    let profile = tempfile::tempdir().unwrap();
    let lb = Balancer::start(&["--admin", "127.0.0.1:0"], &[]);
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &lb.registration, &[], &[]))
        .collect();
    lb.wait_healthy(&["n1", "n2", "n3"], Duration::from_secs(10));
    let url = admin_url(&lb.proc);
    let before = rows(&rendered_dom(profile.path(), &url));
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );

    nodes[1].proc.signal("KILL");
    let killed = Instant::now();
    let changed = loop {
        let now = rows(&rendered_dom(profile.path(), &url));
        let row = now.iter().find(|(n, _)| n == "n2");
        if row.is_none_or(|(_, s)| s != "healthy") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < LEASE_TTL * 4,
            "n2's row still healthy after {:?}",
            killed.elapsed()
        );
    };
    // The page renders what the balancer knows; the balancer knew within the TTL
    // (a dead node's connection closes at once), the browser adds its render time.
    assert!(changed < LEASE_TTL + Duration::from_secs(5), "{changed:?}");
    let shot = output_dir().join("status-page-after-kill.png");
    chromium(
        profile.path(),
        &[
            "--virtual-time-budget=4000",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(shot.exists());
}
