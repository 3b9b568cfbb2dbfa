//! Transport security as users meet it (PROTOCOL §8): real `dsf` processes on
//! 127.0.0.1 with certificates made by `openssl` (a standard PKI) and by `dsf cert`.
//!
//! Tests run one at a time: each starts a balancer and nodes.

mod common;

use common::cluster::*;
use common::pki::{Issued, Pki};
use common::wire;
use dsf::client::{CallOptions, Connection};
use dsf::config::TlsConfig;
use dsf::protocol::Response;
use dsf::tls::{ClientStream, Connector, Tls};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// A client that trusts `ca` (and presents `cert`, if given).
fn connector(ca: &Path, cert: Option<&Issued>) -> Connector {
    let cfg = TlsConfig {
        ca: ca.to_owned(),
        cert: cert.map(|c| c.cert.clone()).unwrap_or_default(),
        key: cert.map(|c| c.key.clone()).unwrap_or_default(),
        ..Default::default()
    };
    Tls::from_config(&cfg)
        .unwrap()
        .unwrap()
        .connector()
        .unwrap()
}

/// One request over a fresh TLS connection.
fn tls_call(addr: &str, tls: &Connector, op: &str, body: Value) -> Result<Response, String> {
    smol::block_on(async {
        let conn = Connection::connect_with(addr, TIMEOUT, Some(tls))
            .await
            .map_err(|e| e.to_string())?;
        conn.call_timeout(op, body, &CallOptions::default(), TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    })
}

/// A balancer serving TLS on all three ports, requiring client certificates from
/// `pki` on registration (the default of `tls.client_ca`).
fn balancer(pki: &Pki, cert: &Issued) -> Balancer {
    Balancer::start(
        &[
            "--tls-cert",
            cert.cert(),
            "--tls-key",
            cert.key(),
            "--tls-ca",
            pki.ca(),
            "--tls-client-ca",
            pki.ca(),
            "--threads",
            "1",
        ],
        &[],
    )
}

/// A node serving TLS with `cert`, registering over mutual TLS, trusting `ca`.
fn node(id: &str, lb: &Balancer, ca: &str, cert: &Issued, data: &str) -> Node {
    Node::start(
        id,
        &lb.registration,
        &[
            "--tls-cert",
            cert.cert(),
            "--tls-key",
            cert.key(),
            "--tls-ca",
            ca,
            "--data",
            data,
        ],
        &[],
    )
}

/// Healthy members, asked over TLS.
fn healthy(lb: &Balancer, tls: &Connector) -> Vec<String> {
    let resp = tls_call(&lb.directory, tls, "lb.nodes", json!({})).expect("lb.nodes");
    let body = resp.result.expect("lb.nodes ok");
    let mut ids: Vec<String> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "healthy")
        .map(|n| n["node"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn wait_healthy(lb: &Balancer, tls: &Connector, want: &[&str]) {
    let t0 = Instant::now();
    while healthy(lb, tls) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "healthy {:?}, wanted {want:?}; balancer log:\n{}",
            healthy(lb, tls),
            lb.proc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `log` of `proc` contains `needle`.
fn wait_log(proc: &Proc, needle: &str) -> String {
    let t0 = Instant::now();
    loop {
        let logs = proc.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no `{needle}` in log:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ok(resp: Result<Response, dsf::client::ClientError>) -> Value {
    let resp = resp.expect("a response");
    match resp.result {
        Ok(body) => body,
        Err(e) => panic!("{}: {}", e.code, e.message),
    }
}

/// Through the TLS proxy: register, log in, insert and query, with both nodes
/// registered over mutual TLS; `dsf client --tls-ca` works on the proxy and the
/// directory.
#[test]
fn business_through_the_tls_proxy_with_nodes_on_mutual_tls() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let lb = balancer(&pki, &pki.issue("balancer", "balancer"));
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let _n1 = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-1", "node-1"),
        data,
    );
    let _n2 = node(
        "node-2",
        &lb,
        pki.ca(),
        &pki.issue("node-2", "node-2"),
        data,
    );
    let tls = connector(&pki.ca, None);
    wait_healthy(&lb, &tls, &["node-1", "node-2"]);
    smol::block_on(async {
        let conn = Connection::connect_with(&lb.proxy, TIMEOUT, Some(&tls))
            .await
            .unwrap();
        let none = CallOptions::default();
        let user = json!({"name": "tls_user", "password": "correct horse"});
        ok(conn.call("user.register", user.clone(), &none).await);
        let token = ok(conn.call("user.login", user, &none).await)["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let auth = CallOptions {
            token: Some(token),
            key: None,
        };
        let entry = json!({"id_card": "TLS-0001", "name": "Mallory"});
        ok(conn.call("blacklist.insert", entry, &auth).await);
        for key in ["a", "b", "c", "d"] {
            let opts = CallOptions {
                key: Some(key.into()),
                ..auth.clone()
            };
            let got = ok(conn
                .call("blacklist.query", json!({"id_card": "TLS-0001"}), &opts)
                .await);
            assert_eq!(got["listed"], true, "{got}");
        }
    });
    for target in ["--proxy", "--balancer"] {
        let addr = if target == "--proxy" {
            &lb.proxy
        } else {
            &lb.directory
        };
        let (code, v) = client(&[target, addr, "--tls-ca", pki.ca(), "call", "sys.ping"]);
        assert_eq!(code, 0, "{target}: {v}");
    }
}

/// A plaintext client on any TLS port gets no frame and is closed; the failure is
/// logged with its address.
#[test]
fn plaintext_client_on_a_tls_port_gets_no_frame() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let lb = balancer(&pki, &pki.issue("balancer", "balancer"));
    let data = tempfile::tempdir().unwrap();
    let n1 = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-1", "node-1"),
        data.path().to_str().unwrap(),
    );
    for addr in [&lb.proxy, &lb.directory, &lb.registration, &n1.addr] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(&wire::request(1, "sys.ping", json!({})))
            .unwrap();
        let mut buf = [0u8; 64];
        let got = s.read(&mut buf);
        assert!(
            matches!(got, Ok(0))
                || got
                    .as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut),
            "{addr}: expected a close without a frame, got {got:?} {:?}",
            &buf[..*got.as_ref().unwrap_or(&0)]
        );
        let proc = if addr == &n1.addr { &n1.proc } else { &lb.proc };
        let peer = s.local_addr().unwrap().to_string();
        let log = wait_log(proc, &format!("peer={peer}"));
        assert!(
            log.lines()
                .any(|l| l.contains("not a TLS handshake") && l.contains(&peer)),
            "the peer's address is logged:\n{log}"
        );
    }
    let (code, _) = client(&["--proxy", &lb.proxy, "call", "sys.ping"]);
    assert_eq!(code, 2, "dsf client without --tls-ca fails");
}

/// A client that trusts another CA fails the handshake (and says why).
#[test]
fn client_trusting_another_ca_fails() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let other = Pki::new("other-ca");
    let lb = balancer(&pki, &pki.issue("balancer", "balancer"));
    let err = tls_call(
        &lb.proxy,
        &connector(&other.ca, None),
        "sys.ping",
        json!({}),
    )
    .expect_err("handshake must fail");
    assert!(err.contains("certificate"), "{err}");
    let mut cmd = std::process::Command::new(dsf());
    let out = cmd
        .args([
            "client",
            "--proxy",
            &lb.proxy,
            "--tls-ca",
            other.ca(),
            "call",
            "sys.ping",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    // The right CA but the wrong name: --tls-server-name must match the certificate.
    let (code, _) = client(&[
        "--proxy",
        &lb.proxy,
        "--tls-ca",
        pki.ca(),
        "--tls-server-name",
        "not-the-balancer",
        "call",
        "sys.ping",
    ]);
    assert_eq!(code, 2);
    let (code, v) = client(&[
        "--proxy",
        &lb.proxy,
        "--tls-ca",
        pki.ca(),
        "--tls-server-name",
        "balancer",
        "call",
        "sys.ping",
    ]);
    // The handshake succeeded: the answer is the balancer's (no node has joined).
    assert_eq!(
        (code, &v["error"]["code"]),
        (1, &json!("no_backend")),
        "{v}"
    );
}

/// Nodes that cannot prove who they are do not join: a certificate from another CA,
/// a certificate naming `node-2` used to register as `node-1`, an expired one.
#[test]
fn nodes_without_a_fitting_certificate_are_refused() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let other = Pki::new("other-ca");
    let lb = balancer(&pki, &pki.issue("balancer", "balancer"));
    let tls = connector(&pki.ca, None);
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();

    let foreign = node(
        "node-1",
        &lb,
        pki.ca(),
        &other.issue("node-1", "node-1"),
        data,
    );
    wait_log(&lb.proc, "TLS handshake failed");
    wait_log(&foreign.proc, "not registered");
    drop(foreign);

    let impostor = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-2", "node-2"),
        data,
    );
    let log = wait_log(&lb.proc, "registration refused");
    assert!(log.contains("not node `node-1`"), "{log}");
    wait_log(&impostor.proc, "not registered");
    drop(impostor);

    let expired = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue_expired("old-node-1", "node-1"),
        data,
    );
    let log = wait_log(&lb.proc, "certificate expired");
    assert!(log.contains("TLS handshake failed"), "{log}");
    wait_log(&expired.proc, "not registered");
    assert!(healthy(&lb, &tls).is_empty(), "nobody joined");
    drop(expired);

    // The real node-1 joins.
    let _n1 = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-1", "node-1"),
        data,
    );
    wait_healthy(&lb, &tls, &["node-1"]);
}

/// Serial of the certificate `addr` presents on a new handshake.
fn served_serial(addr: &str, tls: &Connector) -> String {
    smol::block_on(ClientStream::connect(addr, Some(tls), TIMEOUT))
        .unwrap()
        .server_identity()
        .unwrap()
        .serial
}

/// SIGHUP re-reads the files: new handshakes show the new serial, an established
/// connection goes on, and a broken file is refused with the old certificate kept.
#[test]
fn sighup_rotates_the_certificate() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let first = pki.issue("balancer", "balancer");
    let lb = balancer(&pki, &first);
    let data = tempfile::tempdir().unwrap();
    let _n1 = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-1", "node-1"),
        data.path().to_str().unwrap(),
    );
    let tls = connector(&pki.ca, None);
    wait_healthy(&lb, &tls, &["node-1"]);
    let old_serial = first.serial();
    assert_eq!(served_serial(&lb.proxy, &tls), old_serial);
    let established =
        smol::block_on(Connection::connect_with(&lb.proxy, TIMEOUT, Some(&tls))).unwrap();

    // Issued over the same file names, as an operator's renewal does.
    let second = pki.issue("balancer", "balancer");
    let new_serial = second.serial();
    assert_ne!(new_serial, old_serial);
    assert_eq!(served_serial(&lb.proxy, &tls), old_serial, "no reload yet");
    lb.proc.signal("HUP");
    wait_log(&lb.proc, "certificates reloaded");
    for addr in [&lb.proxy, &lb.directory, &lb.registration] {
        assert_eq!(served_serial(addr, &tls), new_serial, "{addr}");
    }
    let still = smol::block_on(established.call_timeout(
        "sys.ping",
        json!({}),
        &CallOptions::default(),
        TIMEOUT,
    ));
    assert!(
        still.unwrap().result.is_ok(),
        "the established connection goes on"
    );

    std::fs::write(&second.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    lb.proc.signal("HUP");
    let log = wait_log(&lb.proc, "certificates not reloaded");
    assert!(
        log.contains("balancer.pem"),
        "the broken file is named:\n{log}"
    );
    assert_eq!(
        served_serial(&lb.proxy, &tls),
        new_serial,
        "the good one stays"
    );
    assert!(tls_call(&lb.proxy, &tls, "sys.ping", json!({}))
        .unwrap()
        .result
        .is_ok());
}

/// With `admin.tls`, the admin listener speaks HTTPS with the same certificate and
/// refuses plain HTTP; the node's protocol port speaks TLS on its own (no balancer).
#[test]
fn admin_over_https_and_a_standalone_tls_node() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let cert = pki.issue("node-1", "node-1");
    let proc = Proc::spawn(
        "node",
        &[
            "node",
            "--id",
            "node-1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--tls-cert",
            cert.cert(),
            "--tls-key",
            cert.key(),
        ],
        &[("DSF__ADMIN__TLS", "true")],
    );
    let addr = proc.addr("node node-1 listening on");
    let admin = proc.addr("admin listening on");
    let tls = connector(&pki.ca, None);
    let pong = tls_call(&addr, &tls, "sys.ping", json!({})).unwrap();
    assert_eq!(pong.result.unwrap()["node"], "node-1");
    let page = smol::block_on(async {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let mut s = ClientStream::connect(&admin, Some(&tls), TIMEOUT)
            .await
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let mut plain = std::net::TcpStream::connect(&admin).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        !matches!(plain.read(&mut buf), Ok(n) if n > 0),
        "plain HTTP gets no answer"
    );
}

/// Runs `dsf cert ARGS…` and panics unless it succeeds.
fn dsf_cert(args: &[&str]) {
    let out = std::process::Command::new(dsf())
        .arg("cert")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dsf cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates from `dsf cert ca` / `dsf cert issue` run a cluster on mutual TLS, and
/// a certificate issued for node-2 still cannot register as node-1.
#[test]
fn dsf_cert_makes_a_working_pki() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    dsf_cert(&["ca", "--out", d]);
    for name in ["balancer", "node-1", "node-2"] {
        dsf_cert(&[
            "issue",
            "--ca",
            d,
            "--name",
            name,
            "--san",
            "127.0.0.1",
            "--out",
            d,
        ]);
    }
    let issued = |name: &str| Issued {
        cert: dir.path().join(format!("{name}.pem")),
        key: dir.path().join(format!("{name}.key")),
    };
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "keys are readable by their owner only");
    let ca = dir.path().join("ca.pem");
    let ca_str = ca.to_str().unwrap();
    let lb = Balancer::start(
        &[
            "--tls-cert",
            issued("balancer").cert(),
            "--tls-key",
            issued("balancer").key(),
            "--tls-ca",
            ca_str,
            "--tls-client-ca",
            ca_str,
        ],
        &[],
    );
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let _n1 = node("node-1", &lb, ca_str, &issued("node-1"), data);
    let impostor = node("node-9", &lb, ca_str, &issued("node-2"), data);
    let tls = connector(&ca, None);
    wait_healthy(&lb, &tls, &["node-1"]);
    wait_log(&impostor.proc, "not registered");
    let (code, v) = client(&["--proxy", &lb.proxy, "--tls-ca", ca_str, "call", "sys.ping"]);
    assert_eq!((code, &v["body"]["node"]), (0, &json!("node-1")), "{v}");
}

/// `dsf up --tls` runs the local cluster on TLS and prints a client command that works.
#[test]
fn dsf_up_tls_prints_a_working_client_command() {
    let _s = serial();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let data = dir.path().join("data").to_str().unwrap().to_owned();
    let up = Proc::spawn_in(
        dir,
        "up",
        &[
            "up", "--tls", "--nodes", "2", "--data", &data, "--admin", "",
        ],
        &[
            ("DSF__BALANCER__REGISTRATION", "127.0.0.1:0"),
            ("DSF__BALANCER__DIRECTORY", "127.0.0.1:0"),
            ("DSF__BALANCER__PROXY", "127.0.0.1:0"),
            ("DSF__NODE__LISTEN", "127.0.0.1:0"),
        ],
    );
    let ready = up.wait_line(|l| l.contains("ready"), Duration::from_secs(30));
    let command = ready
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {ready:?}"));
    assert!(command.contains("--tls-ca"), "{command}");
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&args[..2], ["dsf", "client"]);
    let (code, v) = client(&args[2..]);
    assert_eq!(code, 0, "{command}: {v}");
    let (code, _) = client(&[
        "--proxy",
        &up.addr("balancer proxy listening on"),
        "call",
        "sys.ping",
    ]);
    assert_eq!(code, 2, "plaintext is refused");
}

/// With `store.tls_ca` set, a node refuses a MySQL server that offers no TLS: it
/// does not start rather than send the password and data in clear.
#[test]
fn a_node_refuses_a_plaintext_mysql_when_tls_is_configured() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let url = common::stores::MariaDb::shared().fresh_database();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let pw = dir.path().join("pw");
    std::fs::write(&pw, common::stores::DB_PASSWORD).unwrap();
    let mut proc = Proc::spawn_in(
        dir.clone(),
        "node",
        &["node", "--listen", "127.0.0.1:0", "--mysql", &url],
        &[
            ("DSF__STORE__PASSWORD_FILE", pw.to_str().unwrap()),
            ("DSF__STORE__TLS_CA", pki.ca()),
            ("DSF__STORE__STARTUP_TIMEOUT", "2s"),
        ],
    );
    let code = proc.wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    let log = proc.logs();
    assert!(
        log.to_lowercase().contains("ssl") || log.to_lowercase().contains("tls"),
        "the reason is named:\n{log}"
    );
}

/// Certificate rotation under `dsf bench` load through the TLS proxy: no request
/// fails, established connections go on, and new handshakes show the new serial.
#[test]
fn rotation_under_load_through_the_proxy_fails_nothing() {
    let _s = serial();
    let pki = Pki::new("dsf-test-ca");
    let first = pki.issue("balancer", "balancer");
    let lb = balancer(&pki, &first);
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let _n1 = node(
        "node-1",
        &lb,
        pki.ca(),
        &pki.issue("node-1", "node-1"),
        data,
    );
    let _n2 = node(
        "node-2",
        &lb,
        pki.ca(),
        &pki.issue("node-2", "node-2"),
        data,
    );
    let tls = connector(&pki.ca, None);
    wait_healthy(&lb, &tls, &["node-1", "node-2"]);
    let old_serial = first.serial();
    assert_eq!(served_serial(&lb.proxy, &tls), old_serial);
    let mut cmd = bench(&lb.proxy, "sys.echo", 16, 4, "3s");
    cmd.args(["--tls-ca", pki.ca()]);
    let load = bench_spawn(cmd);
    std::thread::sleep(Duration::from_millis(1200));
    let second = pki.issue("balancer", "balancer");
    lb.proc.signal("HUP");
    wait_log(&lb.proc, "certificates reloaded");
    let new_serial = second.serial();
    assert_ne!(new_serial, old_serial);
    assert_eq!(served_serial(&lb.proxy, &tls), new_serial);
    let report = bench_report(load);
    assert_eq!(report["failed_conns"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["rps"].as_f64().unwrap() > 0.0, "{report}");
}
