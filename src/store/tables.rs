//! An application's own tables: versioned migrations per backend, and plain SQL with
//! bound parameters over whichever backend the node runs on.
//!
//! The DSF schema has its own list ([`super::migrations`]); an application's versions
//! are recorded apart from it, per application, in `app_migrations`, so that two
//! services sharing one database never collide on a version number.

/// One schema change of an application, in the SQL of each backend.
#[derive(Debug, Clone, Copy)]
pub struct TableMigration {
    /// Strictly increasing version number, within the application.
    pub version: u32,
    /// Short description, recorded with the version.
    pub name: &'static str,
    /// The MySQL/MariaDB script (`;`-separated statements).
    pub mysql: &'static str,
    /// The SQLite script (`;`-separated statements).
    pub sqlite: &'static str,
}

/// The tables an application declares.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// The application's name, under which its versions are recorded.
    pub app: &'static str,
    /// Its migrations, in version order.
    pub migrations: &'static [TableMigration],
}

/// The record of applied application migrations, in SQL both backends accept.
pub const APP_TABLE: &str = "CREATE TABLE IF NOT EXISTS app_migrations (\
     app VARCHAR(64) NOT NULL, version BIGINT NOT NULL, name VARCHAR(128) NOT NULL, \
     applied_at BIGINT NOT NULL, PRIMARY KEY (app, version))";

/// A parameter or a column value of an application's query.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes that are not text.
    Bytes(Vec<u8>),
}

impl SqlValue {
    /// The value as text, if it is text (or UTF-8 bytes: MySQL sends text columns so).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            SqlValue::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(i: i64) -> Self {
        SqlValue::Int(i)
    }
}

/// One row of a query's answer, columns in the order selected.
pub type Row = Vec<SqlValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_back_from_either_backend_shape() {
        assert_eq!(SqlValue::from("v").as_str(), Some("v"));
        assert_eq!(SqlValue::Bytes(b"v".to_vec()).as_str(), Some("v"));
        assert_eq!(SqlValue::Int(3).as_str(), None);
        assert_eq!(SqlValue::from(3).as_i64(), Some(3));
    }
}
