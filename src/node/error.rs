//! Why a node could not start or run, naming the part and the address that failed.

use crate::cache::CacheError;
use crate::store::StoreError;
use std::path::PathBuf;
use thiserror::Error;

/// Why a node stopped with an error.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A listener could not be bound.
    #[error("{listener} listener {addr}: {source}")]
    Bind {
        /// Which listener (`node`, `admin`).
        listener: &'static str,
        /// The address asked for.
        addr: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The in-place upgrade's hand-over failed (the message names the socket).
    #[error("in-place upgrade: {0}")]
    Upgrade(std::io::Error),
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache configuration is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A local file could not be opened.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// An application could not set up its operations.
    #[error("{service}: {problem}")]
    Setup {
        /// The service whose setup failed.
        service: String,
        /// What went wrong.
        problem: String,
    },
    /// TLS settings could not be built from `[tls]`.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The event loops could not start.
    #[error("event loops: {0}")]
    Runtime(#[source] std::io::Error),
    /// A stop was asked for before the node was ready (e.g. while it waited for its
    /// database).
    #[error("stopped before it was ready")]
    StoppedBeforeReady,
}
