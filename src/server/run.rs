//! Starting `zeo serve` from a [`ServerConfig`], as runzeo does: event log, storages
//! (FileStorage with optional blob directory, MappingStorage), listeners (TCP incl.
//! port 0 and IPv6, Unix sockets), the monitor and metrics endpoints, pid file,
//! systemd readiness (with STATUS= progress while a FileStorage index is rebuilt),
//! then the event loop until a signal stops it.
//!
//! Invariants: READY=1 is sent only after every storage is open and every listener
//! bound; the pid file is removed on every orderly exit; storages are closed (index
//! written) before the process exits.

use super::event_loop::{Endpoint, EventLoop, ListenAddress};
use super::notify::OpenProgress;
use super::served::{ctime, Kind, Served};
use super::zeo::{Options, ZeoService};
use super::Limits;
use crate::config::{self, LogHandler, LogPath, ServerConfig, StorageKind};
use crate::protocol::Encoding;
use crate::storage::filestorage::open::ProgressFn;
use crate::storage::filestorage::{FileStorage, Options as FsOptions};
use crate::storage::mapping::MappingStorage;
use crate::storage::Storage;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A failure to start the server, naming what could not be done.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// TLS hook: the rustls server configuration per listener (built by `tls.rs` from
/// `<ssl>`; `None` = plain).
pub type TlsConfig = Option<Arc<rustls::ServerConfig>>;

fn level_filter(python_level: u8) -> log::LevelFilter {
    match python_level {
        0 => log::LevelFilter::Trace,
        1..=10 => log::LevelFilter::Debug,
        11..=20 => log::LevelFilter::Info,
        21..=30 => log::LevelFilter::Warn,
        _ => log::LevelFilter::Error,
    }
}

/// The event-log handlers of a configuration (runzeo's default: INFO to stderr).
pub fn log_handlers(cfg: &ServerConfig) -> Vec<crate::logging::Handler> {
    let Some(ev) = &cfg.eventlog else {
        return vec![crate::logging::Handler::default()];
    };
    let mut out = Vec::new();
    for h in &ev.handlers {
        let LogHandler::File(f) = h else {
            log::warn!(target: "ZEO.runzeo", "syslog handlers are not supported; ignored");
            continue;
        };
        let destination = match &f.path {
            LogPath::Stdout => crate::logging::Destination::Stdout,
            LogPath::Stderr => crate::logging::Destination::Stderr,
            LogPath::File(p) => crate::logging::Destination::File(p.clone()),
        };
        out.push(crate::logging::Handler {
            destination,
            format: f.common.format.clone(),
            dateformat: f.common.dateformat.clone(),
            level: level_filter(ev.level.max(f.common.level)),
        });
    }
    out
}

/// Resolve a configured address to what the loop binds.
pub fn listen_address(a: &config::ListenAddress) -> Result<ListenAddress, StartError> {
    match a {
        config::ListenAddress::Unix(p) => Ok(ListenAddress::Unix(p.clone())),
        config::ListenAddress::Tcp { host, port } => {
            let host = if host.is_empty() {
                "0.0.0.0"
            } else {
                host.as_str()
            };
            let text = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            text.to_socket_addrs()
                .map_err(|e| StartError(format!("cannot resolve address {text}: {e}")))?
                .next()
                .map(ListenAddress::Tcp)
                .ok_or_else(|| StartError(format!("address {text} resolves to nothing")))
        }
    }
}

fn open_storage(
    name: &str,
    kind: &StorageKind,
    blob_dir: Option<PathBuf>,
    progress: &Arc<OpenProgress>,
) -> Result<(Arc<dyn Storage>, Kind, bool, bool), StartError> {
    match kind {
        StorageKind::File(fc) => {
            if fc.path == Path::new(crate::cli::serve::DEFAULT_FILENAME) && !fc.read_only {
                if let Some(parent) = fc.path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StartError(format!("cannot create directory {}: {e}", parent.display()))
                    })?;
                }
            }
            let opts = FsOptions {
                read_only: fc.read_only,
                create: fc.create,
                blob_dir: blob_dir.or_else(|| fc.blob_dir.clone()),
                progress: Some(ProgressFn({
                    let progress = progress.clone();
                    let (name, file) = (name.to_string(), fc.path.display().to_string());
                    Arc::new(move |p| progress.report(&name, &file, p))
                })),
                ..FsOptions::default()
            };
            let fs = FileStorage::open(&fc.path, opts).map_err(|e| {
                StartError(format!(
                    "cannot open storage {name:?} ({}): {e}",
                    fc.path.display()
                ))
            })?;
            fs.set_pack_keep_old(fc.pack_keep_old);
            if fc.quota.is_some() {
                log::warn!(
                    target: "ZEO.runzeo",
                    "storage {name:?}: the quota option is not enforced by this server"
                );
            }
            Ok((Arc::new(fs), Kind::File, fc.read_only, fc.pack_gc))
        }
        StorageKind::Mapping { name: n } => Ok((
            Arc::new(MappingStorage::with_name(n)),
            Kind::Mapping,
            false,
            true,
        )),
        StorageKind::Blob { blob_dir, base } => {
            open_storage(name, base, Some(blob_dir.clone()), progress)
        }
    }
}

/// Connection limits: `max-message-size` / `max-output-buffer` from `<zeo>`, else
/// `ZEO_MAX_MESSAGE_SIZE` / `ZEO_MAX_OUTPUT_BUFFER` (bytes) from the environment,
/// else the defaults.
fn limits(zeo: &crate::config::ZeoConfig) -> Limits {
    let mut l = Limits::default();
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    if let Some(v) = zeo.max_message_size.or_else(|| env("ZEO_MAX_MESSAGE_SIZE")) {
        l.max_message = v.max(1024);
    }
    if let Some(v) = zeo
        .max_output_buffer
        .or_else(|| env("ZEO_MAX_OUTPUT_BUFFER"))
    {
        l.max_output = v.max(64 * 1024);
        l.pause_input_at = l.pause_input_at.min(l.max_output / 2);
    }
    l
}

/// What [`start`] set up, before the loop runs (lets tests and `run` share it).
pub struct Started {
    pub event_loop: EventLoop,
    pub service: ZeoService,
    /// The addresses actually bound (port 0 resolved).
    pub bound: Vec<ListenAddress>,
    /// The monitor and metrics listeners actually bound.
    pub endpoints: Vec<(Endpoint, ListenAddress)>,
    /// Whether STATUS= progress was sent to systemd while opening storages.
    pub status_sent: bool,
}

/// Open storages and bind listeners.
pub fn start(cfg: &ServerConfig, tls: TlsConfig) -> Result<Started, StartError> {
    let started_at = ctime(std::time::SystemTime::now());
    let mut storages = Vec::new();
    let progress = Arc::new(OpenProgress::default());
    for sc in &cfg.storages {
        let (storage, kind, ro, gc) = open_storage(&sc.name, &sc.kind, None, &progress)?;
        log::info!(target: "ZEO.runzeo", "opened storage {:?}: {}", sc.name, storage.name());
        storages.push(Served::new(
            sc.name.clone(),
            storage,
            kind,
            ro || cfg.zeo.read_only,
            gc,
            cfg.zeo.invalidation_queue_size,
            started_at.clone(),
        ));
    }
    let env = std::env::var("ZEO_MSGPACK").ok();
    let greeting = if cfg.zeo.use_msgpack(env.as_deref()) {
        Encoding::Msgpack
    } else {
        Encoding::Pickle
    };
    let limits = limits(&cfg.zeo);
    let mut event_loop = EventLoop::new(limits)
        .map_err(|e| StartError(format!("cannot set up the event loop: {e}")))?;
    let addr = listen_address(&cfg.zeo.address)?;
    let bound = event_loop
        .listen(&addr, tls)
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    log::info!(target: "ZEO.asyncio.server", "listening on {bound}");
    if let Some(t) = std::env::var("ZEO_ENDPOINT_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
    {
        event_loop.set_endpoint_timeout(std::time::Duration::from_secs_f64(t));
    }
    let mut endpoints = Vec::new();
    for (endpoint, key, conf) in [
        (
            Endpoint::Monitor,
            "monitor-address",
            &cfg.zeo.monitor_address,
        ),
        (
            Endpoint::Metrics,
            "metrics-address",
            &cfg.zeo.metrics_address,
        ),
    ] {
        let Some(conf) = conf else { continue };
        let addr = listen_address(conf)?;
        let bound = event_loop
            .listen_endpoint(&addr, endpoint)
            .map_err(|e| StartError(format!("cannot listen on {addr} ({key}): {e}")))?;
        log::info!(target: "ZEO.monitor", "{key}: listening on {bound}");
        endpoints.push((endpoint, bound));
    }
    let service = ZeoService::new(
        storages,
        Options {
            greeting,
            read_only: cfg.zeo.read_only,
            invalidation_age: cfg.zeo.invalidation_age,
            transaction_timeout: cfg.zeo.transaction_timeout,
            blob_batch: (limits.max_output / 4).min(2 * 1024 * 1024),
        },
    );
    Ok(Started {
        event_loop,
        service,
        bound: vec![bound],
        endpoints,
        status_sent: progress.sent(),
    })
}

/// Run the server until a signal stops it; returns the exit status.
pub fn run(cfg: &ServerConfig, tls: TlsConfig) -> crate::Result<i32> {
    if let Err(e) = crate::logging::init(log_handlers(cfg)) {
        return Err(crate::Error::Other(format!(
            "cannot set up the event log: {e}"
        )));
    }
    for w in &cfg.warnings {
        log::warn!(target: "ZEO.runzeo", "{w}");
    }
    let mut started = match start(cfg, tls) {
        Ok(s) => s,
        Err(e) => {
            log::error!(target: "ZEO.runzeo", "{e}");
            return Err(crate::Error::Other(e.to_string()));
        }
    };
    // <zookeeper>: register the bound address (a failure stops the start).
    let registration = match crate::zookeeper::serve::register_server(cfg, &started.bound[0]) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "ZEO.runzeo", "{e}");
            for s in started.service.storages() {
                let _ = s.storage.close();
            }
            return Err(crate::Error::Other(e));
        }
    };
    let pid_file = cfg.zeo.pid_filename.clone();
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            log::error!(target: "ZEO.runzeo", "cannot write pid file {}: {e}", p.display());
        }
    }
    if started.status_sent {
        // Replace the last progress line systemd shows with the serving state.
        let n = started.service.storages().len();
        super::notify::notify(&format!(
            "READY=1\nSTATUS=Serving {n} storage(s) on {}",
            started.bound[0]
        ));
    } else {
        super::notify::notify("READY=1");
    }
    let status = started.event_loop.run(&mut started.service);
    if let Some(r) = registration {
        r.finish();
    }
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    let listeners = started.bound.iter();
    for addr in listeners.chain(started.endpoints.iter().map(|(_, a)| a)) {
        if let ListenAddress::Unix(p) = addr {
            let _ = std::fs::remove_file(p);
        }
    }
    match status {
        Ok(s) => {
            log::info!(target: "ZEO.runzeo", "exiting with status {s}");
            Ok(s)
        }
        Err(e) => {
            log::error!(target: "ZEO.runzeo", "event loop failed: {e}");
            Ok(1)
        }
    }
}
