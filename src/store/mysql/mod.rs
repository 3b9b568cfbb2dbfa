//! The MySQL/MariaDB store: a `mysql_async` pool sized from `[store]`.
//!
//! `mysql_async` is built on tokio: every operation is spawned whole onto the tokio
//! runtime that [`async_compat::Compat`] provides ([`runner`]), and the pool is made,
//! replaced and dropped inside `Compat`, which gives those a tokio context on our smol
//! threads (migrations run under it too). Every statement is a prepared statement with bound parameters (`exec_*`); the only text
//! queries are the static migration scripts and lock calls.
//!
//! Bounds: `pool_max` connections at most, `pool_min` kept when idle, idle ones above
//! it closed after `idle_timeout`, every one recycled after `max_lifetime`; waiting for
//! a connection is bounded by `acquire_timeout` and a whole operation by
//! `query_timeout`, so an outage is answered `unavailable` or `timeout`, never a hang.

mod batch;
mod errors;
mod migrate;
mod pool;
mod runner;
mod startup;
mod tables;

use batch::{drains_for, Batcher, PointRead};
use errors::{classify, not_found_unless_changed};
use migrate::Plan;

use super::{
    deadline, now_ms, search_sql, Entry, NewReport, ReportOutcome, Row, SearchFilter,
    SessionRecord, SqlValue, Store, StoreError, StoreResult, StoreStats, Tables, UserRecord,
};
use crate::config::StoreConfig;
use crate::runtime::BoxFuture;
use arc_swap::ArcSwapOption;
use async_compat::Compat;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, TxOpts};
use pool::options;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on one attempt at the migrations (they wait for each other's lock).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: &str = "dsf.schema_migrations";

/// Session checks: an unexpired session and its user's name, by token hash.
const SESSION_READ: PointRead<SessionRecord> = PointRead {
    what: "session get",
    head: "SELECT s.token_hash, s.user_id, u.name, s.expires_at FROM sessions s \
           JOIN users u ON u.id = s.user_id WHERE s.token_hash IN (",
    tail: ") AND s.expires_at > ?",
    extra: || vec![now_ms().into()],
    row: |row| {
        let (hash, user_id, name, expires_at_ms) =
            mysql_async::from_row_opt::<(String, u64, String, u64)>(row)?;
        let s = SessionRecord {
            user_id,
            name,
            expires_at_ms,
        };
        Ok((hash, s))
    },
};

/// Blacklist lookups: the name listed under an id_card.
const ENTRY_READ: PointRead<String> = PointRead {
    what: "blacklist get",
    head: "SELECT id_card, name FROM blacklist WHERE id_card IN (",
    tail: ")",
    extra: Vec::new,
    row: mysql_async::from_row_opt::<(String, String)>,
};

/// The MySQL store.
pub struct MySqlStore {
    /// The pool; a reload of `store.pool_min`/`pool_max` replaces it, and `Drop`
    /// takes it out to hand it to a tokio context.
    pool: ArcSwapOption<Pool>,
    /// Longest wait for a pooled connection.
    acquire_timeout: Duration,
    /// Deadline of one operation.
    query_timeout: Duration,
    /// Counters (shared with the batched reads' drains).
    stats: Arc<StoreStats>,
    /// `mysql HOST:PORT`, naming the database in logs and errors.
    target: String,
    /// The tokio runtime the driver runs on (async-compat's); operations are spawned
    /// onto it whole ([`runner`]).
    runtime: tokio::runtime::Handle,
    /// Session checks, answered many to a statement ([`batch`]).
    session_reads: Arc<Batcher<SessionRecord>>,
    /// `blacklist_get`, answered many to a statement.
    entry_reads: Arc<Batcher<String>>,
}

impl MySqlStore {
    /// Builds the pool, waits for the database (`store.startup_timeout`, zero = as
    /// long as it takes), and applies migrations.
    ///
    /// Only an unreachable or unresponsive database is waited for, trying again with
    /// capped backoff; anything else (a wrong password, a failed migration) ends the
    /// start at once. Each attempt is bounded (`acquire_timeout`), so a name lookup
    /// or a connection that hangs costs one attempt, never the whole wait.
    pub async fn open(cfg: &StoreConfig) -> StoreResult<MySqlStore> {
        let opts = options(cfg)?;
        let target = format!("mysql {}:{}", opts.ip_or_hostname(), opts.tcp_port());
        // The pool spawns its housekeeping task on creation: do it in a tokio context.
        let (pool, runtime) =
            Compat::new(async move { (Pool::new(opts), tokio::runtime::Handle::current()) }).await;
        let store = MySqlStore {
            pool: ArcSwapOption::from_pointee(pool),
            acquire_timeout: cfg.acquire_timeout,
            query_timeout: cfg.query_timeout,
            stats: Arc::default(),
            target,
            runtime,
            session_reads: Arc::new(Batcher::new(SESSION_READ, drains_for(cfg.pool_max))),
            entry_reads: Arc::new(Batcher::new(ENTRY_READ, drains_for(cfg.pool_max))),
        };
        let started = Instant::now();
        let attempts = store.wait_and_migrate(cfg.startup_timeout, started).await?;
        tracing::info!(
            database = %store.target,
            pool_min = cfg.pool_min,
            pool_max = cfg.pool_max,
            attempts,
            waited_ms = started.elapsed().as_millis() as u64,
            "mysql store open"
        );
        Ok(store)
    }

    /// A point read through `batcher`, in the next statement of its kind.
    async fn batched<V: Clone + Send + 'static>(
        &self,
        batcher: &Arc<Batcher<V>>,
        key: String,
    ) -> StoreResult<Option<V>> {
        let r = batcher
            .get(key, self.query_timeout, |b| {
                let drain = b.drain(self.pool(), self.acquire_timeout, self.stats.clone());
                drop(self.runtime.spawn(drain));
            })
            .await;
        self.stats.counted(r)
    }

    fn pool(&self) -> Arc<Pool> {
        // Only `Drop` takes the pool out.
        self.pool.load_full().expect("pool present until drop")
    }

    /// A pooled connection, waiting at most `acquire_timeout` (for the migrations,
    /// which run under `Compat`; operations take theirs in [`MySqlStore::run`]).
    async fn conn(&self, what: &'static str) -> StoreResult<Conn> {
        let get = self.pool().get_conn();
        let limit = self.acquire_timeout;
        futures_lite::future::or(
            async move { get.await.map_err(|e| classify(e, what)) },
            async move {
                async_io::Timer::after(limit).await;
                Err(StoreError::Unavailable(format!(
                    "{what}: no connection within {limit:?}"
                )))
            },
        )
        .await
    }
}

impl Drop for MySqlStore {
    fn drop(&mut self) {
        // Dropping the pool may spawn onto tokio: drop it inside a Compat, whose own
        // drop enters the tokio context even when never polled.
        if let Some(pool) = self.pool.swap(None) {
            drop(Compat::new(async move { drop(pool) }));
        }
    }
}

impl Store for MySqlStore {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn resize<'a>(&'a self, cfg: &'a StoreConfig) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.replace_pool(cfg))
    }

    fn pool_usage(&self) -> Option<super::PoolUsage> {
        let m = self.pool().metrics();
        let get = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        Some(super::PoolUsage {
            in_use: get(&m.connections_in_use),
            idle: get(&m.connections_in_pool),
            waiting: get(&m.active_wait_requests),
        })
    }

    fn migrate_tables<'a>(&'a self, tables: &'a Tables) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.migrate_app(tables))
    }

    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.execute_app(sql, params))
    }

    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<Vec<Row>>> {
        Box::pin(self.query_app(sql, params))
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.run("ping", |mut c| async move {
            c.ping().await.map_err(|e| classify(e, "ping"))
        }))
    }

    fn create_user<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        let what = "user name";
        let name = name.to_owned();
        let password_hash = password_hash.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            c.exec_drop(
                "INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)",
                (name, password_hash, now_ms()),
            )
            .await
            .map_err(|e| classify(e, what))?;
            Ok(c.last_insert_id().unwrap_or(0))
        }))
    }

    fn user_by_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<UserRecord>>> {
        let what = "user by name";
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            let row: Option<(u64, String, String)> = c
                .exec_first(
                    "SELECT id, name, password_hash FROM users WHERE name = ?",
                    (name,),
                )
                .await
                .map_err(|e| classify(e, what))?;
            Ok(row.map(|(id, name, password_hash)| UserRecord {
                id,
                name,
                password_hash,
            }))
        }))
    }

    fn blacklist_insert<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        let what = "id_card";
        let id_card = id_card.to_owned();
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            let now = now_ms();
            c.exec_drop(
                "INSERT INTO blacklist (id_card, name, created, updated) VALUES (?, ?, ?, ?)",
                (id_card, name, now, now),
            )
            .await
            .map_err(|e| classify(e, what))?;
            Ok(c.last_insert_id().unwrap_or(0))
        }))
    }

    fn blacklist_update<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let what = "blacklist entry";
        let id_card = id_card.to_owned();
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            // 0 changed rows: absent (not_found) or already this name (done). Another
            // name means an insert committed after the UPDATE saw nothing: run it again
            // rather than acknowledge a rename never applied.
            loop {
                c.exec_drop(
                    "UPDATE blacklist SET name = ?, updated = ? WHERE id_card = ?",
                    (&name, now_ms(), &id_card),
                )
                .await
                .map_err(|e| classify(e, what))?;
                if c.affected_rows() > 0 {
                    return Ok(());
                }
                let found: Option<Vec<u8>> = c
                    .exec_first("SELECT name FROM blacklist WHERE id_card = ?", (&id_card,))
                    .await
                    .map_err(|e| classify(e, what))?;
                match found {
                    None => return Err(StoreError::NotFound(what)),
                    Some(n) if n == name.as_bytes() => return Ok(()),
                    Some(_) => continue,
                }
            }
        }))
    }

    fn blacklist_delete<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let what = "blacklist entry";
        let id_card = id_card.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            c.exec_drop("DELETE FROM blacklist WHERE id_card = ?", (id_card,))
                .await
                .map_err(|e| classify(e, what))?;
            not_found_unless_changed(&c, what)
        }))
    }

    fn blacklist_get<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<Option<String>>> {
        self.stats.blacklist_reads.fetch_add(1, Ordering::Relaxed);
        Box::pin(self.batched(&self.entry_reads, id_card.to_owned()))
    }

    fn blacklist_search<'a>(
        &'a self,
        filter: &'a SearchFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<Entry>>> {
        let what = "blacklist search";
        let (sql, text) = search_sql(filter);
        let mut params: Vec<mysql_async::Value> =
            text.into_iter().map(mysql_async::Value::from).collect();
        params.push(filter.limit.into());
        Box::pin(self.run(what, move |mut c| async move {
            let rows: Vec<(String, String)> =
                c.exec(sql, params).await.map_err(|e| classify(e, what))?;
            Ok(rows
                .into_iter()
                .map(|(id_card, name)| Entry { id_card, name })
                .collect())
        }))
    }

    fn report<'a>(&'a self, r: &'a NewReport) -> BoxFuture<'a, StoreResult<ReportOutcome>> {
        let what = "report";
        let r = r.clone();
        Box::pin(self.run(what, move |mut c| async move {
            let e = |e| classify(e, what);
            let mut tx = c.start_transaction(TxOpts::default()).await.map_err(e)?;
            let listed: Option<u8> = tx
                .exec_first("SELECT 1 FROM blacklist WHERE id_card = ?", (&r.id_card,))
                .await
                .map_err(e)?;
            let listed = listed.is_some();
            tx.exec_drop(
                "INSERT INTO reports (reporter, id_card, name, source, created, listed) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (r.reporter, &r.id_card, &r.name, &r.source, now_ms(), listed),
            )
            .await
            .map_err(e)?;
            let report_id = tx.last_insert_id().unwrap_or(0);
            tx.commit().await.map_err(e)?;
            Ok(ReportOutcome { report_id, listed })
        }))
    }

    fn session_create<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: u64,
        expires_at_ms: u64,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let what = "session";
        let token_hash = token_hash.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            let now = now_ms();
            // Expired sessions are swept a few at a time as new ones arrive.
            c.exec_drop("DELETE FROM sessions WHERE expires_at < ? LIMIT 16", (now,))
                .await
                .map_err(|e| classify(e, what))?;
            c.exec_drop(
                "INSERT INTO sessions (token_hash, user_id, created, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, now, expires_at_ms),
            )
            .await
            .map_err(|e| classify(e, what))
        }))
    }

    fn session_get<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>> {
        Box::pin(self.batched(&self.session_reads, token_hash.to_owned()))
    }

    fn session_delete<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let what = "session delete";
        let token_hash = token_hash.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            c.exec_drop("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
                .await
                .map_err(|e| classify(e, what))
        }))
    }

    fn login_failures<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let what = "login failures";
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            let since = now_ms().saturating_sub(window.as_millis() as u64);
            let n: Option<u32> = c
                .exec_first(
                    "SELECT failures FROM login_failures WHERE name = ? AND window_start > ?",
                    (name, since),
                )
                .await
                .map_err(|e| classify(e, what))?;
            Ok(n.unwrap_or(0))
        }))
    }

    fn login_failure_record<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let what = "login failure";
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            let e = |e| classify(e, what);
            let now = now_ms();
            let since = now.saturating_sub(window.as_millis() as u64);
            let mut tx = c.start_transaction(TxOpts::default()).await.map_err(e)?;
            // Assignments run left to right: `failures` is computed from the old
            // window_start, which is only then moved.
            tx.exec_drop(
                "INSERT INTO login_failures (name, failures, window_start) VALUES (?, 1, ?) \
                 ON DUPLICATE KEY UPDATE \
                 failures = IF(window_start > ?, failures + 1, 1), \
                 window_start = IF(window_start > ?, window_start, ?)",
                (&name, now, since, since, now),
            )
            .await
            .map_err(e)?;
            let n: Option<u32> = tx
                .exec_first(
                    "SELECT failures FROM login_failures WHERE name = ?",
                    (name,),
                )
                .await
                .map_err(e)?;
            tx.commit().await.map_err(e)?;
            Ok(n.unwrap_or(1))
        }))
    }

    fn login_failures_clear<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let what = "login failures clear";
        let name = name.to_owned();
        Box::pin(self.run(what, move |mut c| async move {
            c.exec_drop("DELETE FROM login_failures WHERE name = ?", (name,))
                .await
                .map_err(|e| classify(e, what))
        }))
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
