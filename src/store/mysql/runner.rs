//! Running one store operation whole on the driver's tokio thread.
//!
//! `mysql_async` needs tokio: its sockets are registered with a tokio reactor and its
//! pool returns connections through a recycler task. Polled from a node's loop
//! thread inside [`async_compat::Compat`], every query crossed threads several times:
//! the reactor (on async-compat's tokio thread) woke the loop for each reply, each
//! returned connection woke the recycler there, and the recycler woke the next
//! waiter back on a loop. Under load those hops, not MariaDB, set the rate, which is
//! why it stayed flat from 16 connections up (BENCHMARKS.md, "Round 2"). Spawned onto
//! that runtime, an operation takes its connection, runs its statements, and returns
//! the connection on one thread; the loop only hands it over and collects the answer.

use super::{classify, MySqlStore};
use crate::store::{StoreError, StoreResult};
use mysql_async::{Conn, Pool};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

impl MySqlStore {
    /// Runs `op` with a pooled connection on the driver's runtime, bounded by
    /// `acquire_timeout` for the connection and `query_timeout` for the whole,
    /// counting failures.
    pub(super) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let pool = self.pool();
        let acquire = self.acquire_timeout;
        // The deadline runs on the driver's thread too, with tokio's timer: an
        // async-io timer here would wake async-io's reactor on every operation.
        let deadline = tokio::time::Instant::now() + self.query_timeout;
        let task = self.runtime.spawn(async move {
            let run = async move { op(take(&pool, acquire, what).await?).await };
            // On time-out the operation is dropped here, on the driver's thread, and
            // its connection goes back through the pool's cleanup.
            tokio::time::timeout_at(deadline, run)
                .await
                .unwrap_or(Err(StoreError::Timeout(what)))
        });
        self.stats.counted(Spawned { task, what }.await)
    }
}

/// A pooled connection within `acquire`, on the driver's runtime; `what` names the
/// operation in the error.
pub(super) async fn take(pool: &Pool, acquire: Duration, what: &'static str) -> StoreResult<Conn> {
    match tokio::time::timeout(acquire, pool.get_conn()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify(e, what)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "{what}: no connection within {acquire:?}"
        ))),
    }
}

/// An operation spawned on the driver's runtime; dropping it (the request was
/// abandoned) aborts it.
struct Spawned<T> {
    task: tokio::task::JoinHandle<StoreResult<T>>,
    what: &'static str,
}

impl<T> Future for Spawned<T> {
    type Output = StoreResult<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<StoreResult<T>> {
        let what = self.what;
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|e| Err(StoreError::Other(format!("{what}: {e}")))))
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
