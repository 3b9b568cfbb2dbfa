//! Readiness of a whole Redis Cluster (`/readyz`'s `cache` check): a read of one key
//! would only show that one slot's master answers.
//!
//! A seed that answers (tried in order) gives `CLUSTER INFO` and `CLUSTER SLOTS`; every
//! master that owns slots is then sent a `PING` on a connection of its own, all at
//! once. The check fails naming the first master that does not answer (with its
//! slots), or the state the cluster reports when it is not `ok`, or every seed when
//! none answers. Every step is bounded by `cache.op_timeout`.

use super::RedisCluster;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::time::Duration;

/// A master and the slot ranges it serves.
struct Master {
    /// `host:port`.
    addr: String,
    /// `a-b` ranges, comma-separated.
    slots: String,
}

impl RedisCluster {
    /// The cluster-wide check; `Err`, the probe's text, names the master that failed
    /// (host:port, never credentials): what an operator needs to act on.
    pub(super) async fn check_ready(&self) -> Result<(), String> {
        self.whole_cluster().await.map_err(|e| {
            tracing::warn!(error = %e, "readiness: redis cluster check failed");
            format!("redis-cluster cache unreachable: {e}")
        })
    }

    async fn whole_cluster(&self) -> Result<(), String> {
        let mut refused = Vec::new();
        let mut found = None;
        for seed in &self.seeds.0 {
            match self.ask_seed(seed).await {
                Ok(answer) => {
                    found = Some((seed, answer));
                    break;
                }
                Err(e) => refused.push(format!("{}: {e}", super::redact(seed))),
            }
        }
        let Some((seed, (state, masters))) = found else {
            return Err(format!(
                "redis cluster: no seed answered ({})",
                refused.join("; ")
            ));
        };
        if masters.is_empty() {
            return Err(format!(
                "redis cluster: {} reports no slots served",
                super::redact(seed)
            ));
        }
        let pings = masters.iter().map(|m| self.ping_master(seed, m));
        for (m, r) in masters
            .iter()
            .zip(futures_util::future::join_all(pings).await)
        {
            if let Err(e) = r {
                return Err(format!(
                    "redis cluster master {} (slots {}): {e}",
                    m.addr, m.slots
                ));
            }
        }
        if state != "ok" {
            return Err(format!(
                "redis cluster: cluster_state:{state} at {}",
                super::redact(seed)
            ));
        }
        Ok(())
    }

    /// `cluster_state` and the masters, as `seed` sees them.
    async fn ask_seed(&self, seed: &str) -> Result<(String, Vec<Master>), String> {
        let mut conn = self.direct(seed).await?;
        let info: String = self
            .bounded(redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn))
            .await?;
        let state = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:"))
            .unwrap_or("unknown")
            .to_owned();
        let slots: Value = self
            .bounded(redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn))
            .await?;
        Ok((state, masters(&slots, seed_host(seed))))
    }

    /// `PING` to master `m` on a connection of its own (credentials and TLS as `seed`).
    async fn ping_master(&self, seed: &str, m: &Master) -> Result<(), String> {
        let url = with_addr(seed, &m.addr);
        let mut conn = self.direct(&url).await?;
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    /// A fresh connection to the server at `url`, within `cache.op_timeout`.
    async fn direct(&self, url: &str) -> Result<MultiplexedConnection, String> {
        let client = super::super::redis::client(url, &self.seeds.1)?;
        self.bounded(client.get_multiplexed_async_connection())
            .await
    }

    /// `f` within `cache.op_timeout`.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let limit: Duration = self.op_timeout;
        futures_lite::future::or(async { f.await.map_err(|e| e.to_string()) }, async {
            async_io::Timer::after(limit).await;
            Err(format!("no answer within {} ms", limit.as_millis()))
        })
        .await
    }
}

/// The masters of a `CLUSTER SLOTS` answer: `[[start, end, [host, port, id], replicas…], …]`.
/// An empty host (or `?`) means the host the answer came from, `asked`.
fn masters(v: &Value, asked: &str) -> Vec<Master> {
    let mut out: Vec<Master> = Vec::new();
    let Value::Array(ranges) = v else {
        return out;
    };
    for r in ranges {
        let Value::Array(r) = r else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (r.first(), r.get(1), r.get(2))
        else {
            continue;
        };
        let host = match node.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let host = if host.is_empty() || host == "?" {
            asked.to_owned()
        } else {
            host
        };
        let Some(Value::Int(port)) = node.get(1) else {
            continue;
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let range = format!("{start}-{end}");
        match out.iter_mut().find(|m| m.addr == addr) {
            Some(m) => m.slots = format!("{},{range}", m.slots),
            None => out.push(Master { addr, slots: range }),
        }
    }
    out
}

/// The host of a seed URL (`redis://user:pass@host:port/db`).
fn seed_host(seed: &str) -> &str {
    let rest = seed.split_once("://").map_or(seed, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    crate::tls::host_of(hostport)
}

/// `seed` with its `host:port` replaced by `addr` (scheme, credentials and database kept).
fn with_addr(seed: &str, addr: &str) -> String {
    let Some((scheme, rest)) = seed.split_once("://") else {
        return format!("redis://{addr}");
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!("{scheme}://{user}{addr}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_url_keeps_the_seeds_scheme_and_credentials() {
        assert_eq!(
            with_addr("rediss://u:p@10.0.0.1:7000/0", "10.0.0.2:7001"),
            "rediss://u:p@10.0.0.2:7001/0"
        );
        assert_eq!(
            with_addr("redis://127.0.0.1:7000", "127.0.0.1:7002"),
            "redis://127.0.0.1:7002"
        );
        assert_eq!(seed_host("rediss://u:p@10.0.0.1:7000/0"), "10.0.0.1");
        assert_eq!(seed_host("redis://[::1]:7000"), "::1");
    }

    #[test]
    fn cluster_slots_give_each_master_once_with_its_ranges() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(99), node(7000), node(7003)]),
            Value::Array(vec![Value::Int(100), Value::Int(199), node(7001)]),
            Value::Array(vec![Value::Int(200), Value::Int(299), node(7000)]),
        ]);
        let m = masters(&v, "127.0.0.1");
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].addr.as_str(), m[0].slots.as_str()),
            ("127.0.0.1:7000", "0-99,200-299")
        );
        assert_eq!(m[1].addr, "127.0.0.1:7001");
    }
}
