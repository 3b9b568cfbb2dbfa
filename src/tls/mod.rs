//! Transport security (PROTOCOL §8): rustls settings built from `[tls]`, held in a
//! handle that a reload (`SIGHUP`, `runtime::reload`) swaps, and the streams listeners and clients share.
//!
//! - [`Tls`]: the reloadable handle. Every new handshake reads the current settings
//!   from an `ArcSwap`; a reload builds complete new settings first and swaps them in
//!   only when every file parsed, so a broken file leaves the old certificate in use.
//!   Established connections keep the settings they were made with.
//! - `load.rs`: PEM files to rustls settings, errors naming the key and the file;
//!   [`client_config`] for a client-only setting (etcd over `https://`).
//! - [`PeerIdentity`]: the names (CN and DNS SANs) and serial of a peer certificate.
//! - [`accept`]: a listener's side of a handshake; [`ClientStream`]: a client's.
//! - [`issue`]: a private CA and certificates signed by it (`dsf cert`).
//!
//! The crypto provider is rustls' `ring`: pure Rust and C compiled by `cc`, so the
//! static musl image builds without cmake, Go or a C++ toolchain, which `aws-lc-rs`
//! would need.

mod accept;
mod identity;
pub mod issue;
mod load;
mod stream;

pub use accept::{accept, accept_stream, Accepted, Acceptor};
pub use identity::PeerIdentity;
pub use load::{client_config, ClientFiles};
pub use stream::{host_of, ClientStream, Connector, ReadHalf, WriteHalf};

use crate::config::{Listener, TlsConfig};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// What can go wrong while reading certificates, keys and CA bundles.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("`{key}`: cannot read {path}: {source}")]
    Read {
        /// Dotted configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but holds nothing usable.
    #[error("`{key}`: {path}: {problem}")]
    Content {
        /// Dotted configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("`{key}`: {problem}")]
    Settings {
        /// Dotted configuration key at fault.
        key: &'static str,
        /// rustls' reason.
        problem: String,
    },
}

/// Settings of one generation of files; replaced whole on reload.
struct Settings {
    /// For listeners that take any client.
    server: Option<Arc<rustls::ServerConfig>>,
    /// For listeners that require a client certificate chaining to `tls.client_ca`.
    server_client_auth: Option<Arc<rustls::ServerConfig>>,
    /// For outgoing connections.
    client: Option<Arc<rustls::ClientConfig>>,
    /// Serial of the certificate presented, for logs.
    serial: Option<String>,
}

/// The process's TLS settings, reloadable (`SIGHUP`).
pub struct Tls {
    /// Where the files are; kept to read them again.
    cfg: TlsConfig,
    /// The settings new handshakes use.
    current: ArcSwap<Settings>,
}

impl Tls {
    /// Reads the files named by `cfg`; `None` when it names none (plain TCP).
    pub fn from_config(cfg: &TlsConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        if !cfg.serves() && !cfg.connects() {
            return Ok(None);
        }
        let settings = load::settings(cfg)?;
        Ok(Some(Arc::new(Tls {
            cfg: cfg.clone(),
            current: ArcSwap::from_pointee(settings),
        })))
    }

    /// Reads the files again; on success new handshakes use them, on failure nothing
    /// changes and the error says which file is wrong.
    pub fn reload(&self) -> Result<(), TlsError> {
        let settings = load::settings(&self.cfg)?;
        self.current.store(Arc::new(settings));
        Ok(())
    }

    /// The `[tls]` section this handle reads.
    pub fn config(&self) -> &TlsConfig {
        &self.cfg
    }

    /// Serial (hex) of the certificate this process presents now.
    pub fn serial(&self) -> Option<String> {
        self.current.load().serial.clone()
    }

    /// The server side for `listener`, or `None` when listeners are plain TCP.
    pub fn acceptor(self: &Arc<Self>, listener: Listener) -> Option<Acceptor> {
        self.cfg.serves().then(|| Acceptor {
            tls: self.clone(),
            client_auth: self.cfg.requires_client_cert(listener),
        })
    }

    /// The client side, or `None` when outgoing connections are plain TCP.
    pub fn connector(self: &Arc<Self>) -> Option<Connector> {
        self.cfg.connects().then(|| Connector {
            tls: self.clone(),
            server_name: None,
        })
    }

    fn server_config(&self, client_auth: bool) -> Option<Arc<rustls::ServerConfig>> {
        let s = self.current.load();
        if client_auth {
            s.server_client_auth.clone()
        } else {
            s.server.clone()
        }
    }

    fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.current.load().client.clone()
    }
}

#[cfg(test)]
mod tests;
