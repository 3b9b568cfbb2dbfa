//! Listening sockets a process did not bind itself: passed by systemd-style socket
//! activation (PROTOCOL §9) or by the process it replaces (an in-place upgrade).
//!
//! Each listener is known by its role's name — `node`, `admin`, `registration`,
//! `directory`, `proxy` — and may be several sockets (one `SO_REUSEPORT` socket per
//! loop thread, as a process hands them over). A listener not inherited is bound as
//! configured.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener as StdListener;

/// The listener names a process may inherit.
pub const NAMES: [&str; 5] = ["node", "admin", "registration", "directory", "proxy"];

/// Inherited listening sockets, by listener name.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Sockets not yet taken, by name.
    by_name: HashMap<String, Vec<StdListener>>,
}

impl Inherited {
    /// Nothing inherited.
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// Adds `socket` under `name`.
    pub fn add(&mut self, name: &str, socket: StdListener) {
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .push(socket);
    }

    /// Takes the sockets of `name`, if any were passed (non-blocking, ready to accept).
    pub fn take(&mut self, name: &str) -> io::Result<Option<Vec<StdListener>>> {
        match self.by_name.remove(name) {
            None => Ok(None),
            Some(sockets) => {
                for s in &sockets {
                    s.set_nonblocking(true)?;
                }
                Ok(Some(sockets))
            }
        }
    }

    /// Whether nothing is left to take.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The names still held (logged when a process was given a listener it has no use for).
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The listeners of socket activation: `LISTEN_FDS` descriptors from 3 on, passed
    /// to this process (`LISTEN_PID`), named by `LISTEN_FDNAMES`. A single descriptor
    /// without a name (or named `unknown`, systemd's default) is `unnamed_as`'s (none
    /// when empty: every descriptor must then be named). The
    /// variables are unset once read, so that children do not see them.
    pub fn from_env(unnamed_as: &str) -> io::Result<Inherited> {
        if std::env::var_os("LISTEN_FDS").is_none() {
            // The common case touches no variable (other threads may read them).
            return Ok(Inherited::default());
        }
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|v| v.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        // Reads LISTEN_FDS/LISTEN_PID, checks the pid, and unsets both.
        let mut fds = listenfd::ListenFd::from_env();
        std::env::remove_var("LISTEN_FDNAMES");
        let mut inherited = Inherited::default();
        let count = fds.len();
        for i in 0..count {
            let given = names.get(i).map(String::as_str).unwrap_or("");
            let name = match given {
                "" | "unknown" if count == 1 && !unnamed_as.is_empty() => unnamed_as,
                n if NAMES.contains(&n) => n,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                        "socket activation: descriptor {} is named `{other}`; expected one of {}",
                        i + 3,
                        NAMES.join(", ")
                    ),
                    ))
                }
            };
            let socket = fds.take_tcp_listener(i).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("socket activation: descriptor {} (`{name}`): {e}", i + 3),
                )
            })?;
            if let Some(socket) = socket {
                tracing::info!(listener = name, addr = ?socket.local_addr().ok(), "listener passed by socket activation");
                inherited.add(name, socket);
            }
        }
        Ok(inherited)
    }
}
