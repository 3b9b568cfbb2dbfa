//! One HTTP/1.1 connection to an etcd endpoint: TCP with keep-alive probes, TLS
//! (rustls) for an `https://` endpoint, hyper on top.

use crate::tls::ClientStream;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// One endpoint of the cluster, as configured.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// `http://host:port` or `https://host:port`, for messages.
    pub url: String,
    /// `host:port`, to connect to.
    pub addr: String,
    /// Whether the endpoint speaks TLS.
    pub tls: bool,
}

impl Endpoint {
    /// Parses `http://host:port` or `https://host:port` (a trailing `/` dropped).
    pub fn parse(url: &str) -> Endpoint {
        let url = url.trim_end_matches('/');
        let (tls, addr) = match url.strip_prefix("https://") {
            Some(addr) => (true, addr),
            None => (false, url.trim_start_matches("http://")),
        };
        let scheme = if tls { "https" } else { "http" };
        Endpoint {
            url: format!("{scheme}://{addr}"),
            addr: addr.to_owned(),
            tls,
        }
    }
}

/// The sending half of a connection.
pub(super) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
/// The connection itself, to be driven while requests are in flight.
pub(super) type Connection =
    hyper::client::conn::http1::Connection<smol_hyper::rt::FuturesIo<ClientStream>, Full<Bytes>>;

/// Connects to `endpoint`, with a TLS handshake under `tls` for an `https://` one,
/// and sets up HTTP/1.1 on the stream.
pub(super) async fn open(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Sender, Connection), String> {
    let stream = connect(endpoint, tls).await?;
    hyper::client::conn::http1::handshake(smol_hyper::rt::FuturesIo::new(stream))
        .await
        .map_err(|e| format!("http: {}", chain(&e)))
}

async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<ClientStream, String> {
    let tcp = async_net::TcpStream::connect(&endpoint.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    // A member cut off by the network (packets dropped, nothing refused) would leave
    // a watch open and silent: keep-alive probes end it within a few seconds.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(2);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    if !endpoint.tls {
        return Ok(ClientStream::Plain(tcp));
    }
    let config = tls.ok_or("no TLS settings for an https:// endpoint")?;
    let host = crate::tls::host_of(&endpoint.addr);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` is not a server name: {e}"))?;
    let stream = futures_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(ClientStream::Tls(Box::new(stream)))
}

/// A `POST path` request with `body` as JSON.
pub(super) fn request(
    endpoint: &Endpoint,
    path: &str,
    body: &Value,
    watch: bool,
) -> Result<Request<Full<Bytes>>, String> {
    let mut b = Request::post(path)
        .header(hyper::header::HOST, endpoint.addr.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if watch {
        // Ends the watch when the endpoint has no leader (no quorum), instead of
        // leaving it open and silent.
        b = b.header("Grpc-Metadata-hasleader", "true");
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())
}

/// One request on a fresh connection (calls are rare: shape changes, keep-alives,
/// readiness probes), and its whole answer.
pub(super) async fn unary(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path: &str,
    body: &Value,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let (mut sender, conn) = open(endpoint, tls).await?;
    // The connection's own error says why it ended (a TLS alert: a client certificate
    // refused); the request then fails too, and its error gets that cause appended.
    let ended = std::sync::Mutex::new(None);
    let io = async {
        if let Err(e) = conn.await {
            *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain(&e));
        }
        // Dropping the connection fails the request, which ends `exchange`.
        futures_lite::future::pending::<Result<(hyper::StatusCode, Bytes), String>>().await
    };
    let exchange = async {
        let resp = sender
            .send_request(request(endpoint, path, body, false)?)
            .await
            .map_err(|e| format!("{path}: {}", chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: {}", chain(&e)))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    futures_lite::future::or(exchange, io).await.map_err(|e| {
        match ended.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(cause) if !e.contains(&cause) => format!("{e}: {cause}"),
            _ => e,
        }
    })
}

/// An error and its causes, `a: b: c`: hyper's own message alone hides why a
/// connection ended (a TLS alert such as a refused client certificate).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_keep_their_scheme_for_messages() {
        let e = Endpoint::parse("https://etcd-1.example:2379/");
        assert_eq!(
            (e.url.as_str(), e.addr.as_str(), e.tls),
            ("https://etcd-1.example:2379", "etcd-1.example:2379", true)
        );
        let e = Endpoint::parse("http://127.0.0.1:2379");
        assert_eq!((e.url.as_str(), e.tls), ("http://127.0.0.1:2379", false));
    }
}
