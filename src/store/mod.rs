//! The persistent store: users, sessions, the blacklist and collector reports.
//!
//! Two backends implement [`Store`]: [`mysql::MySqlStore`] (a `mysql_async` pool) for
//! production and [`embedded::EmbeddedStore`] (SQLite in `node.data_dir`) as the
//! default that needs no server. [`open`] picks one from the configuration and applies
//! the schema [`migrations`] before returning it.
//!
//! # Why a trait object with boxed futures
//!
//! The node holds the store as `Arc<dyn Store>`: handlers, the session verifier and
//! tests share one value without being generic over the backend, and a new backend (or
//! a wrapper that counts or injects faults) plugs in without touching them. `async fn`
//! in traits is not object-safe, so each method returns a [`BoxFuture`]; the one
//! allocation per call is noise next to a network round trip or a hop to the blocking
//! pool, which every call makes anyway. A closed enum would save that allocation but
//! would make every new backend an edit of this file.

pub mod embedded;
pub mod migrations;
pub mod mysql;

use crate::config::Config;
use crate::runtime::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Why a store operation failed. The variants are what callers act on; the strings
/// are for the log only (they may hold driver messages) and never reach a client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached or refused the connection.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within `store.query_timeout`.
    #[error("store timeout: {0}")]
    Timeout(&'static str),
    /// A unique key is taken (user name, blacklisted id_card).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The row named does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Anything else (a bug, a schema mismatch, a corrupt file).
    #[error("store: {0}")]
    Other(String),
}

/// A registered user as the login path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Numeric id.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
}

/// One blacklist entry as the protocol shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The listed identity card number.
    pub id_card: String,
    /// The listed person's name.
    pub name: String,
}

/// What `blacklist.search` filters on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Entries whose name starts with this (taken literally, no wildcards).
    pub name_prefix: Option<String>,
    /// Only the entry with exactly this id_card.
    pub id_card: Option<String>,
    /// At most this many entries, ordered by id_card.
    pub limit: u32,
}

/// A collector's sighting to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// The reporting user's id.
    pub reporter: u64,
    /// The sighted id_card.
    pub id_card: String,
    /// The sighted name.
    pub name: String,
    /// Where the sighting came from, if the collector said.
    pub source: Option<String>,
}

/// The outcome of recording a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The new report's id.
    pub report_id: u64,
    /// Whether the id_card was listed when the report was recorded.
    pub listed: bool,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's user.
    pub user_id: u64,
    /// The user's name.
    pub name: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Counters a backend keeps about itself (for tests, logs and metrics).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// `blacklist_get` calls that reached the backend (the cache's misses).
    pub blacklist_reads: AtomicU64,
    /// Operations that failed as unavailable or timed out.
    pub failures: AtomicU64,
}

impl StoreStats {
    /// Current value of [`blacklist_reads`](Self::blacklist_reads).
    pub fn blacklist_reads(&self) -> u64 {
        self.blacklist_reads.load(Ordering::Relaxed)
    }
}

/// Connection-pool occupancy at one moment (metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections handed out to requests.
    pub in_use: u64,
    /// Open connections waiting in the pool.
    pub idle: u64,
    /// Requests waiting for a connection.
    pub waiting: u64,
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The persistent store. Every method either finishes within `store.query_timeout` or
/// fails with [`StoreError::Timeout`]; none hangs when the backend is gone.
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`"mysql"`, `"embedded"`), for logs.
    fn kind(&self) -> &'static str;

    /// Cheap liveness check (readiness probes).
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Creates a user; [`StoreError::Conflict`] if the name is taken.
    fn create_user<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>>;

    /// The user named `name`, if any.
    fn user_by_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<UserRecord>>>;

    /// Lists `id_card`; [`StoreError::Conflict`] if it is listed already.
    fn blacklist_insert<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>>;

    /// Renames a listed entry; [`StoreError::NotFound`] if absent.
    fn blacklist_update<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Unlists `id_card`; [`StoreError::NotFound`] if absent.
    fn blacklist_delete<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// The listed name for `id_card`, if listed.
    fn blacklist_get<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<Option<String>>>;

    /// Entries matching `filter`, ordered by id_card.
    fn blacklist_search<'a>(
        &'a self,
        filter: &'a SearchFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<Entry>>>;

    /// Records a sighting and says whether the id_card is listed, in one transaction.
    fn report<'a>(&'a self, report: &'a NewReport) -> BoxFuture<'a, StoreResult<ReportOutcome>>;

    /// Stores a session under the hash of its token.
    fn session_create<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: u64,
        expires_at_ms: u64,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The unexpired session stored under `token_hash`.
    fn session_get<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>>;

    /// Deletes the session (logout); deleting an absent one is not an error.
    fn session_delete<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// Failed logins recorded for `name` in the current window.
    fn login_failures<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>>;

    /// Records one failed login for `name`, starting a new window if the old one passed;
    /// returns the count in the window.
    fn login_failure_record<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>>;

    /// Forgets the failed logins of `name` (after a successful login).
    fn login_failures_clear<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// The backend's counters.
    fn stats(&self) -> &StoreStats;

    /// Pool occupancy, for backends with a connection pool.
    fn pool_usage(&self) -> Option<PoolUsage> {
        None
    }
}

/// Opens the store the configuration names: MySQL when `store.url` is set, else the
/// embedded store in `node.data_dir`. Migrations are applied before it returns.
pub async fn open(cfg: &Config) -> StoreResult<Arc<dyn Store>> {
    if cfg.store.url.is_empty() {
        let store = embedded::EmbeddedStore::open(&cfg.node.data_dir, &cfg.store).await?;
        Ok(Arc::new(store))
    } else {
        let store = mysql::MySqlStore::open(&cfg.store).await?;
        Ok(Arc::new(store))
    }
}

/// Milliseconds since the Unix epoch (the store's clock for expiry and timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `fut`, failing with [`StoreError::Timeout`] after `limit`.
pub(crate) async fn deadline<T>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    futures_lite::future::or(fut, async move {
        async_io::Timer::after(limit).await;
        Err(StoreError::Timeout(what))
    })
    .await
}

/// Escapes `%`, `_` and `\` so that a user's prefix is matched literally by
/// `LIKE ? ESCAPE '\'`, and appends the `%` wildcard.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefix_is_literal() {
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
        assert_eq!(like_prefix(""), "%");
    }

    #[test]
    fn deadline_times_out() {
        let r: StoreResult<()> = smol::block_on(deadline(
            Duration::from_millis(10),
            "sleep",
            std::future::pending(),
        ));
        assert_eq!(r, Err(StoreError::Timeout("sleep")));
    }
}
