//! Versioned schema migrations, one list per backend.
//!
//! Each migration has a version, a name and a SQL script of `;`-separated statements
//! (static text compiled into the binary; no user input is ever part of it). A backend
//! records applied versions in a `schema_migrations` table and applies the missing
//! ones in order at start-up, under a lock that spans every node sharing the database:
//! `GET_LOCK` on MySQL, `BEGIN IMMEDIATE` on SQLite. Statements are written to be
//! idempotent (`IF NOT EXISTS`, or [`MYSQL_ALREADY_APPLIED`] for index DDL), so a migration interrupted half-way (MySQL DDL is not
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
    pub fn statements(&self) -> Vec<String> {
        split(self.sql)
    }
}

/// The statements of a `;`-separated script, without comments and empty pieces.
pub fn split(sql: &str) -> Vec<String> {
    sql.split(';')
        .filter_map(|piece| {
            let stmt: Vec<&str> = piece
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                .collect();
            (!stmt.is_empty()).then(|| stmt.join("\n"))
        })
        .collect()
}

/// MySQL/MariaDB migrations.
pub const MYSQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("mysql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "blacklist name order",
        sql: include_str!("mysql/0002_blacklist_name_order.sql"),
    },
];

/// SQLite migrations.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "blacklist name order",
        sql: include_str!("sqlite/0002_blacklist_name_order.sql"),
    },
];

/// MySQL error codes that mean an index statement was already applied: 1061
/// (duplicate key name) and 1091 (can't drop a key that is not there). Index DDL has
/// no portable `IF [NOT] EXISTS`, and MySQL DDL is not transactional, so a migration
/// interrupted after such a statement meets these when it is applied again.
pub const MYSQL_ALREADY_APPLIED: [u16; 2] = [1061, 1091];

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
                let stmts: Vec<String> = m.statements();
                assert!(!stmts.is_empty());
                assert!(stmts.iter().all(|s| !s.contains("--") && !s.ends_with(';')));
                // A `;` inside a comment would split it into a bogus statement.
                for s in &stmts {
                    let verb = s.split_whitespace().next().unwrap_or("");
                    assert!(
                        ["CREATE", "DROP", "ALTER", "INSERT"].contains(&verb),
                        "{}: {s}",
                        m.name
                    );
                }
            }
        }
        assert_eq!(MYSQL[0].statements().len(), 5);
    }
}
