//! What a reload (`SIGHUP`, PROTOCOL §9) may change in a running process.
//!
//! [`changes`] compares the running configuration with a newly loaded one, key by
//! dotted key, and sorts the changed keys into those the process takes live and
//! those that need a restart. [`Config::keep_running`] then builds the configuration
//! the process actually runs with: the new values of live keys, the running values
//! of the others (so that a key that needs a restart keeps meaning what the process
//! does until it restarts).

use super::Config;
use serde_json::Value;

/// Keys (or prefixes ending in `.`) a running process takes without a restart.
///
/// - `log.level`: the log filter is swapped.
/// - `limits.*` except `request_timeout` and `slow_request`: bounds read by the
///   listeners; connections accepted after the reload use the new ones.
/// - the balancer's selection: `algorithm`, `vnodes`, `load_factor`, outlier
///   ejection (`balancer.outlier.*`) and the per-service settings; selectors are
///   rebuilt over the same members, ejections in progress stay.
/// - `node.weight`: carried to the balancer on the next heartbeat.
/// - `cache.ttl`, `cache.negative_ttl`: entries written after the reload.
/// - `store.pool_min`, `store.pool_max`: a MySQL pool of the new size replaces the
///   old one, whose connections close as they are returned.
///
/// TLS files are read again on every reload whether or not a key changed; a changed
/// `tls.*` path needs a restart. So does where membership is shared
/// (`balancer.redis`, `balancer.etcd`, `balancer.etcd_prefix`, and the etcd TLS files
/// `balancer.etcd_tls_*`, read once at start): a balancer moving to
/// another store would drop every remote node at once and publish its own leases
/// where the others may not look.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "limits.max_frame",
    "limits.max_connections",
    "limits.max_inflight_per_connection",
    "limits.max_inflight",
    "limits.idle_timeout",
    "limits.drain_timeout",
    "limits.goaway_grace",
    "balancer.algorithm",
    "balancer.vnodes",
    "balancer.load_factor",
    "balancer.services.",
    "balancer.outlier.",
    "node.weight",
    "cache.ttl",
    "cache.negative_ttl",
    "store.pool_min",
    "store.pool_max",
];

/// Keys whose values are secrets: named in logs, never shown.
const SECRET_KEYS: &[&str] = &["cluster.secret", "store.password"];

/// Whether a change of `key` is taken without a restart.
pub fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|k| {
        if k.ends_with('.') {
            key.starts_with(k)
        } else {
            key == *k
        }
    })
}

/// Whether `key` holds a secret (its value never appears in a log line).
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// The keys that differ between two configurations, sorted into live and restart.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Changed keys taken live.
    pub live: Vec<String>,
    /// Changed keys that need a restart.
    pub restart: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

/// Every dotted key whose value differs between `old` and `new`, sorted.
pub fn changes(old: &Config, new: &Config) -> Changes {
    let mut keys = Vec::new();
    diff(String::new(), &tree(old), &tree(new), &mut keys);
    keys.sort();
    let (live, restart) = keys.into_iter().partition(|k| is_live(k));
    Changes { live, restart }
}

fn tree(cfg: &Config) -> Value {
    serde_json::to_value(cfg).expect("the configuration serializes to JSON")
}

fn diff(at: String, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let key = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) => diff(key, x, y, out),
                    _ => out.push(key),
                }
            }
        }
        (a, b) if a != b => out.push(at),
        _ => {}
    }
}

impl Config {
    /// This configuration with the running value (from `running`) of every key in
    /// `restart`: what a process runs with after a reload that it can only take in
    /// part.
    pub fn keep_running(&self, running: &Config, restart: &[String]) -> Config {
        let mut tree_new = tree(self);
        let tree_old = tree(running);
        for key in restart {
            let path: Vec<&str> = key.split('.').collect();
            let old = lookup(&tree_old, &path).cloned();
            set(&mut tree_new, &path, old);
        }
        serde_json::from_value(tree_new).unwrap_or_else(|_| running.clone())
    }
}

fn lookup<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, name| v.get(*name))
}

fn set(v: &mut Value, path: &[&str], to: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for name in parents {
        match at.get_mut(*name) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(map) = at {
        match to {
            Some(value) => {
                map.insert((*last).to_owned(), value);
            }
            None => {
                map.remove(*last);
            }
        }
    }
}
