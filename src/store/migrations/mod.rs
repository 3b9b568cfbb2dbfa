//! Versioned schema migrations, one list per backend.
//!
//! Each migration has a version, a name and a SQL script of `;`-separated statements
//! (static text compiled into the binary; no user input is ever part of it). A backend
//! records applied versions in a `schema_migrations` table and applies the missing
//! ones in order at start-up, under a lock that spans every node sharing the database:
//! `GET_LOCK` on MySQL, `BEGIN IMMEDIATE` on SQLite. Statements are written to be
//! idempotent (`IF NOT EXISTS`), so a migration interrupted half-way (MySQL DDL is not
//! transactional) is simply applied again on the next start.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version number.
    pub version: u32,
    /// Short description, recorded with the version.
    pub name: &'static str,
    /// The SQL script.
    pub sql: &'static str,
}

impl Migration {
    /// The script's statements, without comments and empty pieces.
    pub fn statements(&self) -> impl Iterator<Item = String> + '_ {
        self.sql.split(';').filter_map(|piece| {
            let stmt: Vec<&str> = piece
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                .collect();
            (!stmt.is_empty()).then(|| stmt.join("\n"))
        })
    }
}

/// MySQL/MariaDB migrations.
pub const MYSQL: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("mysql/0001_init.sql"),
}];

/// SQLite migrations.
pub const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("sqlite/0001_init.sql"),
}];

/// The `schema_migrations` table, in SQL both backends accept.
pub const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(128) NOT NULL, applied_at BIGINT NOT NULL)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_scripts_split() {
        for list in [MYSQL, SQLITE] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            for m in list {
                let stmts: Vec<String> = m.statements().collect();
                assert!(!stmts.is_empty());
                assert!(stmts.iter().all(|s| !s.contains("--") && !s.ends_with(';')));
            }
        }
        assert_eq!(MYSQL[0].statements().count(), 5);
    }
}
