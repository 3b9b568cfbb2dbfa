//! Where membership lives beyond one balancer: nowhere ([`InMemory`]) or Redis ([`RedisShared`]).
//!
//! With Redis, each balancer writes the leases it holds as expiring keys
//! (`dsf:lb:node:<id>`, JSON [`NodeRecord`], `PX = lease_ttl`, refreshed by every
//! heartbeat) and announces shape changes (join, drain, leave) on the channel
//! `dsf:lb:changes`. Every balancer re-reads all keys when an announcement arrives and
//! once per heartbeat interval (which also notices keys that expired), and feeds them
//! to [`Membership::set_remote`]. Since the ring is a pure function of the member set,
//! two balancers with the same members answer `lb.assign` for a key identically.
//!
//! Redis being down never stops a balancer: it keeps serving the leases it holds and
//! drops remote ones as they age past the TTL.

use super::error::BalancerError;
use super::membership::{Membership, NodeRecord};
use crate::runtime::Shutdown;
use futures_lite::{future, StreamExt};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;

/// Key prefix of lease records.
pub const KEY_PREFIX: &str = "dsf:lb:node:";
/// Channel on which shape changes are announced.
pub const CHANNEL: &str = "dsf:lb:changes";

/// Publishes the leases this balancer holds (the "service discovery" role).
pub trait Discovery: Send + Sync + 'static {
    /// A lease was taken or changed shape (registration, drain): store and announce it.
    fn announce(&self, record: &NodeRecord);
    /// A lease was renewed by a heartbeat: store it, no announcement.
    fn renew(&self, record: &NodeRecord);
    /// A lease ended here.
    fn withdraw(&self, node: &str);
}

/// Membership private to this balancer.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemory;

impl Discovery for InMemory {
    fn announce(&self, _: &NodeRecord) {}
    fn renew(&self, _: &NodeRecord) {}
    fn withdraw(&self, _: &str) {}
}

/// One write to Redis, in the order the membership made them.
#[derive(Debug)]
enum Write {
    /// Store a lease record, and announce it if its shape changed.
    Put { record: NodeRecord, announce: bool },
    /// Delete a lease record and announce it.
    Remove(String),
}

/// Membership shared through Redis. Writes are queued, so the membership lock is never
/// held across network I/O; [`RedisShared::run`] performs them and watches the others.
pub struct RedisShared {
    /// Queue of writes for the worker.
    tx: async_channel::Sender<Write>,
    /// The worker's end; taken by `run`.
    rx: async_channel::Receiver<Write>,
    /// The Redis client (cheap handle; connections are made by the worker).
    client: redis::Client,
    /// Lease lifetime, used as the keys' expiry.
    ttl: Duration,
}

impl RedisShared {
    /// A handle for `url` (no connection is made yet).
    pub fn new(url: &str, ttl: Duration) -> Result<Arc<RedisShared>, BalancerError> {
        let client = redis::Client::open(url)?;
        let (tx, rx) = async_channel::unbounded();
        Ok(Arc::new(RedisShared {
            tx,
            rx,
            client,
            ttl,
        }))
    }

    fn push(&self, w: Write) {
        // The queue is unbounded and lives as long as self.
        let _ = self.tx.try_send(w);
    }

    async fn connect(&self) -> Result<MultiplexedConnection, BalancerError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }

    /// Performs queued writes and keeps `membership`'s remote part in step with Redis,
    /// re-reading on every announcement and at least every `resync`. Until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        membership: Arc<Membership>,
        resync: Duration,
        shutdown: Shutdown,
    ) {
        let writer = crate::runtime::spawn_local(self.clone().write_loop(shutdown.clone()));
        self.watch_loop(membership, resync, shutdown).await;
        writer.await;
    }

    async fn write_loop(self: Arc<Self>, shutdown: Shutdown) {
        let mut conn: Option<MultiplexedConnection> = None;
        loop {
            let next = future::or(async { self.rx.recv().await.ok() }, async {
                shutdown.wait().await;
                None
            })
            .await;
            let Some(write) = next else { return };
            if conn.is_none() {
                match self.connect().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "shared membership: write skipped");
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            if let Err(e) = self.apply(c, write).await {
                tracing::warn!(error = %e, "shared membership: write failed");
                conn = None;
            }
        }
    }

    async fn apply(&self, c: &mut MultiplexedConnection, w: Write) -> Result<(), BalancerError> {
        match w {
            Write::Put { record, announce } => {
                let json = serde_json::to_string(&record).expect("a record is always JSON");
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(format!("{KEY_PREFIX}{}", record.node))
                    .arg(json)
                    .arg("PX")
                    .arg(self.ttl.as_millis() as u64)
                    .ignore();
                if announce {
                    pipe.cmd("PUBLISH").arg(CHANNEL).arg(&record.node).ignore();
                }
                pipe.query_async::<()>(c).await?;
            }
            Write::Remove(node) => {
                redis::pipe()
                    .cmd("DEL")
                    .arg(format!("{KEY_PREFIX}{node}"))
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(&node)
                    .ignore()
                    .query_async::<()>(c)
                    .await?;
            }
        }
        Ok(())
    }

    async fn watch_loop(&self, membership: Arc<Membership>, resync: Duration, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_triggered() {
            if let Err(e) = self.watch(&membership, resync, &shutdown).await {
                tracing::warn!(error = %e, "shared membership: watching redis failed; retrying");
                future::or(
                    async {
                        async_io::Timer::after(backoff).await;
                    },
                    shutdown.wait(),
                )
                .await;
                backoff = (backoff * 2).min(resync.max(Duration::from_millis(100)));
            } else {
                return;
            }
        }
    }

    async fn watch(
        &self,
        membership: &Membership,
        resync: Duration,
        shutdown: &Shutdown,
    ) -> Result<(), BalancerError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        let mut data = self.connect().await?;
        let mut messages = pubsub.into_on_message();
        tracing::info!("shared membership: following redis");
        loop {
            membership.set_remote(read_all(&mut data).await?);
            enum Wake {
                Message,
                Tick,
                Stop,
                Lost,
            }
            let wake = future::or(
                future::or(
                    async {
                        match messages.next().await {
                            Some(_) => Wake::Message,
                            None => Wake::Lost,
                        }
                    },
                    async {
                        async_io::Timer::after(resync).await;
                        Wake::Tick
                    },
                ),
                async {
                    shutdown.wait().await;
                    Wake::Stop
                },
            )
            .await;
            match wake {
                Wake::Message | Wake::Tick => {}
                Wake::Stop => return Ok(()),
                Wake::Lost => {
                    return Err(BalancerError::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "subscription closed",
                    )))
                }
            }
        }
    }
}

impl Discovery for RedisShared {
    fn announce(&self, record: &NodeRecord) {
        self.push(Write::Put {
            record: record.clone(),
            announce: true,
        });
    }

    fn renew(&self, record: &NodeRecord) {
        self.push(Write::Put {
            record: record.clone(),
            announce: false,
        });
    }

    fn withdraw(&self, node: &str) {
        self.push(Write::Remove(node.to_owned()));
    }
}

/// Every lease record in Redis (SCAN + MGET; records that fail to parse are skipped).
async fn read_all(c: &mut MultiplexedConnection) -> Result<Vec<NodeRecord>, BalancerError> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{KEY_PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(c).await?;
    Ok(values
        .into_iter()
        .flatten()
        .filter_map(|v| match serde_json::from_str::<NodeRecord>(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "shared membership: unreadable record skipped");
                None
            }
        })
        .collect())
}
