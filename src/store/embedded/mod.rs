//! The embedded store: SQLite (bundled) in `node.data_dir`, so a node needs no server.
//!
//! One writer connection and a few reader connections on the same WAL-mode file:
//! SQLite allows one writer at a time but readers run beside it, so splitting them
//! keeps `blacklist.query` misses and session checks from queueing behind a write.
//! Every call runs on the runtime's blocking pool (SQLite blocks), bounded by
//! `store.query_timeout`; a call that overstays is answered `timeout` while the pool
//! thread finishes it. Several processes may open the same folder (`busy_timeout`
//! makes them take turns at writing), which is what lets nodes of one machine share
//! users, sessions and the blacklist.

mod open;
mod tables;

use open::{connect, migrate, migrate_plan, Step};

use super::migrations;
use super::{
    deadline, now_ms, search_sql, Entry, NewReport, ReportOutcome, Row, SearchFilter,
    SessionRecord, SqlValue, Store, StoreError, StoreResult, StoreStats, Tables, UserRecord,
};
use crate::config::StoreConfig;
use crate::runtime::{self, BoxFuture};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// File name of the database inside the data folder.
pub const DB_FILE: &str = "dsf.sqlite3";

/// Reader connections. Four covers the blocking pool's share a node gives to reads on
/// two to eight cores; more only adds page-cache copies.
const READERS: usize = 4;

/// The embedded SQLite store.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes (SQLite has one writer at a time anyway).
    writer: Mutex<Connection>,
    /// Read-only connections, picked round-robin, a busy one skipped.
    readers: Vec<Mutex<Connection>>,
    /// Round-robin cursor over `readers`.
    next: AtomicUsize,
    /// Deadline of one call.
    timeout: Duration,
    /// Counters.
    stats: StoreStats,
    /// The database file, for logs.
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `data_dir/dsf.sqlite3` and applies migrations.
    pub async fn open(data_dir: &Path, cfg: &StoreConfig) -> StoreResult<EmbeddedStore> {
        let dir = data_dir.to_owned();
        let timeout = cfg.query_timeout;
        let inner = runtime::blocking(move || -> StoreResult<Inner> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
            let path = dir.join(DB_FILE);
            let mut writer = connect(&path, timeout, false)?;
            migrate(&mut writer).map_err(|e| classify(e, "migrations"))?;
            let readers = (0..READERS)
                .map(|_| connect(&path, timeout, true).map(Mutex::new))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Inner {
                writer: Mutex::new(writer),
                readers,
                next: AtomicUsize::new(0),
                timeout,
                stats: StoreStats::default(),
                path,
            })
        })
        .await?;
        tracing::info!(path = %inner.path.display(), "embedded store open");
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// Runs `f` on a reader connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        let job = runtime::blocking(move || {
            let n = inner.readers.len();
            let start = inner.next.fetch_add(1, Ordering::Relaxed);
            let free = (0..n).find_map(|i| inner.readers[(start + i) % n].try_lock().ok());
            let conn = match free {
                Some(c) => c,
                None => lock(&inner.readers[start % n]),
            };
            f(&conn).map_err(|e| classify(e, what))
        });
        self.finish(what, job).await
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        let job = runtime::blocking(move || {
            let mut conn = lock(&inner.writer);
            f(&mut conn).map_err(|e| classify(e, what))
        });
        self.finish(what, job).await
    }

    async fn finish<T>(
        &self,
        what: &'static str,
        job: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let r = deadline(self.inner.timeout, what, job).await;
        self.inner.stats.counted(r)
    }
}

/// Locks a connection; a panic while holding it left no half-done transaction behind
/// (rusqlite rolls back on drop), so a poisoned mutex is still usable.
fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps a SQLite error to what callers act on.
fn classify(e: rusqlite::Error, what: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(what),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Timeout(what),
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => StoreError::Unavailable(format!("{what}: {e}")),
        _ => StoreError::Other(format!("{what}: {e}")),
    }
}

fn exactly_one(changed: usize, what: &'static str) -> rusqlite::Result<Result<(), StoreError>> {
    Ok(if changed == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    })
}

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn migrate_tables<'a>(&'a self, tables: &'a Tables) -> BoxFuture<'a, StoreResult<()>> {
        let steps: Vec<Step> = tables
            .migrations
            .iter()
            .map(|m| (m.version, m.name, migrations::split(m.sqlite)))
            .collect();
        let app = tables.app;
        Box::pin(self.write("migrations", move |c| migrate_plan(c, Some(app), &steps)))
    }

    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        let sql = sql.to_owned();
        Box::pin(self.write(tables::WHAT, move |c| tables::execute(c, &sql, params)))
    }

    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: Vec<SqlValue>,
    ) -> BoxFuture<'a, StoreResult<Vec<Row>>> {
        let sql = sql.to_owned();
        Box::pin(self.read(tables::WHAT, move |c| tables::query(c, &sql, params)))
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.read("ping", |c| c.query_row("SELECT 1", [], |_| Ok(()))))
    }

    fn create_user<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        Box::pin(async move {
            self.write("user name", move |c| {
                c.prepare_cached(
                    "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![name, hash, now_ms() as i64])?;
                Ok(c.last_insert_rowid() as u64)
            })
            .await
        })
    }

    fn user_by_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<Option<UserRecord>>> {
        let name = name.to_owned();
        Box::pin(self.read("user by name", move |c| {
            c.prepare_cached("SELECT id, name, password_hash FROM users WHERE name = ?1")?
                .query_row([name], |r| {
                    Ok(UserRecord {
                        id: r.get::<_, i64>(0)? as u64,
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                })
                .optional()
        }))
    }

    fn blacklist_insert<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        let (id_card, name) = (id_card.to_owned(), name.to_owned());
        Box::pin(self.write("id_card", move |c| {
            let now = now_ms() as i64;
            c.prepare_cached(
                "INSERT INTO blacklist (id_card, name, created, updated) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![id_card, name, now])?;
            Ok(c.last_insert_rowid() as u64)
        }))
    }

    fn blacklist_update<'a>(
        &'a self,
        id_card: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let (id_card, name) = (id_card.to_owned(), name.to_owned());
        Box::pin(async move {
            self.write("blacklist entry", move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE blacklist SET name = ?2, updated = ?3 WHERE id_card = ?1",
                    )?
                    .execute(params![id_card, name, now_ms() as i64])?;
                exactly_one(n, "blacklist entry")
            })
            .await?
        })
    }

    fn blacklist_delete<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let id_card = id_card.to_owned();
        Box::pin(async move {
            self.write("blacklist entry", move |c| {
                let n = c
                    .prepare_cached("DELETE FROM blacklist WHERE id_card = ?1")?
                    .execute([id_card])?;
                exactly_one(n, "blacklist entry")
            })
            .await?
        })
    }

    fn blacklist_get<'a>(&'a self, id_card: &'a str) -> BoxFuture<'a, StoreResult<Option<String>>> {
        self.inner
            .stats
            .blacklist_reads
            .fetch_add(1, Ordering::Relaxed);
        let id_card = id_card.to_owned();
        Box::pin(self.read("blacklist get", move |c| {
            c.prepare_cached("SELECT name FROM blacklist WHERE id_card = ?1")?
                .query_row([id_card], |r| r.get(0))
                .optional()
        }))
    }

    fn blacklist_search<'a>(
        &'a self,
        filter: &'a SearchFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<Entry>>> {
        let f = filter.clone();
        Box::pin(self.read("blacklist search", move |c| {
            let (sql, text) = search_sql(&f);
            let mut stmt = c.prepare_cached(&sql)?;
            let mut params: Vec<rusqlite::types::Value> =
                text.into_iter().map(rusqlite::types::Value::Text).collect();
            params.push(rusqlite::types::Value::Integer(i64::from(f.limit)));
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                Ok(Entry {
                    id_card: r.get(0)?,
                    name: r.get(1)?,
                })
            })?;
            rows.collect()
        }))
    }

    fn report<'a>(&'a self, report: &'a NewReport) -> BoxFuture<'a, StoreResult<ReportOutcome>> {
        let r = report.clone();
        Box::pin(self.write("report", move |c| {
            // IMMEDIATE: a deferred transaction that reads first cannot wait for the
            // write lock if another process commits meanwhile (SQLITE_BUSY at once).
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let listed = tx
                .prepare_cached("SELECT 1 FROM blacklist WHERE id_card = ?1")?
                .query_row([&r.id_card], |_| Ok(()))
                .optional()?
                .is_some();
            tx.prepare_cached(
                "INSERT INTO reports (reporter, id_card, name, source, created, listed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                r.reporter as i64,
                r.id_card,
                r.name,
                r.source,
                now_ms() as i64,
                listed
            ])?;
            let report_id = tx.last_insert_rowid() as u64;
            tx.commit()?;
            Ok(ReportOutcome { report_id, listed })
        }))
    }

    fn session_create<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: u64,
        expires_at_ms: u64,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let token_hash = token_hash.to_owned();
        Box::pin(self.write("session", move |c| {
            let now = now_ms() as i64;
            // Expired sessions are swept a few at a time as new ones arrive, so the
            // table stays bounded without a background job.
            c.prepare_cached(
                "DELETE FROM sessions WHERE token_hash IN \
                 (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT 16)",
            )?
            .execute([now])?;
            c.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, created, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![token_hash, user_id as i64, now, expires_at_ms as i64])?;
            Ok(())
        }))
    }

    fn session_get<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<SessionRecord>>> {
        let token_hash = token_hash.to_owned();
        Box::pin(self.read("session get", move |c| {
            c.prepare_cached(
                "SELECT s.user_id, u.name, s.expires_at FROM sessions s \
                 JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )?
            .query_row(params![token_hash, now_ms() as i64], |r| {
                Ok(SessionRecord {
                    user_id: r.get::<_, i64>(0)? as u64,
                    name: r.get(1)?,
                    expires_at_ms: r.get::<_, i64>(2)? as u64,
                })
            })
            .optional()
        }))
    }

    fn session_delete<'a>(&'a self, token_hash: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let token_hash = token_hash.to_owned();
        Box::pin(self.write("session delete", move |c| {
            c.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([token_hash])?;
            Ok(())
        }))
    }

    fn login_failures<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let name = name.to_owned();
        Box::pin(self.read("login failures", move |c| {
            let since = now_ms().saturating_sub(window.as_millis() as u64) as i64;
            let n: Option<i64> = c
                .prepare_cached(
                    "SELECT failures FROM login_failures WHERE name = ?1 AND window_start > ?2",
                )?
                .query_row(params![name, since], |r| r.get(0))
                .optional()?;
            Ok(n.unwrap_or(0) as u32)
        }))
    }

    fn login_failure_record<'a>(
        &'a self,
        name: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let name = name.to_owned();
        Box::pin(self.write("login failure", move |c| {
            let now = now_ms() as i64;
            let since = now - window.as_millis() as i64;
            // A window that has passed restarts at one; otherwise the count grows.
            c.prepare_cached(
                "INSERT INTO login_failures (name, failures, window_start) VALUES (?1, 1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET \
                 failures = CASE WHEN window_start > ?3 THEN failures + 1 ELSE 1 END, \
                 window_start = CASE WHEN window_start > ?3 THEN window_start ELSE ?2 END \
                 RETURNING failures",
            )?
            .query_row(params![name, now, since], |r| r.get::<_, i64>(0))
            .map(|n| n as u32)
        }))
    }

    fn login_failures_clear<'a>(&'a self, name: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(self.write("login failures clear", move |c| {
            c.prepare_cached("DELETE FROM login_failures WHERE name = ?1")?
                .execute([name])?;
            Ok(())
        }))
    }

    fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }
}

#[cfg(test)]
mod tests;
