//! The three tasks of [`EtcdShared`]: the writer (lease and registrations), the
//! watcher (other balancers' registrations) and the quorum probe (readiness).

use super::client::Change;
use super::{EtcdShared, Held, Registration};
use crate::balancer::error::BalancerError;
use crate::balancer::membership::Membership;
use crate::runtime::Shutdown;
use futures_lite::future;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First delay before trying etcd again; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning this often while etcd fails.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What etcd holds for this balancer, as the writer last wrote it.
#[derive(Default)]
struct Written {
    /// This balancer's lease, once granted.
    lease: Option<i64>,
    /// Keep-alive period of the lease.
    every: Duration,
    /// Key and value written per node.
    keys: HashMap<String, (String, String)>,
}

/// Rate-limited warnings of one task.
struct Warn {
    last: Option<Instant>,
    failures: u64,
}

impl Warn {
    fn new() -> Warn {
        Warn {
            last: None,
            failures: 0,
        }
    }

    fn failed(&mut self, task: &str, e: &BalancerError) {
        self.failures += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            self.last = Some(Instant::now());
            tracing::warn!(error = %e, failures = self.failures, task, "shared membership: etcd call failed; retrying");
        }
    }

    fn ok(&mut self, task: &str) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                task,
                "shared membership: etcd answers again"
            );
        }
        self.failures = 0;
        self.last = None;
    }
}

impl EtcdShared {
    /// Keeps the lease alive and etcd's keys equal to what is held here.
    pub(super) async fn write_loop(self: Arc<Self>, shutdown: Shutdown) {
        let mut w = Written::default();
        let mut backoff = FIRST_BACKOFF;
        let mut warn = Warn::new();
        let mut renew_at = Instant::now();
        loop {
            let result = async {
                if w.lease.is_none() || Instant::now() >= renew_at {
                    self.lease(&mut w).await?;
                    renew_at = Instant::now() + w.every;
                }
                self.sync(&mut w).await
            }
            .await;
            let wait = match result {
                Ok(()) => {
                    warn.ok("write");
                    backoff = FIRST_BACKOFF;
                    renew_at.saturating_duration_since(Instant::now())
                }
                Err(e) => {
                    warn.failed("write", &e);
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            let go_on = future::or(
                async {
                    future::or(
                        async {
                            let _ = self.woken.recv().await;
                        },
                        async {
                            async_io::Timer::after(wait).await;
                        },
                    )
                    .await;
                    true
                },
                async {
                    shutdown.wait().await;
                    false
                },
            )
            .await;
            // The lease is not revoked on the way out: a successor taking over
            // (in-place upgrade) writes the registrations again, and nodes that
            // move to another balancer overwrite theirs; the rest expire with it.
            if !go_on {
                return;
            }
        }
    }

    /// Grants the lease if there is none, else renews it; a lease found lost is
    /// replaced and every registration written again.
    async fn lease(&self, w: &mut Written) -> Result<(), BalancerError> {
        let secs = self.ttl.as_secs_f64().ceil().max(1.0) as u64;
        if let Some(id) = w.lease {
            let left = self.client.keep_alive(id).await;
            self.quorum(left.as_ref().map(drop));
            if left? > 0 {
                return Ok(());
            }
            tracing::warn!(
                lease = id,
                "shared membership: etcd lease lost; granting a new one and writing every registration again"
            );
            w.lease = None;
            w.keys.clear();
        }
        let granted = self.client.grant(secs).await;
        self.quorum(granted.as_ref().map(drop));
        let (id, ttl) = granted?;
        let ttl = Duration::from_secs(ttl.max(1)).min(self.ttl.max(Duration::from_secs(1)));
        w.lease = Some(id);
        w.every = ttl / 3;
        w.keys.clear();
        tracing::info!(
            lease = id,
            ttl_s = secs,
            "shared membership: etcd lease granted"
        );
        Ok(())
    }

    /// Writes what changed since the last sync, deletes what is no longer held.
    async fn sync(&self, w: &mut Written) -> Result<(), BalancerError> {
        let Some(lease) = w.lease else {
            return Ok(());
        };
        let desired: BTreeMap<String, Held> = self
            .desired()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (node, held) in &desired {
            let key = self.key(&held.record);
            let value =
                serde_json::to_string(&Registration::new(&held.record, held.unhealthy, self.id()))
                    .expect("a registration is always JSON");
            let current = w.keys.get(node);
            if current.is_some_and(|(k, v)| *k == key && *v == value) {
                continue;
            }
            if let Some((old, _)) = current.filter(|(k, _)| *k != key) {
                self.client.delete_if_leased(old, lease).await?;
            }
            self.client.put(&key, &value, lease).await?;
            w.keys.insert(node.clone(), (key, value));
        }
        let gone: Vec<String> = w
            .keys
            .keys()
            .filter(|n| !desired.contains_key(*n))
            .cloned()
            .collect();
        for node in gone {
            if let Some((key, _)) = w.keys.get(&node) {
                self.client.delete_if_leased(key, lease).await?;
            }
            w.keys.remove(&node);
        }
        Ok(())
    }

    /// Reads the prefix, then follows it with a watch; starts over after any failure.
    pub(super) async fn watch_loop(&self, membership: Arc<Membership>, shutdown: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        let mut warn = Warn::new();
        let nodes = format!("{}nodes/", self.prefix);
        while !shutdown.is_triggered() {
            let read = self.client.get_prefix(&nodes).await;
            self.quorum(read.as_ref().map(drop));
            let (revision, kvs) = match read {
                Ok(r) => r,
                Err(e) => {
                    // The last view stays: etcd out of reach is no reason to drop nodes.
                    warn.failed("watch", &e);
                    shutdown.sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            warn.ok("watch");
            backoff = FIRST_BACKOFF;
            let mut view: BTreeMap<String, Registration> = kvs
                .into_iter()
                .filter_map(|kv| Some((kv.key, parse(&kv.value)?)))
                .collect();
            self.publish(&membership, &view);
            let at = self.client.preferred();
            self.watching.store(at, Ordering::Relaxed);
            while self.stale_watch.1.try_recv().is_ok() {}
            let ended = future::or(
                async {
                    let stale = async {
                        let _ = self.stale_watch.1.recv().await;
                        BalancerError::Etcd {
                            endpoint: self.client.endpoint(at),
                            problem: "the watched member stopped answering reads".into(),
                        }
                    };
                    Some(
                        future::or(
                            self.client.watch(at, &nodes, revision + 1, |changes| {
                                for c in changes {
                                    match c {
                                        Change::Put(kv) => match parse(&kv.value) {
                                            Some(r) => view.insert(kv.key, r),
                                            None => view.remove(&kv.key),
                                        },
                                        Change::Delete(key) => view.remove(&key),
                                    };
                                }
                                self.publish(&membership, &view);
                            }),
                            stale,
                        )
                        .await,
                    )
                },
                async {
                    shutdown.wait().await;
                    None
                },
            )
            .await;
            self.watching.store(usize::MAX, Ordering::Relaxed);
            match ended {
                None => return,
                Some(e) => {
                    self.client.skip(at);
                    tracing::info!(error = %e, "shared membership: etcd watch ended; reading again");
                    shutdown.sleep(FIRST_BACKOFF).await;
                }
            }
        }
    }

    /// Hands the other balancers' registrations to `membership`.
    fn publish(&self, membership: &Membership, view: &BTreeMap<String, Registration>) {
        let id = self.id();
        let remote = view
            .values()
            .filter(|r| r.balancer != id)
            .map(|r| r.clone().record())
            .collect();
        membership.set_remote_leased(remote);
    }

    /// Every `every`: checks that the watched endpoint answers a read that needs a
    /// quorum (else the watch starts over elsewhere), and that some endpoint does
    /// (readiness).
    pub(super) async fn probe_loop(self: Arc<Self>, every: Duration, shutdown: Shutdown) {
        let probe = format!("{}probe", self.prefix);
        loop {
            let at = self.watching.load(Ordering::Relaxed);
            let watched = if at == usize::MAX {
                None
            } else {
                Some(self.client.read_at(at, &probe).await)
            };
            match watched {
                Some(Ok(())) => self.quorum(Ok(())),
                other => {
                    if let Some(Err(e)) = other {
                        tracing::info!(error = %e, "shared membership: the watched etcd endpoint does not answer; watching another");
                        let _ = self.stale_watch.0.try_send(());
                    }
                    let read = self.client.get_prefix(&probe).await;
                    self.quorum(read.as_ref().map(drop));
                }
            }
            if shutdown.sleep(every).await {
                return;
            }
        }
    }
}

/// A registration read from etcd; an unreadable one is skipped with a warning.
fn parse(value: &[u8]) -> Option<Registration> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "shared membership: unreadable etcd record skipped");
            None
        }
    }
}
