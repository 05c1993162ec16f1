//! The ZooKeeper service registry (what zc.zkzeo/zc.zk did for Python ZEO).
//!
//! Owns: a blocking ZooKeeper client written against the wire protocol (`jute`,
//! `client`), the server-side [`Registration`] of a running `zeo serve`, and
//! [`resolve`] of `zookeeper://HOST:PORT[,HOST:PORT]/path` URLs for the tools.
//!
//! Why hand-written: the maintained Rust ZooKeeper clients are async (tokio or
//! another executor); the sync `zookeeper` crate is unmaintained and pulls mio 0.6.
//! We need a handful of requests, so a small blocking client on its own thread is
//! simpler than any of them.
//!
//! Invariants: every error names the ZooKeeper server(s) and the node path involved;
//! nothing here panics on bytes from the network (see `jute`).

pub mod address;
pub mod client;
pub mod jute;
pub mod registration;
pub mod serve;

pub use address::{ConnectString, RegistryUrl};
pub use client::{Options, ZooKeeper};
pub use registration::{register, Registrant, Registration};

use crate::client::ServerAddress;
use std::fmt;
use std::time::Duration;

/// Errors of the registry area.
#[derive(Debug)]
pub enum ZkError {
    /// A malformed connection string, URL or node path.
    Address(String),
    /// No server of the connection string could be reached (or answered).
    Unreachable { servers: String, detail: String },
    /// The connection broke (or was down) during a request.
    ConnectionLoss {
        server: String,
        op: &'static str,
        path: String,
        detail: String,
    },
    /// ZooKeeper answered with an error code.
    Server {
        server: String,
        op: &'static str,
        path: String,
        code: i32,
    },
    /// The registration path does not exist.
    MissingPath { servers: String, path: String },
    /// A reply we could not decode.
    Protocol { server: String, detail: String },
}

impl fmt::Display for ZkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZkError::Address(m) => write!(f, "invalid ZooKeeper address: {m}"),
            ZkError::Unreachable { servers, detail } => {
                write!(f, "cannot connect to ZooKeeper at {servers}: {detail}")
            }
            ZkError::ConnectionLoss {
                server,
                op,
                path,
                detail,
            } => write!(
                f,
                "ZooKeeper {op} {path:?} on {server}: connection lost ({detail})"
            ),
            ZkError::Server {
                server,
                op,
                path,
                code,
            } => write!(
                f,
                "ZooKeeper {op} {path:?} on {server} failed: {} ({code})",
                jute::error_name(*code)
            ),
            ZkError::MissingPath { servers, path } => write!(
                f,
                "ZooKeeper path {path:?} does not exist on {servers}; create it first \
                 (e.g. zkCli.sh -server {servers} create {path})"
            ),
            ZkError::Protocol { server, detail } => write!(f, "ZooKeeper {server}: {detail}"),
        }
    }
}

impl std::error::Error for ZkError {}

impl From<ZkError> for crate::Error {
    fn from(e: ZkError) -> Self {
        crate::Error::Other(e.to_string())
    }
}

/// The servers registered under a `zookeeper://HOST:PORT[,HOST:PORT]/path` URL, sorted
/// by node name. Children that are not `host:port` are skipped (with a warning). An
/// empty list is not an error here: callers decide.
pub fn resolve(url: &str) -> Result<Vec<ServerAddress>, ZkError> {
    let u = RegistryUrl::parse(url)?;
    let zk = ZooKeeper::connect(
        &u.connection,
        Options {
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        },
    )?;
    let names = match zk.get_children(&u.path) {
        Err(ZkError::Server { code, .. }) if code == jute::ERR_NO_NODE => {
            return Err(ZkError::MissingPath {
                servers: u.connection,
                path: u.path,
            })
        }
        r => r?,
    };
    zk.close();
    let mut out = Vec::new();
    for n in names {
        match address::child_address(&n) {
            Some(a) => out.push(a),
            None => log::warn!("ignoring {}/{n}: not a host:port registration", u.path),
        }
    }
    Ok(out)
}
