//! The registration port (PROTOCOL §5): `lb.register`, `lb.heartbeat`, `lb.drain`, `lb.deregister`.
//!
//! One long-lived connection per node. The connection is the lease's anchor: when it
//! closes, the node's lease ends at once. When a cluster secret is configured, a
//! registration without it is answered `unauthorized` and the connection is closed;
//! lease operations are only accepted on a connection that registered successfully,
//! and only for the nodes it registered.
//!
//! With `registration` in `tls.client_auth` (PROTOCOL §8), the TLS handshake has
//! already verified the node's certificate against `tls.client_ca`; `lb.register`
//! then also requires the `node` id to be the certificate's common name or one of its
//! DNS names, so a node cannot register as another. The secret is still checked.

use super::error::BalancerError;
use super::membership::{Membership, NodeRecord};
use crate::protocol::{Request, Response};
use crate::runtime::{BoxFuture, ConnMeta, Outbound, Registry, Service};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Longest node id, service name or op prefix accepted.
const MAX_NAME: usize = 128;
/// Most op prefixes one node may announce.
const MAX_OPS: usize = 64;
/// Most idempotent operations one node may declare.
const MAX_IDEMPOTENT: usize = 256;

/// `lb.register` body.
#[derive(Debug, Deserialize)]
struct RegisterBody {
    node: String,
    #[serde(default = "default_service")]
    service: String,
    addr: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    ops: Vec<String>,
    #[serde(default)]
    idempotent: Vec<String>,
    #[serde(default)]
    secret: Option<String>,
}

fn default_service() -> String {
    "dsf".into()
}

fn default_weight() -> u32 {
    1
}

/// `lb.heartbeat` body.
#[derive(Debug, Deserialize)]
struct HeartbeatBody {
    node: String,
    #[serde(default)]
    load: Load,
    /// The node's weight now (a reload may have changed it); absent = unchanged.
    #[serde(default)]
    weight: Option<u32>,
}

/// The load a heartbeat carries.
#[derive(Debug, Default, Deserialize)]
struct Load {
    #[serde(default)]
    conns: u64,
    #[serde(default)]
    inflight: u64,
}

/// `lb.drain` / `lb.deregister` body.
#[derive(Debug, Deserialize)]
struct NodeBody {
    node: String,
}

/// The registration service.
pub struct Registration {
    /// Where leases live.
    membership: Arc<Membership>,
    /// The cluster secret, if one is configured.
    secret: Option<Box<[u8]>>,
    /// The listener's connections, to close a refused one after answering.
    registry: Arc<Registry>,
    /// Connections that registered successfully; only they may renew or end leases.
    registered: Mutex<HashSet<u64>>,
    /// Registrations must come over a verified client certificate naming the node.
    require_certificate: bool,
}

impl Registration {
    /// A registration service over `membership`; `registry` is the listener's.
    pub fn new(
        membership: Arc<Membership>,
        secret: Option<String>,
        registry: Arc<Registry>,
    ) -> Registration {
        Registration {
            membership,
            secret: secret.map(|s| s.into_bytes().into_boxed_slice()),
            registry,
            registered: Mutex::default(),
            require_certificate: false,
        }
    }

    /// Requires each registration's `node` id to be named by the connection's verified
    /// client certificate (the listener requires one: `registration` in `tls.client_auth`).
    pub fn require_certificate(mut self) -> Registration {
        self.require_certificate = true;
        self
    }

    fn handle(&self, conn: ConnMeta, req: Request) -> Result<Value, BalancerError> {
        if req.op == "lb.register" {
            return self.register(conn, req.body);
        }
        if !self
            .registered
            .lock()
            .expect("registered lock")
            .contains(&conn.id)
        {
            return Err(BalancerError::NotRegistered);
        }
        let m = &self.membership;
        match req.op.as_str() {
            "lb.heartbeat" => {
                let b: HeartbeatBody = body(req.body)?;
                m.heartbeat(conn.id, &b.node, b.load.conns, b.load.inflight)?;
                if let Some(weight) = b.weight {
                    if !(1..=1000).contains(&weight) {
                        return Err(BalancerError::BadRequest(
                            "`weight` must be 1 to 1000".into(),
                        ));
                    }
                    m.set_weight(conn.id, &b.node, weight)?;
                }
            }
            "lb.drain" => m.drain(conn.id, &body::<NodeBody>(req.body)?.node)?,
            "lb.deregister" => m.deregister(conn.id, &body::<NodeBody>(req.body)?.node)?,
            other => {
                return Err(BalancerError::BadRequest(format!(
                    "`{other}` is not a registration operation"
                )))
            }
        }
        Ok(json!({}))
    }

    fn register(&self, conn: ConnMeta, body_value: Value) -> Result<Value, BalancerError> {
        let b: RegisterBody = body(body_value)?;
        match &self.secret {
            Some(expected) => {
                let given = b.secret.as_deref().unwrap_or("").as_bytes();
                if !secret_matches(expected, given) {
                    return Err(BalancerError::Unauthorized);
                }
            }
            // Without a secret the only allow-list that is safe by default is this
            // host, or a verified certificate: anyone on the network could otherwise
            // join as a fake node.
            None if !conn.peer.ip().is_loopback() && !self.require_certificate => {
                return Err(BalancerError::RemoteWithoutSecret)
            }
            None => {}
        }
        if self.require_certificate {
            match self.registry.identity(conn.id) {
                Some(id) if id.names(&b.node) => {}
                Some(id) => {
                    return Err(BalancerError::CertificateMismatch {
                        node: b.node,
                        names: id.names.join(", "),
                    })
                }
                None => return Err(BalancerError::NoCertificate),
            }
        }
        validate(&b)?;
        let record = NodeRecord {
            node: b.node,
            service: b.service,
            addr: b.addr,
            weight: b.weight,
            ops: b.ops,
            idempotent: b.idempotent,
            draining: false,
            conns: 0,
            inflight: 0,
            heartbeat_unix_ms: 0,
        };
        self.membership.register(conn.id, record)?;
        self.registered
            .lock()
            .expect("registered lock")
            .insert(conn.id);
        let s = self.membership.settings();
        Ok(json!({
            "ttl_ms": s.lease_ttl.as_millis() as u64,
            "heartbeat_ms": s.heartbeat.as_millis() as u64,
        }))
    }
}

impl Service for Registration {
    fn call(&self, conn: ConnMeta, req: Request) -> BoxFuture<'static, Response> {
        let id = req.id;
        let result = self.handle(conn, req).map_err(|e| {
            if matches!(
                e,
                BalancerError::Unauthorized
                    | BalancerError::RemoteWithoutSecret
                    | BalancerError::NotRegistered
                    | BalancerError::NoCertificate
                    | BalancerError::CertificateMismatch { .. }
            ) {
                tracing::warn!(peer = %conn.peer, error = %e, "registration refused; closing");
                // The answer is written before the connection task reads its mailbox.
                self.registry
                    .send(conn.id, Outbound::Close("registration refused"));
            }
            e.to_api()
        });
        Box::pin(std::future::ready(Response {
            id: Some(id),
            result,
        }))
    }

    fn on_close(&self, conn: ConnMeta) {
        let was = self
            .registered
            .lock()
            .expect("registered lock")
            .remove(&conn.id);
        if was {
            self.membership.connection_closed(conn.id);
        }
    }
}

/// Compares in time that depends only on the expected secret's length, not on where
/// (or whether) the given one differs.
fn secret_matches(expected: &[u8], given: &[u8]) -> bool {
    let mut equal = (expected.len() as u64).ct_eq(&(given.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        equal &= e.ct_eq(given.get(i).unwrap_or(&0));
    }
    equal.into()
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, BalancerError> {
    serde_json::from_value(v).map_err(|e| BalancerError::BadRequest(e.to_string()))
}

fn validate(b: &RegisterBody) -> Result<(), BalancerError> {
    let bad = |m: String| Err(BalancerError::BadRequest(m));
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control);
    if !name_ok(&b.node) {
        return bad(format!("`node` must be 1–{MAX_NAME} printable characters"));
    }
    if !name_ok(&b.service) {
        return bad(format!(
            "`service` must be 1–{MAX_NAME} printable characters"
        ));
    }
    match b.addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
        _ => return bad("`addr` must be host:port".into()),
    }
    if !(1..=1000).contains(&b.weight) {
        return bad("`weight` must be 1 to 1000".into());
    }
    if b.ops.len() > MAX_OPS || b.ops.iter().any(|o| o.len() > MAX_NAME) {
        return bad(format!(
            "`ops`: at most {MAX_OPS} prefixes of at most {MAX_NAME} characters"
        ));
    }
    if b.idempotent.len() > MAX_IDEMPOTENT || b.idempotent.iter().any(|o| o.len() > MAX_NAME) {
        return bad(format!(
            "`idempotent`: at most {MAX_IDEMPOTENT} operations of at most {MAX_NAME} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::membership::InMemory;
    use crate::balancer::membership::Settings;
    use crate::config::BalancerConfig;
    use crate::protocol::ErrorCode;

    fn registration(secret: Option<&str>) -> (Arc<Membership>, Registration) {
        let settings = Settings::from_config(&BalancerConfig::default()).unwrap();
        let m = Arc::new(Membership::new(settings, Arc::new(InMemory)));
        let r = Registration::new(
            m.clone(),
            secret.map(str::to_owned),
            Arc::new(Registry::new("registration")),
        );
        (m, r)
    }

    fn register(r: &Registration, peer: &str, id: u64, secret: Option<&str>) -> Response {
        let mut body = json!({"node": format!("n{id}"), "service": "dsf", "addr": "10.0.0.9:7001"});
        if let Some(s) = secret {
            body["secret"] = json!(s);
        }
        let meta = ConnMeta {
            id,
            peer: peer.parse().unwrap(),
        };
        smol::block_on(r.call(meta, Request::new(1, "lb.register", body)))
    }

    #[test]
    fn without_a_secret_only_local_nodes_may_register() {
        let (m, r) = registration(None);
        let remote = register(&r, "10.1.2.3:5000", 1, None);
        assert_eq!(remote.result.unwrap_err().code, ErrorCode::Unauthorized);
        assert!(m.snapshot().nodes.is_empty());
        assert!(register(&r, "127.0.0.1:5000", 2, None).result.is_ok());
        assert!(register(&r, "[::1]:5000", 3, None).result.is_ok());
        assert_eq!(m.snapshot().nodes.len(), 2);
    }

    #[test]
    fn with_a_secret_everyone_must_present_it() {
        let (m, r) = registration(Some("s3cret"));
        for (id, given) in [(1, None), (2, Some("wrong")), (3, Some(""))] {
            let resp = register(&r, "127.0.0.1:5000", id, given);
            assert_eq!(resp.result.unwrap_err().code, ErrorCode::Unauthorized);
        }
        assert!(m.snapshot().nodes.is_empty());
        assert!(register(&r, "10.1.2.3:5000", 4, Some("s3cret"))
            .result
            .is_ok());
        assert_eq!(m.snapshot().nodes.len(), 1);
    }

    #[test]
    fn secret_comparison() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cret", b"s3cre"));
        assert!(!secret_matches(b"s3cret", b"s3cret!"));
        assert!(!secret_matches(b"s3cret", b"S3cret"));
        assert!(!secret_matches(b"s3cret", b""));
    }
}
