//! An application's own tables and queries on MySQL ([`super::super::Tables`]).

use super::{classify, MySqlStore, Plan};
use crate::store::tables::{Row, SqlValue, Tables};
use crate::store::{migrations, StoreResult};
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Value};

/// What an application's statements are called in logs and errors.
const WHAT: &str = "application query";

impl MySqlStore {
    pub(super) async fn migrate_app(&self, tables: &Tables) -> StoreResult<()> {
        self.migrate_plan(Plan {
            app: Some(tables.app),
            steps: tables
                .migrations
                .iter()
                .map(|m| (m.version, m.name, migrations::split(m.mysql)))
                .collect(),
        })
        .await
    }

    pub(super) async fn execute_app(&self, sql: &str, params: Vec<SqlValue>) -> StoreResult<u64> {
        let sql = sql.to_owned();
        self.run(WHAT, move |mut c| async move {
            c.exec_drop(sql, to_params(params))
                .await
                .map_err(|e| classify(e, WHAT))?;
            Ok(c.affected_rows())
        })
        .await
    }

    pub(super) async fn query_app(
        &self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> StoreResult<Vec<Row>> {
        let sql = sql.to_owned();
        self.run(WHAT, move |mut c| async move {
            let rows: Vec<mysql_async::Row> = c
                .exec(sql, to_params(params))
                .await
                .map_err(|e| classify(e, WHAT))?;
            Ok(rows
                .into_iter()
                .map(|r| r.unwrap().into_iter().map(from_value).collect())
                .collect())
        })
        .await
    }
}

fn to_params(params: Vec<SqlValue>) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .into_iter()
            .map(|p| match p {
                SqlValue::Null => Value::NULL,
                SqlValue::Int(i) => Value::Int(i),
                SqlValue::Float(f) => Value::Double(f),
                SqlValue::Text(s) => Value::Bytes(s.into_bytes()),
                SqlValue::Bytes(b) => Value::Bytes(b),
            })
            .collect(),
    )
}

fn from_value(v: Value) -> SqlValue {
    match v {
        Value::NULL => SqlValue::Null,
        Value::Int(i) => SqlValue::Int(i),
        Value::UInt(u) => i64::try_from(u).map_or(SqlValue::Float(u as f64), SqlValue::Int),
        Value::Float(f) => SqlValue::Float(f64::from(f)),
        Value::Double(f) => SqlValue::Float(f),
        // Text columns arrive as bytes; `SqlValue::as_str` reads them as text.
        Value::Bytes(b) => SqlValue::Bytes(b),
        other => SqlValue::Text(other.as_sql(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_driver_shape() {
        let p = to_params(vec![SqlValue::from("k"), SqlValue::Int(-3), SqlValue::Null]);
        let Params::Positional(v) = p else {
            panic!("positional")
        };
        let back: Vec<SqlValue> = v.into_iter().map(from_value).collect();
        assert_eq!(back[0].as_str(), Some("k"));
        assert_eq!(back[1], SqlValue::Int(-3));
        assert_eq!(back[2], SqlValue::Null);
        assert_eq!(to_params(Vec::new()), Params::Empty);
    }
}
