//! In-place upgrade (PROTOCOL §9): a running process hands its listening sockets to
//! its successor over a unix socket, so that no connection is refused meanwhile.
//!
//! The exchange, on `runtime.upgrade_socket`:
//!
//! 1. the successor connects; the running process sends one message: a `u32`
//!    big-endian length and a JSON header (`listeners`: `[name, count]` pairs, and
//!    `state`: what the role carries over, e.g. the balancer's leases), with every
//!    listening socket attached (`SCM_RIGHTS`) in the header's order;
//! 2. the successor sets itself up on those sockets (the kernel queues connections
//!    meanwhile: both processes hold the same sockets) and writes `ready\n`;
//! 3. the running process answers `bye\n`, stops accepting, sends `goaway` on its
//!    connections (§7), drains within `limits.drain_timeout` and exits; the successor
//!    takes the upgrade socket over for the next upgrade.
//!
//! If the successor goes away before step 2, the running process keeps serving.

use super::listeners::Inherited;
use super::Shutdown;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpListener as StdListener;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most sockets one hand-over carries (loop threads × listeners, with room).
const MAX_FDS: usize = 256;
/// Largest header accepted.
const MAX_HEADER: usize = 64 << 20;
/// How long the successor may take to set up before the running process gives up
/// on it (opening stores included) and keeps serving.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on each step of the exchange itself.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The upgrade socket of a `role` ("node", "balancer") whose first listener is
/// configured on `listen`: `runtime.upgrade_socket` if set, else
/// `dsf-<role>-<port>.sock` in `$XDG_RUNTIME_DIR`, else in `data_dir`. `None` when it
/// is not set and `listen` has no fixed port (an ephemeral port cannot name the
/// socket a successor looks for).
pub fn socket_path(
    runtime: &crate::config::RuntimeConfig,
    role: &str,
    listen: &str,
    data_dir: &Path,
) -> Option<PathBuf> {
    if !runtime.upgrade_socket.as_os_str().is_empty() {
        return Some(runtime.upgrade_socket.clone());
    }
    let port: u16 = listen.rsplit_once(':')?.1.parse().ok()?;
    if port == 0 {
        return None;
    }
    let name = format!("dsf-{role}-{port}.sock");
    Some(
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join(name),
            None => data_dir.join(name),
        },
    )
}

/// One process's side of in-place upgrades: where its upgrade socket is, and what
/// it took over from its predecessor, if it started with `--upgrade`.
pub struct Upgrade {
    /// The upgrade socket; `None` when there is none (an ephemeral port, no path set).
    path: Option<PathBuf>,
    /// The predecessor's exchange, open until this process confirms.
    received: Option<Received>,
}

impl Upgrade {
    /// Takes the listeners: from the process serving `path` when `take_over`
    /// (`--upgrade`), else from socket activation (`unnamed_as` names a single
    /// unnamed descriptor). Returns them with the state the predecessor carried over.
    pub fn start(
        path: Option<PathBuf>,
        take_over: bool,
        unnamed_as: &str,
    ) -> io::Result<(Upgrade, Inherited, Value)> {
        if !take_over {
            let inherited = Inherited::from_env(unnamed_as)?;
            return Ok((
                Upgrade {
                    path,
                    received: None,
                },
                inherited,
                Value::Null,
            ));
        }
        let Some(p) = &path else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--upgrade needs runtime.upgrade_socket, or a listener on a fixed port",
            ));
        };
        let mut received = receive(p)?;
        let inherited = std::mem::take(&mut received.listeners);
        let state = std::mem::take(&mut received.state);
        tracing::info!(socket = %p.display(), "listeners taken over from the running process");
        let upgrade = Upgrade {
            path,
            received: Some(received),
        };
        Ok((upgrade, inherited, state))
    }

    /// Confirms a take-over (the predecessor then drains) and serves the upgrade
    /// socket for this process's own successor. Without a socket path, or when it
    /// cannot be bound, the process runs without in-place upgrades (logged).
    pub fn serve(
        self,
        offer: Offer,
        handed_over: impl FnOnce() + Send + 'static,
        shutdown: Shutdown,
    ) -> io::Result<()> {
        let Some(path) = self.path else {
            return Ok(());
        };
        let listener = match self.received {
            Some(r) => r.confirm()?,
            None => match bind(&path) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::info!(error = %e, "in-place upgrades unavailable: no such folder (set runtime.upgrade_socket)");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "in-place upgrades unavailable");
                    return Ok(());
                }
            },
        };
        serve(listener, path, offer, handed_over, shutdown)
    }
}

/// What a successor received from the running process.
pub struct Received {
    /// The listening sockets, by listener name.
    pub listeners: Inherited,
    /// What the role carries over (`Value::Null` when nothing).
    pub state: Value,
    /// The exchange, kept open until [`Received::confirm`].
    stream: UnixStream,
    /// The upgrade socket's path, taken over after the confirmation.
    path: PathBuf,
}

/// Connects to the running process at `path` and receives its listeners.
pub fn receive(path: &Path) -> io::Result<Received> {
    let at =
        |e: io::Error| io::Error::new(e.kind(), format!("upgrade socket {}: {e}", path.display()));
    let stream = UnixStream::connect(path).map_err(at)?;
    stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(at)?;
    let mut first = vec![0u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut first)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| at(e.into()))?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = msg {
            fds.extend(passed);
        }
    }
    let mut data = first[..got.bytes].to_vec();
    if data.len() < 4 {
        return Err(at(io::Error::new(
            io::ErrorKind::InvalidData,
            "short hand-over message",
        )));
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if len > MAX_HEADER {
        return Err(at(io::Error::new(
            io::ErrorKind::InvalidData,
            "hand-over header too large",
        )));
    }
    while data.len() < 4 + len {
        let mut more = vec![0u8; 4 + len - data.len()];
        let n = (&stream).read(&mut more).map_err(at)?;
        if n == 0 {
            return Err(at(io::ErrorKind::UnexpectedEof.into()));
        }
        data.extend_from_slice(&more[..n]);
    }
    let header: Value = serde_json::from_slice(&data[4..4 + len])
        .map_err(|e| at(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let mut listeners = Inherited::none();
    let mut fds = fds.into_iter();
    for entry in header["listeners"].as_array().into_iter().flatten() {
        let name = entry[0].as_str().unwrap_or_default();
        for _ in 0..entry[1].as_u64().unwrap_or(0) {
            let fd = fds.next().ok_or_else(|| {
                at(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("listener `{name}`: socket missing"),
                ))
            })?;
            listeners.add(name, StdListener::from(fd));
        }
    }
    Ok(Received {
        listeners,
        state: header["state"].clone(),
        stream,
        path: path.to_owned(),
    })
}

impl Received {
    /// Tells the running process this one serves; it then stops accepting and drains.
    /// Returns the upgrade socket, now this process's, for [`serve`].
    pub fn confirm(self) -> io::Result<UnixListener> {
        let at = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("upgrade socket {}: {e}", self.path.display()),
            )
        };
        (&self.stream).write_all(b"ready\n").map_err(at)?;
        let mut line = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut line)
            .map_err(at)?;
        if line.trim() != "bye" {
            return Err(at(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected `bye`, got {line:?}"),
            )));
        }
        // The old process no longer accepts on its copy of the path.
        let _ = std::fs::remove_file(&self.path);
        bind(&self.path)
    }
}

/// Binds the upgrade socket at `path` (owner-only), replacing a stale file.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let at =
        |e: io::Error| io::Error::new(e.kind(), format!("upgrade socket {}: {e}", path.display()));
    if UnixStream::connect(path).is_ok() {
        return Err(at(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process serves it (start with --upgrade to replace that process)",
        )));
    }
    let _ = std::fs::remove_file(path);
    // No folder is created: a balancer's default lies in `node.data_dir`, which it
    // does not otherwise use.
    let listener = UnixListener::bind(path).map_err(at)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(at)?;
    Ok(listener)
}

/// What the running process offers its successor.
pub struct Offer {
    /// Copies of the listening sockets, by listener name.
    pub listeners: Vec<(&'static str, Vec<StdListener>)>,
    /// Called at each hand-over for what the role carries over.
    pub state: Box<dyn Fn() -> Value + Send + Sync>,
}

/// Serves the upgrade socket until a successor confirms (then calls `handed_over`,
/// which should start this process's drain) or until `shutdown`. Runs on its own
/// thread; the socket file is removed at a shutdown without hand-over.
pub fn serve(
    listener: UnixListener,
    path: PathBuf,
    offer: Offer,
    handed_over: impl FnOnce() + Send + 'static,
    shutdown: Shutdown,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = async_io::Async::new(listener)?;
    std::thread::Builder::new()
        .name("dsf-upgrade".into())
        .spawn(move || {
            smol::block_on(async move {
                loop {
                    let accepted = futures_lite::future::or(
                        async { Some(listener.accept().await) },
                        async {
                            shutdown.wait().await;
                            None
                        },
                    )
                    .await;
                    let stream = match accepted {
                        None => {
                            let _ = std::fs::remove_file(&path);
                            return;
                        }
                        Some(Ok((stream, _))) => stream,
                        Some(Err(e)) => {
                            tracing::warn!(socket = %path.display(), error = %e, "upgrade socket: accept failed");
                            async_io::Timer::after(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let stream = match stream.into_inner() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "upgrade socket: unusable connection");
                            continue;
                        }
                    };
                    match hand_over(&stream, &offer) {
                        Ok(()) => {
                            tracing::info!(socket = %path.display(), "listeners handed to the new process; draining");
                            handed_over();
                            return;
                        }
                        Err(e) => tracing::warn!(socket = %path.display(), error = %e, "upgrade aborted; this process keeps serving"),
                    }
                }
            })
        })?;
    Ok(())
}

/// Sends the sockets and waits for the successor's `ready`.
fn hand_over(stream: &UnixStream, offer: &Offer) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let names: Vec<Value> = offer
        .listeners
        .iter()
        .map(|(name, sockets)| json!([name, sockets.len()]))
        .collect();
    let header = json!({ "pid": std::process::id(), "listeners": names, "state": (offer.state)() });
    let header = serde_json::to_vec(&header).map_err(io::Error::other)?;
    let mut message = (header.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&header);
    let fds: Vec<_> = offer
        .listeners
        .iter()
        .flat_map(|(_, sockets)| sockets.iter().map(AsFd::as_fd))
        .collect();
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "{} sockets; at most {MAX_FDS}",
            fds.len()
        )));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(&message)],
        &mut control,
        SendFlags::empty(),
    )?;
    // The sockets travel with the first byte; the rest of a long header follows.
    (&*stream).write_all(&message[sent..])?;
    stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the new process left before it was ready",
        ));
    }
    (&*stream).write_all(b"bye\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn sockets_and_state_reach_the_successor_and_the_old_one_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock");
        let tcp = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let offer = Offer {
            listeners: vec![("node", vec![tcp.try_clone().unwrap()]), ("admin", vec![])],
            state: Box::new(|| json!({"leases": 2})),
        };
        let told = Arc::new(AtomicBool::new(false));
        let flag = told.clone();
        let (_stop, shutdown) = super::super::shutdown::channel();
        let listener = bind(&path).unwrap();
        serve(
            listener,
            path.clone(),
            offer,
            move || flag.store(true, Ordering::SeqCst),
            shutdown,
        )
        .unwrap();
        let mut got = receive(&path).unwrap();
        assert_eq!(got.state["leases"], 2);
        let node = got.listeners.take("node").unwrap().unwrap();
        assert_eq!(node.len(), 1);
        assert_eq!(node[0].local_addr().unwrap(), addr);
        assert!(!told.load(Ordering::SeqCst));
        let _mine = got.confirm().unwrap();
        for _ in 0..100 {
            if told.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(told.load(Ordering::SeqCst));
        // The successor now serves the path: a second process may not bind it.
        assert!(bind(&path).is_err());
    }
}
