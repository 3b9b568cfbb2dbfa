//! A client of one address (a proxy port or a node) that moves to a new connection
//! when the server announces `goaway` (PROTOCOL §7) or closes the current one.
//!
//! Requests already written on a connection that received `goaway` are answered on
//! it; a request the notice stopped before it was written goes on the next
//! connection, whatever the operation, since the server never saw it.

use super::{CallOptions, ClientError, Connection};
use crate::protocol::Response;
use crate::tls::Connector;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Attempts per call: a request stopped by `goaway` is tried on a fresh connection.
const MAX_ATTEMPTS: usize = 3;

/// A self-renewing connection to one address; share it between tasks.
pub struct Reconnecting {
    /// Where to connect (host:port).
    addr: String,
    /// Bound on connecting and on each call.
    timeout: Duration,
    /// TLS to the server; `None` = plain TCP.
    tls: Option<Connector>,
    /// The connection new requests use; replaced once it is no longer usable.
    current: async_lock::Mutex<Option<Arc<Connection>>>,
    /// Connections opened after the first, for reports.
    reconnects: AtomicU64,
}

impl Reconnecting {
    /// A client of `addr`; connects on first use.
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Reconnecting {
        Reconnecting {
            addr: addr.into(),
            timeout,
            tls: None,
            current: async_lock::Mutex::new(None),
            reconnects: AtomicU64::new(0),
        }
    }

    /// Speaks TLS, verifying the server with `tls`.
    pub fn with_tls(mut self, tls: Connector) -> Reconnecting {
        self.tls = Some(tls);
        self
    }

    /// How many times a new connection replaced one that went away.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Calls `op` with `body` on the current connection, or a new one if it went away.
    pub async fn call(
        &self,
        op: &str,
        body: Value,
        opts: &CallOptions,
    ) -> Result<Response, ClientError> {
        let mut last = ClientError::GoneAway;
        for _ in 0..MAX_ATTEMPTS {
            let conn = self.connection().await?;
            match conn
                .call_timeout(op, body.clone(), opts, self.timeout)
                .await
            {
                Err(e) if e.never_sent() => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    /// The connection for the next request: the current one while it is usable.
    pub async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.current.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.is_usable() {
                return Ok(c.clone());
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // Dropping the old handle closes it once its last answers are collected.
        *slot = None;
        let c = Connection::connect_with(&self.addr, self.timeout, self.tls.as_ref()).await?;
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }
}
