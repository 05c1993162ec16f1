//! A blocking ZooKeeper client over std TCP, with one maintenance thread per session.
//!
//! Owns: the TCP connection to one server of the ensemble, the session (id, password,
//! negotiated timeout, last zxid seen), pings, reconnection and session re-creation.
//! Requests are strictly one at a time under one mutex, so each reply is the next
//! frame with our xid (notifications, xid -1, are skipped: we set no watches).
//!
//! Invariants:
//! - While the session lives, reconnecting (to any server of the connection string)
//!   presents the same session id and password, so ephemeral nodes survive ZooKeeper
//!   restarts and failovers.
//! - When the ensemble says the session expired, a new session is started and every
//!   ephemeral node created through [`ZooKeeper::create_ephemeral`] is created again
//!   (what zc.zk does); a stale copy owned by another session is replaced.
//! - Outages after connect are logged, never fatal: calls fail with
//!   [`ZkError::ConnectionLoss`] until the maintenance thread reconnects.

use super::address::ConnectString;
use super::jute::{self, Acl, ConnectRequest, Dec, Request, Stat};
use super::ZkError;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Session options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requested session timeout (the server clamps it to its min/max).
    pub session_timeout: Duration,
    /// TCP connect and handshake timeout, per server address.
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // zc.zk's default session timeout.
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

struct Conn {
    stream: TcpStream,
    server: String,
}

struct Ephemeral {
    path: String,
    data: Vec<u8>,
    acl: Vec<Acl>,
}

struct Inner {
    conn: Option<Conn>,
    session_id: i64,
    password: Vec<u8>,
    negotiated: Duration,
    last_zxid: i64,
    xid: i32,
    next_server: usize,
    last_server: String,
    disconnected_since: Option<Instant>,
    outage_logged: bool,
    ephemerals: Vec<Ephemeral>,
    /// Set while ephemerals are being restored: calls then never reconnect (no
    /// recursion when the link flaps mid-restore; the maintenance thread retries).
    restoring: bool,
    /// A restore did not complete (e.g. the link broke): redo it on reconnect even
    /// when the session is kept.
    needs_restore: bool,
    stop: bool,
}

struct Shared {
    cs: ConnectString,
    opts: Options,
    inner: Mutex<Inner>,
    wake: Condvar,
}

/// A ZooKeeper session. Dropping it closes the session (its ephemeral nodes vanish).
pub struct ZooKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

enum Handshake {
    Connected(Conn, jute::ConnectResponse),
    Expired,
    /// The server closed the connection without answering (e.g. it has seen an older
    /// zxid than we have: a wiped ensemble).
    Refused,
}

impl ZooKeeper {
    /// Connect to `connection` (`host:port,host:port[/chroot]`) and start a session.
    /// Fails with [`ZkError::Unreachable`] when no server answers.
    pub fn connect(connection: &str, opts: Options) -> Result<ZooKeeper, ZkError> {
        let cs = ConnectString::parse(connection)?;
        let inner = Inner {
            conn: None,
            session_id: 0,
            password: vec![0; 16],
            negotiated: opts.session_timeout,
            last_zxid: 0,
            xid: 0,
            next_server: 0,
            last_server: cs.servers.first().cloned().unwrap_or_default(),
            disconnected_since: None,
            outage_logged: false,
            ephemerals: Vec::new(),
            restoring: false,
            needs_restore: false,
            stop: false,
        };
        let shared = Arc::new(Shared {
            cs,
            opts,
            inner: Mutex::new(inner),
            wake: Condvar::new(),
        });
        {
            let mut g = shared.lock();
            shared.reconnect(&mut g)?;
        }
        let s2 = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || s2.maintain())
            .map_err(|e| ZkError::Unreachable {
                servers: shared.cs.hosts(),
                detail: format!("cannot start the session thread: {e}"),
            })?;
        Ok(ZooKeeper {
            shared,
            thread: Some(thread),
        })
    }

    /// The current session id (changes when a session expired and was replaced).
    pub fn session_id(&self) -> i64 {
        self.shared.lock().session_id
    }

    /// The negotiated session timeout.
    pub fn session_timeout(&self) -> Duration {
        self.shared.lock().negotiated
    }

    /// True while a TCP connection with a live session is open.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().conn.is_some()
    }

    /// The server of the current (or last) connection.
    pub fn server(&self) -> String {
        self.shared.lock().last_server.clone()
    }

    /// The connection string's servers, for messages.
    pub fn hosts(&self) -> String {
        self.shared.cs.hosts()
    }

    /// Create a node; returns its path (relative to the chroot).
    pub fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: Vec<Acl>,
        flags: i32,
    ) -> Result<String, ZkError> {
        let mut g = self.shared.lock();
        self.shared.create_locked(&mut g, path, data, acl, flags)
    }

    /// Create an ephemeral node and remember it, so it is created again in a new
    /// session should this one expire.
    pub fn create_ephemeral(
        &self,
        path: &str,
        data: &[u8],
        acl: Vec<Acl>,
    ) -> Result<String, ZkError> {
        let mut g = self.shared.lock();
        let r = self
            .shared
            .create_locked(&mut g, path, data, acl.clone(), jute::EPHEMERAL);
        let r = match r {
            Err(ZkError::Server { code, .. }) if code == jute::ERR_NODE_EXISTS => {
                self.shared.replace_stale(&mut g, path, data, &acl)
            }
            r => r,
        }?;
        g.ephemerals.retain(|e| e.path != path);
        g.ephemerals.push(Ephemeral {
            path: path.to_string(),
            data: data.to_vec(),
            acl,
        });
        Ok(r)
    }

    /// Delete a node (any version); forgets it as an ephemeral to restore.
    pub fn delete(&self, path: &str) -> Result<(), ZkError> {
        let mut g = self.shared.lock();
        g.ephemerals.retain(|e| e.path != path);
        self.shared.call(
            &mut g,
            Request::Delete {
                path: self.shared.full(path)?,
                version: -1,
            },
            path,
        )?;
        Ok(())
    }

    /// The node's stat, or None when it does not exist.
    pub fn exists(&self, path: &str) -> Result<Option<Stat>, ZkError> {
        let mut g = self.shared.lock();
        self.shared.exists_locked(&mut g, path)
    }

    /// The node's data and stat.
    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ZkError> {
        let mut g = self.shared.lock();
        let body = self.shared.call(
            &mut g,
            Request::GetData {
                path: self.shared.full(path)?,
            },
            path,
        )?;
        let mut d = Dec::new(&body);
        jute::decode_get_data(&mut d).map_err(|e| self.shared.protocol(&g, e))
    }

    /// Replace the node's data (any version).
    pub fn set_data(&self, path: &str, data: &[u8]) -> Result<Stat, ZkError> {
        let mut g = self.shared.lock();
        let body = self.shared.call(
            &mut g,
            Request::SetData {
                path: self.shared.full(path)?,
                data: data.to_vec(),
                version: -1,
            },
            path,
        )?;
        if let Some(e) = g.ephemerals.iter_mut().find(|e| e.path == path) {
            e.data = data.to_vec();
        }
        jute::decode_stat(&mut Dec::new(&body)).map_err(|e| self.shared.protocol(&g, e))
    }

    /// The names of the node's children, sorted.
    pub fn get_children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        let mut g = self.shared.lock();
        let body = self.shared.call(
            &mut g,
            Request::GetChildren {
                path: self.shared.full(path)?,
            },
            path,
        )?;
        let mut names =
            jute::decode_children(&mut Dec::new(&body)).map_err(|e| self.shared.protocol(&g, e))?;
        names.sort();
        Ok(names)
    }

    /// Close the session now (its ephemeral nodes are deleted by the ensemble).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        {
            let mut g = self.shared.lock();
            g.stop = true;
            g.ephemerals.clear();
            if g.conn.is_some() {
                let _ = self.shared.call(&mut g, Request::CloseSession, "");
            }
            g.conn = None;
            self.shared.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-call; the state is
        // still a valid (possibly disconnected) session.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The path on the wire (with the chroot prepended).
    fn full(&self, path: &str) -> Result<String, ZkError> {
        if super::address::normalize_path(path).as_deref() != Some(path) {
            return Err(ZkError::Address(format!(
                "invalid ZooKeeper path {path:?} (absolute, no trailing or double slash)"
            )));
        }
        Ok(match &self.cs.chroot {
            Some(c) if path == "/" => c.clone(),
            Some(c) => format!("{c}{path}"),
            None => path.to_string(),
        })
    }

    fn strip_chroot(&self, path: String) -> String {
        match &self.cs.chroot {
            Some(c) => match path.strip_prefix(c.as_str()) {
                Some("") => "/".into(),
                Some(rest) => rest.to_string(),
                None => path,
            },
            None => path,
        }
    }

    fn protocol(&self, g: &Inner, e: jute::DecodeError) -> ZkError {
        ZkError::Protocol {
            server: g.last_server.clone(),
            detail: e.to_string(),
        }
    }

    fn create_locked(
        &self,
        g: &mut Inner,
        path: &str,
        data: &[u8],
        acl: Vec<Acl>,
        flags: i32,
    ) -> Result<String, ZkError> {
        let body = self.call(
            g,
            Request::Create {
                path: self.full(path)?,
                data: data.to_vec(),
                acl,
                flags,
            },
            path,
        )?;
        let created = Dec::new(&body)
            .string("created path")
            .map_err(|e| self.protocol(g, e))?;
        Ok(self.strip_chroot(created))
    }

    fn exists_locked(&self, g: &mut Inner, path: &str) -> Result<Option<Stat>, ZkError> {
        let r = self.call(
            g,
            Request::Exists {
                path: self.full(path)?,
            },
            path,
        );
        match r {
            Ok(body) => Ok(Some(
                jute::decode_stat(&mut Dec::new(&body)).map_err(|e| self.protocol(g, e))?,
            )),
            Err(ZkError::Server { code, .. }) if code == jute::ERR_NO_NODE => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node exists: keep it if this session owns it, else (a leftover of a dead
    /// session of ours, e.g. before a crash) delete it and create ours.
    fn replace_stale(
        &self,
        g: &mut Inner,
        path: &str,
        data: &[u8],
        acl: &[Acl],
    ) -> Result<String, ZkError> {
        if let Some(st) = self.exists_locked(g, path)? {
            if st.ephemeral_owner == g.session_id {
                return Ok(path.to_string());
            }
            log::warn!(
                "ZooKeeper: replacing {path} left by session 0x{:x} (ours is 0x{:x})",
                st.ephemeral_owner,
                g.session_id
            );
            match self.call(
                g,
                Request::Delete {
                    path: self.full(path)?,
                    version: -1,
                },
                path,
            ) {
                Ok(_) => {}
                Err(ZkError::Server { code, .. }) if code == jute::ERR_NO_NODE => {}
                Err(e) => return Err(e),
            }
        }
        self.create_locked(g, path, data, acl.to_vec(), jute::EPHEMERAL)
    }

    /// One request/reply; reconnects first when disconnected. Returns the reply body.
    fn call(&self, g: &mut Inner, req: Request, path: &str) -> Result<Vec<u8>, ZkError> {
        if g.conn.is_none() && !g.stop && !g.restoring {
            self.reconnect(g).map_err(|e| ZkError::ConnectionLoss {
                server: g.last_server.clone(),
                op: req.name(),
                path: path.to_string(),
                detail: e.to_string(),
            })?;
        }
        let xid = if matches!(req, Request::Ping) {
            jute::XID_PING
        } else {
            g.xid = g.xid.wrapping_add(1) & 0x7fff_ffff;
            g.xid
        };
        let frame = jute::encode_request(xid, &req);
        let loss = |g: &mut Inner, detail: String| {
            self.lost(g, &detail);
            ZkError::ConnectionLoss {
                server: g.last_server.clone(),
                op: req.name(),
                path: path.to_string(),
                detail,
            }
        };
        let Some(conn) = g.conn.as_mut() else {
            return Err(loss(g, "not connected".into()));
        };
        if let Err(e) = conn.stream.write_all(&frame) {
            return Err(loss(g, format!("send failed: {e}")));
        }
        let payload = loop {
            let Some(conn) = g.conn.as_mut() else {
                return Err(loss(g, "not connected".into()));
            };
            let payload = match read_frame(&mut conn.stream) {
                Ok(p) => p,
                Err(e) => return Err(loss(g, e)),
            };
            let mut d = Dec::new(&payload);
            let h = match jute::decode_header(&mut d) {
                Ok(h) => h,
                Err(e) => return Err(loss(g, e.to_string())),
            };
            if h.xid == xid {
                if h.zxid > g.last_zxid {
                    g.last_zxid = h.zxid;
                }
                if h.err == jute::ERR_SESSION_EXPIRED {
                    return Err(loss(g, "session expired".into()));
                }
                if h.err != 0 {
                    return Err(ZkError::Server {
                        server: g.last_server.clone(),
                        op: req.name(),
                        path: path.to_string(),
                        code: h.err,
                    });
                }
                break payload;
            }
            // Notifications and stray ping replies: skip.
        };
        Ok(payload.get(16..).unwrap_or_default().to_vec())
    }

    fn lost(&self, g: &mut Inner, detail: &str) {
        if g.conn.take().is_some() && !g.stop {
            log::warn!(
                "ZooKeeper: lost connection to {} ({detail}); reconnecting",
                g.last_server
            );
            g.outage_logged = true;
        }
        if g.disconnected_since.is_none() {
            g.disconnected_since = Some(Instant::now());
        }
    }

    /// Try every server once (starting after the last one used). Keeps the session
    /// when it is still alive; starts a new one (restoring ephemerals) when expired.
    fn reconnect(&self, g: &mut Inner) -> Result<(), ZkError> {
        let n = self.cs.servers.len();
        let mut last = String::from("no server in the connection string");
        for k in 0..n {
            let idx = (g.next_server + k) % n;
            let server = self.cs.servers[idx].clone();
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.handshake(g, &server) {
                    Ok(Handshake::Connected(conn, resp)) => {
                        g.next_server = (idx + 1) % n;
                        self.established(g, conn, resp);
                        return Ok(());
                    }
                    Ok(Handshake::Expired) if attempts == 1 => {
                        log::warn!(
                            "ZooKeeper: session 0x{:x} expired (server {server}); starting a new session",
                            g.session_id
                        );
                        g.session_id = 0;
                        g.password = vec![0; 16];
                    }
                    Ok(Handshake::Refused)
                        if attempts == 1
                            && g.session_id != 0
                            && g.disconnected_since
                                .is_some_and(|t| t.elapsed() > g.negotiated) =>
                    {
                        // The server refuses our history (wiped data, or a server far
                        // behind): after a session timeout, the old session is gone
                        // anyway; start afresh.
                        log::warn!(
                            "ZooKeeper: {server} refuses session 0x{:x}; starting a new session",
                            g.session_id
                        );
                        g.session_id = 0;
                        g.password = vec![0; 16];
                        g.last_zxid = 0;
                    }
                    Ok(Handshake::Expired) | Ok(Handshake::Refused) => {
                        last = format!("{server}: connection closed during the handshake");
                        break;
                    }
                    Err(e) => {
                        last = format!("{server}: {e}");
                        break;
                    }
                }
            }
        }
        g.next_server = (g.next_server + 1) % n.max(1);
        if g.disconnected_since.is_none() {
            g.disconnected_since = Some(Instant::now());
        }
        Err(ZkError::Unreachable {
            servers: self.cs.hosts(),
            detail: last,
        })
    }

    fn handshake(&self, g: &Inner, server: &str) -> Result<Handshake, String> {
        let addrs: Vec<_> = server
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve: {e}"))?
            .collect();
        let mut err = String::from("no address");
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => err = e.to_string(),
            }
        }
        let mut stream = stream.ok_or(err)?;
        let io = |e: std::io::Error| e.to_string();
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(self.opts.connect_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(self.opts.connect_timeout))
            .map_err(io)?;
        let timeout_ms = i32::try_from(self.opts.session_timeout.as_millis()).unwrap_or(i32::MAX);
        let req = jute::encode_connect(&ConnectRequest {
            last_zxid: g.last_zxid,
            timeout_ms,
            session_id: g.session_id,
            password: g.password.clone(),
        });
        stream.write_all(&req).map_err(io)?;
        let payload = match read_frame(&mut stream) {
            Ok(p) => p,
            Err(e) if e.contains("closed") => return Ok(Handshake::Refused),
            Err(e) => return Err(e),
        };
        let resp = jute::decode_connect(&payload).map_err(|e| e.to_string())?;
        if resp.timeout_ms <= 0 {
            return Ok(Handshake::Expired);
        }
        Ok(Handshake::Connected(
            Conn {
                stream,
                server: server.to_string(),
            },
            resp,
        ))
    }

    fn established(&self, g: &mut Inner, conn: Conn, resp: jute::ConnectResponse) {
        let old = g.session_id;
        let negotiated = Duration::from_millis(u64::try_from(resp.timeout_ms).unwrap_or(1));
        let read_timeout = (negotiated * 2 / 3).max(Duration::from_millis(200));
        let _ = conn.stream.set_read_timeout(Some(read_timeout));
        let _ = conn.stream.set_write_timeout(Some(read_timeout));
        g.last_server = conn.server.clone();
        g.conn = Some(conn);
        g.session_id = resp.session_id;
        g.password = resp.password;
        g.negotiated = negotiated;
        let was_out = g.disconnected_since.take().is_some() && g.outage_logged;
        g.outage_logged = false;
        if old != 0 && old == g.session_id && !g.needs_restore {
            if was_out {
                log::info!(
                    "ZooKeeper: reconnected to {} (session 0x{:x} kept)",
                    g.last_server,
                    g.session_id
                );
            }
            return;
        }
        if !g.ephemerals.is_empty() {
            log::info!(
                "ZooKeeper: new session 0x{:x} on {}; restoring {} ephemeral node(s)",
                g.session_id,
                g.last_server,
                g.ephemerals.len()
            );
        }
        self.restore(g);
    }

    /// Create every remembered ephemeral node in the current session. Failures are
    /// logged once and retried by the maintenance thread (e.g. the registry path is
    /// missing after a wiped ensemble, until someone creates it again).
    fn restore(&self, g: &mut Inner) {
        let nodes = std::mem::take(&mut g.ephemerals);
        let retry = g.needs_restore;
        g.restoring = true;
        let mut failed = false;
        for e in &nodes {
            let r = match self.create_locked(g, &e.path, &e.data, e.acl.clone(), jute::EPHEMERAL) {
                Err(ZkError::Server { code, .. }) if code == jute::ERR_NODE_EXISTS => {
                    self.replace_stale(g, &e.path, &e.data, &e.acl)
                }
                r => r,
            };
            match r {
                Ok(_) => log::info!("ZooKeeper: registered {} again", e.path),
                Err(err) => {
                    failed = true;
                    if retry {
                        log::debug!("ZooKeeper: cannot create {} again: {err}", e.path);
                    } else {
                        log::error!("ZooKeeper: cannot create {} again: {err}; retrying", e.path);
                    }
                }
            }
        }
        g.restoring = false;
        g.needs_restore = failed;
        // Still to restore in the next session should this one expire too.
        g.ephemerals = nodes;
    }

    /// The maintenance thread: ping while connected, reconnect while not.
    fn maintain(&self) {
        let mut g = self.lock();
        loop {
            if g.stop {
                return;
            }
            let wait = if g.conn.is_some() {
                (g.negotiated / 3).max(Duration::from_millis(100))
            } else {
                Duration::from_millis(500)
            };
            g = self
                .wake
                .wait_timeout(g, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            if g.stop {
                return;
            }
            if g.conn.is_some() && g.needs_restore {
                self.restore(&mut g);
            } else if g.conn.is_some() {
                let _ = self.call(&mut g, Request::Ping, "");
            } else if let Err(e) = self.reconnect(&mut g) {
                if g.outage_logged {
                    log::debug!("ZooKeeper: still unreachable: {e}");
                } else {
                    log::warn!("ZooKeeper: {e}; retrying");
                    g.outage_logged = true;
                }
            }
        }
    }
}

/// Read one length-prefixed frame. Errors are phrased for messages ("connection
/// closed by the server", "timed out", ...).
fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    read_exact(s, &mut len)?;
    let n = jute::frame_len(len).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; n];
    read_exact(s, &mut buf)?;
    Ok(buf)
}

fn read_exact(s: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    s.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            "connection closed by the server".to_string()
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no reply within the session's read timeout".to_string()
        }
        _ => e.to_string(),
    })
}
