//! The crate-wide error type: one variant per area, each wrapping that area's own enum,
//! so `?` works across module boundaries while messages stay specific.
//!
//! Invariant: every message names what failed and where (file, offset, line, peer), so a
//! user can act on it without reading the source.

use std::fmt;

/// Any error `zeo` reports.
#[derive(Debug)]
pub enum Error {
    Storage(crate::storage::StorageError),
    Protocol(crate::protocol::ProtocolError),
    Config(crate::config::ConfigError),
    Trace(crate::cache::TraceError),
    Client(crate::client::ClientError),
    /// Command-line usage problems; reported with exit status 2.
    Usage(String),
    /// I/O outside a more specific area, with what we were doing.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Anything else, already phrased for the user.
    Other(String),
}

/// The crate `Result` alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit status this error maps to when it ends a subcommand.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Storage(e) => e.fmt(f),
            Error::Protocol(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Trace(e) => e.fmt(f),
            Error::Client(e) => e.fmt(f),
            Error::Usage(m) | Error::Other(m) => f.write_str(m),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Self {
        Error::Storage(e)
    }
}
impl From<crate::protocol::ProtocolError> for Error {
    fn from(e: crate::protocol::ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<crate::cache::TraceError> for Error {
    fn from(e: crate::cache::TraceError) -> Self {
        Error::Trace(e)
    }
}
impl From<crate::client::ClientError> for Error {
    fn from(e: crate::client::ClientError) -> Self {
        Error::Client(e)
    }
}
