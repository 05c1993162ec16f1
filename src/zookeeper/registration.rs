//! Registering a running ZEO server in ZooKeeper, as zc.zkzeo does.
//!
//! Owns: the server's ephemeral node `<path>/<host>:<port>` with zc.zk's JSON
//! properties (`pid`, and `monitor` when a monitor address is configured).
//!
//! Invariants: [`register`] fails (clearly, naming servers and path) when ZooKeeper is
//! unreachable or `path` does not exist; after that, outages are only logged and the
//! node is created again in a new session after expiry (see client.rs);
//! [`Registration::unregister`] deletes the node before closing the session.

use super::address::{fqdn, node_name, properties};
use super::client::{Options, ZooKeeper};
use super::jute::Acl;
use super::ZkError;
use std::time::Duration;

/// What to register.
#[derive(Debug, Clone)]
pub struct Registrant {
    /// The ZooKeeper connection string (`host:port,host:port[/chroot]`).
    pub connection: String,
    /// The existing node to register under.
    pub path: String,
    /// The host the server is bound to; empty means the machine's name (zc.zk).
    pub host: String,
    /// The actual bound port (already resolved when the configured port was 0).
    pub port: u16,
    pub pid: u32,
    /// Published as the `monitor` property (`host:port`), when set.
    pub monitor: Option<String>,
    /// The session timeout; None for zc.zk's default of 10 s.
    pub session_timeout: Option<Duration>,
}

impl Registrant {
    /// From the server's `<zookeeper>` section and its bound address.
    pub fn from_config(cfg: &crate::config::ZookeeperConfig, host: &str, port: u16) -> Registrant {
        use crate::config::ListenAddress;
        let monitor = cfg.monitor_server.as_ref().map(|m| match m {
            ListenAddress::Tcp { host, port } => {
                let h = if host.is_empty() {
                    fqdn()
                } else {
                    host.clone()
                };
                node_name(&h, *port)
            }
            ListenAddress::Unix(p) => p.display().to_string(),
        });
        Registrant {
            connection: cfg.connection.clone(),
            path: cfg.path.clone(),
            host: host.to_string(),
            port,
            pid: std::process::id(),
            monitor,
            session_timeout: cfg
                .session_timeout
                .filter(|ms| *ms > 0)
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
        }
    }
}

/// A live registration; drop it or call [`Registration::unregister`] to remove it.
pub struct Registration {
    zk: Option<ZooKeeper>,
    node: String,
}

/// Register `r`: connect, check that the path exists, create the ephemeral node.
pub fn register(r: &Registrant) -> Result<Registration, ZkError> {
    let mut opts = Options::default();
    if let Some(t) = r.session_timeout {
        opts.session_timeout = t;
    }
    let path = super::address::normalize_path(&r.path).ok_or_else(|| {
        ZkError::Address(format!(
            "<zookeeper> path {:?} must be an absolute node path",
            r.path
        ))
    })?;
    let zk = ZooKeeper::connect(&r.connection, opts)?;
    if zk.exists(&path)?.is_none() {
        return Err(ZkError::MissingPath {
            servers: zk.hosts(),
            path,
        });
    }
    let host = if r.host.is_empty() {
        fqdn()
    } else {
        r.host.clone()
    };
    let node = if path == "/" {
        format!("/{}", node_name(&host, r.port))
    } else {
        format!("{path}/{}", node_name(&host, r.port))
    };
    let data = properties(r.pid, r.monitor.as_deref());
    zk.create_ephemeral(&node, data.as_bytes(), Acl::world_read())?;
    log::info!(
        "registered {node} in ZooKeeper {} (session 0x{:x})",
        zk.hosts(),
        zk.session_id()
    );
    Ok(Registration { zk: Some(zk), node })
}

impl Registration {
    /// The registered node's path.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The underlying session (for status and tests).
    pub fn session(&self) -> Option<&ZooKeeper> {
        self.zk.as_ref()
    }

    /// Delete the node, then close the session. A failure to delete is returned, but
    /// the session is closed anyway (which removes the node once the ensemble sees it).
    pub fn unregister(mut self) -> Result<(), ZkError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), ZkError> {
        let Some(zk) = self.zk.take() else {
            return Ok(());
        };
        let r = match zk.delete(&self.node) {
            Err(ZkError::Server { code, .. }) if code == super::jute::ERR_NO_NODE => Ok(()),
            r => r,
        };
        zk.close();
        if r.is_ok() {
            log::info!("unregistered {} from ZooKeeper", self.node);
        }
        r
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            log::warn!("ZooKeeper: {e}");
        }
    }
}
