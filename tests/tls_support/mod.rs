//! Test support shared by tests/tls_server.rs and tests/interop/tls.rs: our EventLoop
//! serving a tiny echo Service on a TLS listener, and a logger that keeps log lines.
//!
//! The echo service greets with `Z5` (as a ZEO server does), answers `ruok` with a
//! small JSON document and then closes, and echoes every other message. It records
//! every close reason, so tests can check what the server saw.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use zeo::config::{Authenticate, SslConfig};
use zeo::server::{CloseReason, ConnId, EventLoop, Limits, ListenAddress, Outbox, Service, Signal};

pub fn fx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// ZEO's testssl server: server.pem/server_key.pem, trusting client.pem.
pub fn zeo_ssl() -> SslConfig {
    SslConfig {
        certificate: fx("server.pem"),
        key: Some(fx("server_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(fx("client.pem")),
    }
}

/// Close reasons the service heard, with the peer.
pub type Closes = Arc<Mutex<Vec<(String, CloseReason)>>>;

struct Echo {
    peers: std::collections::HashMap<ConnId, String>,
    closes: Closes,
}

impl Service for Echo {
    type Completion = ();
    fn on_connect(&mut self, conn: ConnId, peer: &str, out: &mut Outbox<()>) {
        self.peers.insert(conn, peer.to_string());
        out.send(conn, b"Z5".to_vec());
    }
    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<()>) {
        if msg == b"ruok" {
            out.send(conn, br#"{"echo": "ok"}"#.to_vec());
            out.close_after_flush(conn);
        } else {
            out.send(conn, msg);
        }
    }
    fn on_close(&mut self, conn: ConnId, why: &CloseReason, _out: &mut Outbox<()>) {
        let peer = self.peers.remove(&conn).unwrap_or_default();
        self.closes.lock().unwrap().push((peer, why.clone()));
    }
    fn on_timer(&mut self, _key: u64, _out: &mut Outbox<()>) {}
    fn on_completion(&mut self, _done: (), _out: &mut Outbox<()>) {}
    fn on_signal(&mut self, _sig: Signal, _out: &mut Outbox<()>) {}
}

/// Start an echo server on 127.0.0.1 (any port) with `ssl`; it runs until the process
/// ends. Returns its address and the close reasons it records.
pub fn start_echo(ssl: &SslConfig) -> (SocketAddr, Closes) {
    let cfg = zeo::server::tls::server_config(ssl).expect("server TLS config");
    let closes: Closes = Arc::default();
    let (tx, rx) = mpsc::channel();
    let recorded = closes.clone();
    std::thread::spawn(move || {
        let mut el = EventLoop::new(Limits::default()).expect("event loop");
        let bound = el
            .listen(
                &ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()),
                Some(cfg),
            )
            .expect("listen");
        let ListenAddress::Tcp(addr) = bound else {
            unreachable!()
        };
        tx.send(addr).unwrap();
        let mut svc = Echo {
            peers: Default::default(),
            closes: recorded,
        };
        let _ = el.run(&mut svc);
    });
    (rx.recv().expect("server address"), closes)
}

/// Wait up to 5 s for a close reason from `peer_port`'s connection matching `pred`.
pub fn wait_close(closes: &Closes, pred: impl Fn(&CloseReason) -> bool) -> Option<CloseReason> {
    for _ in 0..500 {
        if let Some((_, why)) = closes.lock().unwrap().iter().find(|(_, w)| pred(w)) {
            return Some(why.clone());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

struct Keep;
static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}", r.level(), r.args());
            LINES
                .get_or_init(Default::default)
                .lock()
                .unwrap()
                .push(line);
        }
    }
    fn flush(&self) {}
}

/// Install the keeping logger (once per test binary).
pub fn keep_logs() {
    static KEEP: Keep = Keep;
    if log::set_logger(&KEEP).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Log lines kept so far that contain `needle`.
pub fn log_lines(needle: &str) -> Vec<String> {
    LINES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}
