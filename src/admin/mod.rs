//! The admin HTTP listener: `/metrics`, `/healthz`, `/readyz`, and a status page.
//!
//! It is for operators and their tools, so it binds to loopback by default
//! (`admin.listen`), answers only GET, and is served with hyper on the same smol
//! runtime as everything else.

use crate::runtime::{BoxFuture, Runtime, Shutdown};
use crate::tls::Acceptor;
use futures_lite::future;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whether the process should receive traffic, and why not.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Per-check details, e.g. `{"store": "ok", "cache": "unreachable"}`.
    pub checks: Value,
}

/// What a node or balancer exposes to the admin listener.
pub trait AdminApp: Send + Sync + 'static {
    /// `/readyz`: checks dependencies (stores, registration, healthy nodes).
    fn readiness(&self) -> BoxFuture<'static, Readiness>;
    /// `/status.json`: the data behind the status page; `None` if there is none.
    fn status(&self) -> Option<Value> {
        None
    }
    /// `/`: a self-contained HTML page; `None` if there is none.
    fn page(&self) -> Option<&'static str> {
        None
    }
}

/// One readiness check (a store, the cache, the balancer registration).
pub trait Check: Send + Sync + 'static {
    /// Name in the `/readyz` body.
    fn name(&self) -> &'static str;
    /// `Ok` when healthy, otherwise why not (no internals: this is shown to operators
    /// but may be scraped by anything that reaches the admin port).
    fn check(&self) -> BoxFuture<'static, Result<(), String>>;
}

/// Longest a single readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A process's readiness checks and optional status view.
#[derive(Default)]
pub struct Checks {
    /// Run concurrently on every `/readyz`.
    pub checks: Vec<Arc<dyn Check>>,
    /// `/status.json` source.
    pub status: Option<Box<dyn Fn() -> Value + Send + Sync>>,
    /// `/` page.
    pub page: Option<&'static str>,
}

impl AdminApp for Checks {
    fn readiness(&self) -> BoxFuture<'static, Readiness> {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| {
                let name = c.name();
                let fut = c.check();
                async move {
                    let r = future::or(fut, async {
                        async_io::Timer::after(CHECK_TIMEOUT).await;
                        Err("check timed out".to_owned())
                    })
                    .await;
                    (name, r)
                }
            })
            .collect();
        Box::pin(async move {
            let mut ready = true;
            let mut out = serde_json::Map::new();
            for c in checks {
                let (name, r) = c.await;
                crate::metrics::set_readiness_check(name, r.is_ok());
                match r {
                    Ok(()) => out.insert(name.into(), json!("ok")),
                    Err(why) => {
                        ready = false;
                        out.insert(name.into(), json!(why))
                    }
                };
            }
            Readiness {
                ready,
                checks: Value::Object(out),
            }
        })
    }

    fn status(&self) -> Option<Value> {
        self.status.as_ref().map(|f| f())
    }

    fn page(&self) -> Option<&'static str> {
        self.page
    }
}

/// Binds the admin listener; `Ok(None)` when `addr` is empty (turned off).
pub fn bind(addr: &str) -> std::io::Result<Option<std::net::TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(Some(l))
}

/// Serves admin requests on `listener` until `shutdown`; over HTTPS when `tls` is
/// given (`admin.tls`).
pub fn spawn(
    rt: &Runtime,
    listener: std::net::TcpListener,
    app: Arc<dyn AdminApp>,
    tls: Option<Acceptor>,
    shutdown: Shutdown,
) {
    crate::metrics::install();
    let rt2 = rt.clone();
    rt.spawn(async move {
        let Ok(listener) = async_net::TcpListener::try_from(listener) else {
            return;
        };
        loop {
            let accepted = future::or(async { Some(listener.accept().await) }, async {
                shutdown.wait().await;
                None
            })
            .await;
            let (stream, peer) = match accepted {
                None => return,
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let app = app.clone();
            let tls = tls.clone();
            rt2.spawn(async move {
                let stream = match &tls {
                    None => AdminStream::Plain(stream),
                    Some(acceptor) => {
                        match crate::tls::accept_stream(acceptor, stream, ADMIN_TIMEOUT).await {
                            Ok(s) => AdminStream::Tls(Box::new(s)),
                            Err(e) => {
                                tracing::warn!(listener = "admin", %peer, error = %e, "TLS handshake failed; connection closed");
                                return;
                            }
                        }
                    }
                };
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(app, req).await) }
                });
                let io = smol_hyper::rt::FuturesIo::new(stream);
                // Admin clients are operators' tools: a slow one is cut off.
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, service);
                let _ = future::or(async { conn.await.map_err(|_| ()) }, async {
                    async_io::Timer::after(ADMIN_TIMEOUT).await;
                    Err(())
                })
                .await;
            })
            .detach();
        }
    })
    .detach();
}

/// Longest an admin connection (its TLS handshake included) may last.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin connection: plain HTTP or HTTPS.
enum AdminStream {
    Plain(async_net::TcpStream),
    Tls(Box<futures_rustls::server::TlsStream<async_net::TcpStream>>),
}

impl futures_lite::AsyncRead for AdminStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            AdminStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            AdminStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl futures_lite::AsyncWrite for AdminStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            AdminStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            AdminStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            AdminStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            AdminStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            AdminStream::Plain(s) => std::pin::Pin::new(s).poll_close(cx),
            AdminStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// The address the admin listener bound (for logs and `dsf up`).
pub fn local_addr(l: &std::net::TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}

async fn handle<B>(app: Arc<dyn AdminApp>, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            // Each scrape carries the readiness checks' outcome (dsf_readiness_check).
            app.readiness().await;
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::render(),
            )
        }
        "/healthz" => json_reply(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => {
            let r = app.readiness().await;
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(status, &json!({"ready": r.ready, "checks": r.checks}))
        }
        "/status.json" => match app.status() {
            Some(v) => json_reply(StatusCode::OK, &v),
            None => text(StatusCode::NOT_FOUND, "no status here\n"),
        },
        "/" => match app.page() {
            Some(html) => reply(StatusCode::OK, "text/html; charset=utf-8", html.to_owned()),
            None => text(StatusCode::OK, "dsf admin: /metrics /healthz /readyz\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", v.to_string())
}

/// Tells systemd we are ready (`READY=1`) when run under `Type=notify`.
pub fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "sd_notify READY failed");
        }
    }
}

/// Tells systemd we are stopping (`STOPPING=1`).
pub fn notify_stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
}
