//! Errors at the server crate's boundary.

use std::path::PathBuf;
use thiserror::Error;

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for [`crate::Config`].
    #[error("invalid config file {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// Which value and why.
        message: String,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS setup failed: {message}")]
    Tls {
        /// Which file and why.
        message: String,
    },
    /// The process may not open enough files for `max_connections`, even after raising its
    /// soft limit to the hard limit.
    #[error(
        "max_connections {max_connections} needs about {needed} open files, but the limit is \
         {limit} (raise `ulimit -n` or the service's LimitNOFILE, or lower max_connections)"
    )]
    FileLimit {
        /// The configured cap.
        max_connections: usize,
        /// Files needed: the cap plus a reserve for listeners, refusals and files.
        needed: u64,
        /// The soft limit in force.
        limit: u64,
    },
    /// The tick thread could not be started.
    #[error("cannot start the tick thread: {0}")]
    TickThread(std::io::Error),
}
