//! An application's own statements and queries on SQLite.

use crate::store::tables::{Row, SqlValue};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ToSql};

/// What an application's statements are called in logs and errors.
pub(super) const WHAT: &str = "application query";

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            SqlValue::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            SqlValue::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            SqlValue::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Runs one statement; the number of rows it changed.
pub(super) fn execute(
    c: &mut Connection,
    sql: &str,
    params: Vec<SqlValue>,
) -> rusqlite::Result<u64> {
    let mut stmt = c.prepare_cached(sql)?;
    Ok(stmt.execute(params_from_iter(params.iter()))? as u64)
}

/// Runs one query; its rows.
pub(super) fn query(
    c: &Connection,
    sql: &str,
    params: Vec<SqlValue>,
) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = c.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
        (0..columns)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(i) => SqlValue::Int(i),
                    ValueRef::Real(f) => SqlValue::Float(f),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Bytes(b.to_vec()),
                })
            })
            .collect()
    })?;
    rows.collect()
}
