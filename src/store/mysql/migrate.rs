//! Schema migrations on MySQL: the DSF schema's and each application's, applied under
//! an advisory lock that spans every node sharing the database.

use super::{classify, deadline, MySqlStore, MIGRATION_LOCK, MIGRATION_TIMEOUT};
use crate::store::{migrations, now_ms, StoreError, StoreResult};
use async_compat::Compat;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

impl MySqlStore {
    pub(super) async fn migrate(&self) -> StoreResult<()> {
        self.migrate_plan(Plan {
            app: None,
            steps: migrations::MYSQL
                .iter()
                .map(|m| (m.version, m.name, m.statements()))
                .collect(),
        })
        .await
    }

    /// Applies the missing steps of `plan` under the lock that spans every node
    /// sharing the database.
    pub(super) async fn migrate_plan(&self, plan: Plan) -> StoreResult<()> {
        let what = "migrations";
        // Migrations may take longer than one query: bound them by the start-up wait.
        let fut = async {
            let mut c = self.conn(what).await?;
            let e = |e| classify(e, what);
            let got: Option<i64> = c
                .exec_first("SELECT GET_LOCK(?, ?)", (MIGRATION_LOCK, 60))
                .await
                .map_err(e)?;
            if got != Some(1) {
                return Err(StoreError::Timeout(what));
            }
            let result = apply_plan(&mut c, &plan).await.map_err(e);
            // The lock also goes when the connection closes, so a failed release is harmless.
            let _ = c
                .exec_drop("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
                .await;
            result
        };
        deadline(MIGRATION_TIMEOUT, what, Compat::new(fut)).await
    }
}

/// Migrations to apply: the DSF schema's (`app: None`) or an application's.
pub(super) struct Plan {
    /// The application, recorded in `app_migrations`; `None` for `schema_migrations`.
    pub(super) app: Option<&'static str>,
    /// Version, name and statements of each step, in order.
    pub(super) steps: Vec<(u32, &'static str, Vec<String>)>,
}

async fn apply_plan(c: &mut Conn, plan: &Plan) -> mysql_async::Result<()> {
    let applied: Vec<i64> = match plan.app {
        None => {
            c.query_drop(migrations::SCHEMA_TABLE).await?;
            c.exec("SELECT version FROM schema_migrations", ()).await?
        }
        Some(app) => {
            c.query_drop(crate::store::tables::APP_TABLE).await?;
            c.exec("SELECT version FROM app_migrations WHERE app = ?", (app,))
                .await?
        }
    };
    for (version, name, statements) in &plan.steps {
        if applied.contains(&i64::from(*version)) {
            continue;
        }
        for stmt in statements {
            match c.query_drop(stmt).await {
                Err(mysql_async::Error::Server(e))
                    if migrations::MYSQL_ALREADY_APPLIED.contains(&e.code) =>
                {
                    tracing::info!(statement = %stmt, "already applied");
                }
                r => r?,
            }
        }
        match plan.app {
            None => {
                c.exec_drop(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_ms()),
                )
                .await?
            }
            Some(app) => {
                c.exec_drop(
                    "INSERT INTO app_migrations (app, version, name, applied_at) VALUES (?, ?, ?, ?)",
                    (app, version, name, now_ms()),
                )
                .await?
            }
        }
        tracing::info!(
            app = plan.app.unwrap_or("dsf"),
            version,
            name,
            "applied migration"
        );
    }
    Ok(())
}
