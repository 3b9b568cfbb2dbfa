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
pub mod tables;

pub use tables::{Row, SqlValue, TableMigration, Tables};

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

use crate::framework::error::IntoApiError;

/// A store failure as a client sees it: the kind of failure, never the driver's text.
impl IntoApiError for StoreError {
    fn into_api_error(self) -> crate::protocol::ApiError {
        use StoreError as E;
        match self {
            E::Conflict(what) => {
                crate::protocol::ApiError::conflict(format!("{what} already exists"))
            }
            E::NotFound(what) => crate::protocol::ApiError::not_found(format!("no such {what}")),
            E::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                crate::protocol::ApiError::unavailable(
                    "a backing store is unavailable; try again later",
                )
            }
            E::Timeout(what) => {
                tracing::warn!(op = what, "store timeout");
                crate::protocol::ApiError::new(
                    crate::protocol::ErrorCode::Timeout,
                    "the store did not answer in time",
                )
            }
            E::Other(detail) => crate::framework::error::internal("store", &detail),
        }
    }
}

impl From<StoreError> for crate::protocol::ApiError {
    fn from(e: StoreError) -> Self {
        e.into_api_error()
    }
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
    /// At most this many entries: in (name, id_card) order with a name prefix, else in
    /// id_card order.
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
    /// Point reads (session checks, `blacklist_get`) answered by batched statements.
    pub batched_reads: AtomicU64,
    /// Statements that answered them (fewer than the reads under load).
    pub batched_statements: AtomicU64,
}

impl StoreStats {
    /// Current value of [`blacklist_reads`](Self::blacklist_reads).
    pub fn blacklist_reads(&self) -> u64 {
        self.blacklist_reads.load(Ordering::Relaxed)
    }

    /// Counts `r` in [`failures`](Self::failures) when it is an outage (unavailable or
    /// timed out), and passes it on.
    pub fn counted<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Timeout(_) | StoreError::Unavailable(_)) = &r {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
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

    /// Takes new pool sizes (`store.pool_min`, `store.pool_max`) from a reloaded
    /// configuration; backends without a connection pool ignore them.
    fn resize<'a>(
        &'a self,
        _cfg: &'a crate::config::StoreConfig,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Applies an application's own migrations ([`Tables`]): each version once, across
    /// every node sharing the database.
    fn migrate_tables<'a>(&'a self, tables: &'a Tables) -> BoxFuture<'a, StoreResult<()>>;

    /// Runs one statement of an application's own with bound parameters (`?`);
    /// returns how many rows it changed. A unique key taken is [`StoreError::Conflict`].
    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<u64>>;

    /// Runs one query of an application's own with bound parameters (`?`).
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<Vec<Row>>>;

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

/// The SQL of a blacklist search (`?` placeholders, valid for SQLite and MySQL) and
/// its text parameters in order; the caller binds the limit after them.
///
/// A name prefix becomes the range `prefix <= name < successor(prefix)`, which the
/// `name` index serves and which is exact and case-sensitive on both backends (their
/// text compares bytewise: VARBINARY, SQLite's BINARY collation; UTF-8 byte order is
/// code point order). Only the filters given appear in the SQL, so every one of them
/// can use its index (`x IS NULL OR …` would hide it from the planner). With a prefix
/// the entries come in (name, id_card) order, which the `(name, id_card)` index gives
/// directly, so a search reads `limit` entries however many match; without one, in
/// id_card order.
pub(crate) fn search_sql(filter: &SearchFilter) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    let mut by_name = false;
    if let Some(id) = &filter.id_card {
        conds.push("id_card = ?");
        params.push(id.clone());
    }
    if let Some(prefix) = filter.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        by_name = true;
        conds.push("name >= ?");
        params.push(prefix.to_owned());
        if let Some(upper) = prefix_successor(prefix) {
            conds.push("name < ?");
            params.push(upper);
        }
    }
    let mut sql = String::from("SELECT id_card, name FROM blacklist");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(if by_name {
        " ORDER BY name, id_card LIMIT ?"
    } else {
        " ORDER BY id_card LIMIT ?"
    });
    (sql, params)
}

/// The least string greater than every string that starts with `prefix` (its last
/// character that is not U+10FFFF, incremented, with what follows it dropped), or
/// `None` when there is none (`prefix` is empty or all U+10FFFF).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_bounds_exactly_the_strings_with_the_prefix() {
        assert_eq!(prefix_successor("Smith 1").as_deref(), Some("Smith 2"));
        assert_eq!(prefix_successor("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_successor(""), None);
        // Byte order (how both stores compare) agrees with the definition.
        let words = [
            "",
            "S",
            "Sm",
            "Smith",
            "Smith 1",
            "Smith 10",
            "Smith 1\u{10FFFF}x",
            "Smith 2",
            "smith 1",
            "Smith 1é",
            "Smith 1😀",
            "Smith 0\u{10FFFF}",
        ];
        for prefix in words {
            let upper = prefix_successor(prefix);
            for w in words {
                let in_range = w.as_bytes() >= prefix.as_bytes()
                    && upper.as_deref().is_none_or(|u| w.as_bytes() < u.as_bytes());
                assert_eq!(in_range, w.starts_with(prefix), "{w:?} / {prefix:?}");
            }
        }
    }

    #[test]
    fn search_sql_names_only_the_filters_given() {
        let f = |name: Option<&str>, id: Option<&str>| SearchFilter {
            name_prefix: name.map(str::to_owned),
            id_card: id.map(str::to_owned),
            limit: 5,
        };
        let all = "SELECT id_card, name FROM blacklist ORDER BY id_card LIMIT ?";
        assert_eq!(search_sql(&f(None, None)), (all.to_owned(), vec![]));
        assert_eq!(search_sql(&f(Some(""), None)), (all.to_owned(), vec![]));
        let (sql, params) = search_sql(&f(Some("Sm"), Some("X")));
        assert_eq!(
            sql,
            "SELECT id_card, name FROM blacklist WHERE id_card = ? AND name >= ? \
             AND name < ? ORDER BY name, id_card LIMIT ?"
        );
        assert_eq!(params, ["X", "Sm", "Sn"]);
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
