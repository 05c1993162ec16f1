//! `zeo serve`'s use of the registry: register the bound TCP address when the
//! configuration has a `<zookeeper>` section, delete the node as soon as SIGTERM or
//! SIGINT arrives (before storages are closed), and at the latest when the server
//! exits.
//!
//! Invariants: registration failures at start are returned (the server must not
//! serve unregistered); the node is deleted at most once; the signal watcher thread
//! only listens (the event loop's own signal handling is untouched).

use super::{register, Registrant, Registration};
use crate::config::{ListenAddress as ConfigAddress, ServerConfig};
use crate::server::event_loop::ListenAddress;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A live server registration plus its shutdown watcher.
pub struct ServerRegistration {
    reg: Arc<Mutex<Option<Registration>>>,
    watcher: Option<(Handle, JoinHandle<()>)>,
}

/// Register `bound` (the actual listener address) if `cfg` has `<zookeeper>`.
pub fn register_server(
    cfg: &ServerConfig,
    bound: &ListenAddress,
) -> Result<Option<ServerRegistration>, String> {
    let Some(zk) = &cfg.zookeeper else {
        return Ok(None);
    };
    let port = match bound {
        ListenAddress::Tcp(sa) => sa.port(),
        ListenAddress::Unix(p) => {
            return Err(format!(
                "<zookeeper> registration needs a TCP address, not the Unix socket {}",
                p.display()
            ))
        }
    };
    // The configured host (empty → the machine's name, in register), as zc.zkzeo.
    let host = match &cfg.zeo.address {
        ConfigAddress::Tcp { host, .. } => host.clone(),
        ConfigAddress::Unix(_) => String::new(),
    };
    let r = register(&Registrant::from_config(zk, &host, port)).map_err(|e| e.to_string())?;
    let reg = Arc::new(Mutex::new(Some(r)));
    let watcher = match Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => {
            let handle = signals.handle();
            let r2 = Arc::clone(&reg);
            std::thread::Builder::new()
                .name("zookeeper-unregister".into())
                .spawn(move || {
                    if signals.forever().next().is_some() {
                        remove(&r2);
                    }
                })
                .ok()
                .map(|t| (handle, t))
        }
        Err(e) => {
            log::warn!(
                "ZooKeeper: cannot watch for shutdown signals ({e}); the node is deleted at exit"
            );
            None
        }
    };
    Ok(Some(ServerRegistration { reg, watcher }))
}

fn remove(reg: &Mutex<Option<Registration>>) {
    let r = reg.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(r) = r {
        if let Err(e) = r.unregister() {
            log::warn!("{e}");
        }
    }
}

impl ServerRegistration {
    /// The registered node's path.
    pub fn node(&self) -> Option<String> {
        self.reg
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.node().to_string())
    }

    /// Delete the node (if a signal did not already) and stop the watcher.
    pub fn finish(mut self) {
        remove(&self.reg);
        if let Some((handle, t)) = self.watcher.take() {
            handle.close();
            let _ = t.join();
        }
    }
}
