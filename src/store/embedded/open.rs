//! Opening the SQLite file: connections, WAL mode, and schema migrations.

use crate::store::{migrations, now_ms, StoreError, StoreResult};
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::Duration;

pub(super) fn connect(path: &Path, timeout: Duration, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(timeout)?;
        if !read_only {
            // WAL lets readers run beside the writer; FULL makes an acknowledged write
            // survive a power cut, not only a crash.
            enter_wal(&conn, timeout)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    };
    open().map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))
}

/// Puts the database in WAL mode. Switching needs the file to itself, and SQLite
/// answers "locked" at once, without its busy handler, while another connection
/// holds a lock (another node of the same folder creating or migrating it), so the
/// switch is retried with backoff for up to `timeout`. A file already in WAL mode
/// is left as it is.
fn enter_wal(conn: &Connection, timeout: Duration) -> rusqlite::Result<()> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let mode = conn
            .pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                }
            });
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!(
                        "the file system does not allow WAL mode (journal_mode is {mode})"
                    )),
                ))
            }
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && start.elapsed() + pause < timeout =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let steps: Vec<_> = migrations::SQLITE
        .iter()
        .map(|m| (m.version, m.name, m.statements()))
        .collect();
    migrate_plan(conn, None, &steps)
}

/// Version, name and statements of one migration step.
pub(super) type Step = (u32, &'static str, Vec<String>);

/// Applies the missing `steps` of the DSF schema (`app: None`) or of an application.
pub(super) fn migrate_plan(
    conn: &mut Connection,
    app: Option<&str>,
    steps: &[Step],
) -> rusqlite::Result<()> {
    // BEGIN IMMEDIATE takes the database's write lock up front, so two processes
    // starting on one folder apply each migration once, one after the other.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: Vec<i64> = match app {
        None => {
            tx.execute(migrations::SCHEMA_TABLE, [])?;
            let mut stmt = tx.prepare("SELECT version FROM schema_migrations")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        }
        Some(app) => {
            tx.execute(crate::store::tables::APP_TABLE, [])?;
            let mut stmt = tx.prepare("SELECT version FROM app_migrations WHERE app = ?1")?;
            let rows = stmt.query_map([app], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        }
    };
    for (version, name, statements) in steps {
        if applied.contains(&i64::from(*version)) {
            continue;
        }
        for stmt in statements {
            tx.execute(stmt, [])?;
        }
        match app {
            None => tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, now_ms() as i64],
            )?,
            Some(app) => tx.execute(
                "INSERT INTO app_migrations (app, version, name, applied_at) VALUES (?1, ?2, ?3, ?4)",
                params![app, version, name, now_ms() as i64],
            )?,
        };
        tracing::info!(
            app = app.unwrap_or("dsf"),
            version,
            name,
            "applied migration"
        );
    }
    tx.commit()
}
