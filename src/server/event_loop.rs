//! The single-threaded mio event loop: listeners (TCP, Unix, each optionally TLS),
//! connections, timers, signals, and completions from worker threads.
//!
//! The loop owns all sockets and knows nothing of ZEO: it hands complete messages to
//! a [`Service`] and carries out the [`Action`]s the service queues in its [`Outbox`].
//! Invariants: every protocol decision is made on this thread, in one total order (so
//! invalidations and replies leave in the order the service queued them); work that
//! may block for long (fsync, pack) runs in worker threads spawned through
//! [`Outbox::spawn`] and comes back as a completion on this thread; a connection is
//! closed exactly once and the service always hears about it through
//! [`Service::on_close`], whoever initiated the close.
//!
//! Endpoint listeners (monitor, metrics) accept *raw* connections the service never
//! sees as connections: the loop answers them itself with the text the service
//! renders ([`Service::report`]) and closes them. Their requests are bounded
//! ([`super::http::MAX_REQUEST`] bytes), their number is capped ([`MAX_ENDPOINT_CONNS`])
//! and each lives at most the endpoint timeout, so a slow or hostile peer costs a
//! few kilobytes and never blocks the loop.

use super::connection::{CloseReason, Connection, Limits, Socket};
use endpoint::RawState;
pub use endpoint::{Endpoint, ENDPOINT_TIMEOUT, MAX_ENDPOINT_CONNS};

mod endpoint;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identifies a connection for the service (stable for the connection's lifetime).
pub type ConnId = usize;

const WAKER: Token = Token(0);
/// Tokens 1..=4: one self-pipe per handled signal, in the order of `HANDLED`.
const FIRST_SIGNAL: usize = 1;
/// Listener tokens are FIRST_LISTENER..FIRST_CONN; connection tokens start at FIRST_CONN.
const FIRST_LISTENER: usize = 8;
const FIRST_CONN: usize = 1024;

/// The signals the loop reports, each through its own self-pipe.
const HANDLED: [(i32, Signal); 4] = [
    (signal_hook::consts::SIGTERM, Signal::Terminate),
    (signal_hook::consts::SIGINT, Signal::Interrupt),
    (signal_hook::consts::SIGHUP, Signal::Hangup),
    (signal_hook::consts::SIGUSR2, Signal::User2),
];

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Tcp(a) => write!(f, "{a}"),
            ListenAddress::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Something the service wants done.
pub enum Action {
    /// Queue one message (payload without the length prefix) to a connection.
    Send(ConnId, Vec<u8>),
    /// Close a connection now (queued output is dropped).
    Close(ConnId, String),
    /// Close a connection once its queued output is written.
    CloseAfterFlush(ConnId),
    /// Call `Service::on_timer(key)` at or after this instant.
    Timer(Instant, u64),
    /// Stop the loop; `run` returns this exit status.
    Stop(i32),
    /// Call `Service::on_drained(conn)` once the connection's unsent output is below
    /// the input-pause threshold (flow control for long streams such as blobs).
    WhenDrained(ConnId),
}

type Job<C> = Box<dyn FnOnce() -> C + Send>;

/// Actions queued by the service while it handles one event.
pub struct Outbox<C> {
    actions: Vec<Action>,
    /// Jobs with whether they go to the one long-lived serial worker.
    jobs: Vec<(bool, Job<C>)>,
}

impl<C> Outbox<C> {
    fn new() -> Self {
        Outbox {
            actions: Vec::new(),
            jobs: Vec::new(),
        }
    }
    pub fn send(&mut self, conn: ConnId, payload: Vec<u8>) {
        self.actions.push(Action::Send(conn, payload));
    }
    pub fn close(&mut self, conn: ConnId, why: impl Into<String>) {
        self.actions.push(Action::Close(conn, why.into()));
    }
    pub fn close_after_flush(&mut self, conn: ConnId) {
        self.actions.push(Action::CloseAfterFlush(conn));
    }
    pub fn timer(&mut self, at: Instant, key: u64) {
        self.actions.push(Action::Timer(at, key));
    }
    pub fn stop(&mut self, status: i32) {
        self.actions.push(Action::Stop(status));
    }
    /// Ask for [`Service::on_drained`] once `conn`'s queued output has drained.
    pub fn when_drained(&mut self, conn: ConnId) {
        self.actions.push(Action::WhenDrained(conn));
    }
    /// Run `job` on a worker thread; its result comes back through
    /// [`Service::on_completion`] on the loop thread.
    pub fn spawn(&mut self, job: impl FnOnce() -> C + Send + 'static) {
        self.jobs.push((false, Box::new(job)));
    }
    /// Run `job` on the loop's one long-lived serial worker, after the serial jobs
    /// queued before it (short, frequent work such as a commit's fsync: no thread is
    /// started per job); its result comes back like a [`Outbox::spawn`] job's.
    pub fn spawn_serial(&mut self, job: impl FnOnce() -> C + Send + 'static) {
        self.jobs.push((true, Box::new(job)));
    }
    /// The actions queued so far (for tests of services without a loop).
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }
    /// The jobs queued so far, for tests that run them inline.
    pub fn take_jobs(&mut self) -> Vec<Job<C>> {
        self.jobs.drain(..).map(|(_, j)| j).collect()
    }
}

impl<C> Default for Outbox<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// Signals the loop reports to the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
    Hangup,
    User2,
}

/// The ZEO server logic, driven by the loop.
pub trait Service {
    /// Result type of worker jobs.
    type Completion: Send + 'static;
    fn on_connect(&mut self, conn: ConnId, peer: &str, out: &mut Outbox<Self::Completion>);
    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<Self::Completion>);
    /// The connection is gone (peer EOF, error, or our own close).
    fn on_close(&mut self, conn: ConnId, why: &CloseReason, out: &mut Outbox<Self::Completion>);
    fn on_timer(&mut self, key: u64, out: &mut Outbox<Self::Completion>);
    fn on_completion(&mut self, done: Self::Completion, out: &mut Outbox<Self::Completion>);
    fn on_signal(&mut self, sig: Signal, out: &mut Outbox<Self::Completion>);
    /// The connection's output drained after [`Outbox::when_drained`].
    fn on_drained(&mut self, _conn: ConnId, _out: &mut Outbox<Self::Completion>) {}
    /// The text an endpoint serves: the monitor report, or the metrics exposition.
    fn report(&mut self, _what: Endpoint) -> String {
        String::new()
    }
}

struct ListenerEntry {
    listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Set for monitor/metrics listeners.
    endpoint: Option<Endpoint>,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The event loop.
pub struct EventLoop {
    poll: Poll,
    listeners: Vec<ListenerEntry>,
    conns: HashMap<usize, Connection>,
    next_token: usize,
    limits: Limits,
    timers: BTreeMap<(Instant, u64), ()>,
    /// Connections whose output or interest may have changed since the last flush.
    dirty: HashSet<usize>,
    signal_pipes: Vec<mio::net::UnixStream>,
    waker: Arc<Waker>,
    /// Connections whose service waits for their output to drain.
    drain_wait: HashSet<usize>,
    /// Endpoint connections (never shown to the service).
    raw: HashMap<usize, RawState>,
    /// When each endpoint connection must be gone (stale entries are skipped).
    raw_deadlines: BTreeSet<(Instant, usize)>,
    endpoint_timeout: Duration,
}

/// A handle worker threads use to hand completions back.
struct Completions<C> {
    done: Arc<Mutex<Vec<C>>>,
    waker: Arc<Waker>,
    /// The serial worker's queue, started on first use; dropping it (when `run`
    /// returns) lets the worker finish what it has and exit.
    serial: std::sync::OnceLock<std::sync::mpsc::Sender<Job<C>>>,
}

impl<C: Send + 'static> Completions<C> {
    fn deliver(done: &Mutex<Vec<C>>, waker: &Waker, result: C) {
        done.lock().expect("completion queue poisoned").push(result);
        let _ = waker.wake();
    }

    fn run_job(&self, serial: bool, job: Job<C>) {
        let (done, waker) = (self.done.clone(), self.waker.clone());
        if !serial {
            std::thread::spawn(move || Self::deliver(&done, &waker, job()));
            return;
        }
        let tx = self.serial.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job<C>>();
            std::thread::spawn(move || {
                for job in rx {
                    Self::deliver(&done, &waker, job());
                }
            });
            tx
        });
        if let Err(std::sync::mpsc::SendError(job)) = tx.send(job) {
            // The worker is gone (it panicked): run the job on a thread of its own.
            let (done, waker) = (self.done.clone(), self.waker.clone());
            std::thread::spawn(move || Self::deliver(&done, &waker, job()));
        }
    }
}

impl EventLoop {
    /// Create the loop and install signal handlers (SIGTERM, SIGINT, SIGHUP, SIGUSR2).
    pub fn new(limits: Limits) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut signal_pipes = Vec::new();
        for (i, (sig, _)) in HANDLED.iter().enumerate() {
            let (mut rx, tx) = mio::net::UnixStream::pair()?;
            signal_hook::low_level::pipe::register(*sig, tx)?;
            poll.registry()
                .register(&mut rx, Token(FIRST_SIGNAL + i), Interest::READABLE)?;
            signal_pipes.push(rx);
        }
        Ok(EventLoop {
            poll,
            listeners: Vec::new(),
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            limits,
            timers: BTreeMap::new(),
            dirty: HashSet::new(),
            signal_pipes,
            waker,
            drain_wait: HashSet::new(),
            raw: HashMap::new(),
            raw_deadlines: BTreeSet::new(),
            endpoint_timeout: ENDPOINT_TIMEOUT,
        })
    }

    /// How long an endpoint connection may live (default [`ENDPOINT_TIMEOUT`]).
    pub fn set_endpoint_timeout(&mut self, timeout: Duration) {
        self.endpoint_timeout = timeout;
    }

    /// Bind a monitor or metrics listener; returns the address actually bound.
    pub fn listen_endpoint(
        &mut self,
        addr: &ListenAddress,
        endpoint: Endpoint,
    ) -> io::Result<ListenAddress> {
        let bound = self.listen(addr, None)?;
        if let Some(entry) = self.listeners.last_mut() {
            entry.endpoint = Some(endpoint);
        }
        Ok(bound)
    }

    /// Bind a listener; returns the address actually bound (port 0 resolved).
    pub fn listen(
        &mut self,
        addr: &ListenAddress,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<ListenAddress> {
        let token = Token(FIRST_LISTENER + self.listeners.len());
        if token.0 >= FIRST_CONN {
            return Err(io::Error::other("too many listeners"));
        }
        let (listener, bound) = match addr {
            ListenAddress::Tcp(sa) => {
                let mut l = TcpListener::bind(*sa)?;
                let bound = l.local_addr()?;
                self.poll
                    .registry()
                    .register(&mut l, token, Interest::READABLE)?;
                (Listener::Tcp(l), ListenAddress::Tcp(bound))
            }
            ListenAddress::Unix(path) => {
                // A stale socket file from a previous run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    .unwrap_or(false)
                {
                    let _ = std::fs::remove_file(path);
                }
                let mut l = UnixListener::bind(path)?;
                self.poll
                    .registry()
                    .register(&mut l, token, Interest::READABLE)?;
                (
                    Listener::Unix(l, path.clone()),
                    ListenAddress::Unix(path.clone()),
                )
            }
        };
        self.listeners.push(ListenerEntry {
            listener,
            tls,
            endpoint: None,
        });
        Ok(bound)
    }

    /// Run until the service stops the loop; returns the exit status it gave.
    pub fn run<S: Service>(&mut self, service: &mut S) -> io::Result<i32> {
        let completions = Completions {
            done: Arc::new(Mutex::new(Vec::<S::Completion>::new())),
            waker: self.waker.clone(),
            serial: std::sync::OnceLock::new(),
        };
        let mut events = Events::with_capacity(1024);
        loop {
            let next_timer = self.timers.keys().next().map(|(at, _)| *at);
            let next_raw = self.raw_deadlines.iter().next().map(|(at, _)| *at);
            let timeout = match (next_timer, next_raw) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|at| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut out = Outbox::new();
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        let done: Vec<S::Completion> = std::mem::take(
                            &mut *completions.done.lock().expect("completion queue poisoned"),
                        );
                        for c in done {
                            service.on_completion(c, &mut out);
                        }
                    }
                    Token(t) if t < FIRST_LISTENER => {
                        self.read_signal(t - FIRST_SIGNAL, service, &mut out)
                    }
                    Token(t) if t < FIRST_CONN => {
                        self.accept(t - FIRST_LISTENER, service, &mut out)
                    }
                    Token(t) => self.conn_event(
                        t,
                        event.is_readable(),
                        event.is_writable(),
                        event.is_read_closed() || event.is_error(),
                        service,
                        &mut out,
                    ),
                }
                if let Some(status) = self.apply(service, &mut out, &completions) {
                    return Ok(status);
                }
            }
            // Endpoint connections past their deadline.
            let now = Instant::now();
            while let Some(&(at, id)) = self.raw_deadlines.iter().next() {
                if at > now {
                    break;
                }
                self.raw_deadlines.remove(&(at, id));
                if self.raw.contains_key(&id) {
                    let why = CloseReason::Server("endpoint connection timed out".into());
                    self.close(id, why, service, &mut out);
                }
            }
            if let Some(status) = self.apply(service, &mut out, &completions) {
                return Ok(status);
            }
            // Timers that are due.
            while let Some((&(at, key), _)) = self.timers.iter().next() {
                if at > now {
                    break;
                }
                self.timers.remove(&(at, key));
                service.on_timer(key, &mut out);
                if let Some(status) = self.apply(service, &mut out, &completions) {
                    return Ok(status);
                }
            }
        }
    }

    fn read_signal<S: Service>(
        &mut self,
        index: usize,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        let (Some(pipe), Some((_, sig))) = (self.signal_pipes.get_mut(index), HANDLED.get(index))
        else {
            return;
        };
        // Drain the pipe; several deliveries of one signal count once.
        let mut buf = [0u8; 64];
        let mut seen = false;
        loop {
            match io::Read::read(pipe, &mut buf) {
                Ok(0) => break,
                Ok(_) => seen = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if seen {
            service.on_signal(*sig, out);
        }
    }

    fn accept<S: Service>(
        &mut self,
        index: usize,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        loop {
            let Some(entry) = self.listeners.get(index) else {
                return;
            };
            let accepted = match &entry.listener {
                Listener::Tcp(l) => l.accept().map(|(s, a)| {
                    let _ = s.set_nodelay(true);
                    (Socket::Tcp(s), a.to_string())
                }),
                Listener::Unix(l, path) => l
                    .accept()
                    .map(|(s, _)| (Socket::Unix(s), path.display().to_string())),
            };
            let (socket, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and wait for the next readiness event.
                    log::error!("accept failed: {e}");
                    return;
                }
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Some(endpoint) = entry.endpoint {
                self.accept_endpoint(token, endpoint, socket, peer, service);
                continue;
            }
            let tls = entry.tls.clone();
            let mut conn = match Connection::new(token, peer.clone(), socket, tls, self.limits) {
                Ok(c) => c,
                Err(why) => {
                    log::error!("cannot set up connection from {peer}: {why}");
                    continue;
                }
            };
            if let Err(e) = conn.register(self.poll.registry()) {
                log::error!("cannot register connection from {peer}: {e}");
                continue;
            }
            self.conns.insert(token.0, conn);
            service.on_connect(token.0, &peer, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conn_event<S: Service>(
        &mut self,
        id: usize,
        readable: bool,
        writable: bool,
        read_closed: bool,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        self.dirty.insert(id);
        if writable {
            if let Err(why) = conn.write_ready() {
                self.close(id, why, service, out);
                return;
            }
        }
        if readable || writable {
            self.pump_input(id, read_closed, service, out);
        }
    }

    /// Read what is available and hand complete messages to the service
    /// (`until_would_block`: see [`Connection::read_ready`]).
    fn pump_input<S: Service>(
        &mut self,
        id: usize,
        until_would_block: bool,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        if self.raw.contains_key(&id) {
            self.pump_raw(id, service, out);
            return;
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        let read = conn.read_ready(until_would_block);
        // Deliver complete messages even if the peer closed right after sending them.
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if conn.closing.is_some() {
                break;
            }
            let Some(frame) = conn.next_frame() else {
                break;
            };
            service.on_message(id, frame, out);
            // Apply this message's sends and closes at once, so replies keep request
            // order, backpressure sees them, and a closed connection reads no more.
            self.apply_now(service, out);
        }
        if let Err(why) = read {
            self.close(id, why, service, out);
        }
    }

    /// Carry out queued sends and closes now; timers, stops and jobs stay queued.
    fn apply_now<S: Service>(&mut self, service: &mut S, out: &mut Outbox<S::Completion>) {
        let mut keep = Vec::new();
        while !out.actions.is_empty() {
            for action in std::mem::take(&mut out.actions) {
                match action {
                    Action::Send(id, payload) => {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.send_frame(&payload);
                            self.dirty.insert(id);
                        }
                    }
                    Action::Close(id, why) => {
                        self.close(id, CloseReason::Server(why), service, out)
                    }
                    Action::CloseAfterFlush(id) => {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.close_after_flush = true;
                            self.dirty.insert(id);
                        }
                    }
                    Action::WhenDrained(id) => {
                        if self.conns.contains_key(&id) {
                            self.drain_wait.insert(id);
                            self.dirty.insert(id);
                        }
                    }
                    other => keep.push(other),
                }
            }
        }
        out.actions = keep;
    }

    fn close<S: Service>(
        &mut self,
        id: usize,
        why: CloseReason,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        self.dirty.remove(&id);
        self.drain_wait.remove(&id);
        if let Some(mut conn) = self.conns.remove(&id) {
            // Best effort: push out what is queued (e.g. a TLS alert).
            let _ = conn.write_ready();
            conn.deregister(self.poll.registry());
            if let Some(state) = self.raw.remove(&id) {
                log::debug!(
                    "{:?} connection from {} closed: {why}",
                    state.endpoint,
                    conn.peer
                );
                return;
            }
            if let CloseReason::Tls(reason) = &why {
                // Handshake failures (no or untrusted client certificate, plain client
                // on a TLS port, ...) must reach the log even if the service is quiet.
                log::warn!("TLS error with {}: {reason}; connection closed", conn.peer);
            }
            service.on_close(id, &why, out);
        }
    }

    /// Carry out the service's actions; returns Some(status) when asked to stop.
    fn apply<S: Service>(
        &mut self,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
        completions: &Completions<S::Completion>,
    ) -> Option<i32> {
        let mut stop = None;
        // Closing a connection can make the service queue more actions: loop.
        while !out.actions.is_empty() || !out.jobs.is_empty() || !self.dirty.is_empty() {
            for (serial, job) in out.jobs.drain(..) {
                completions.run_job(serial, job);
            }
            self.apply_now(service, out);
            for action in std::mem::take(&mut out.actions) {
                match action {
                    Action::Timer(at, key) => {
                        self.timers.insert((at, key), ());
                    }
                    Action::Stop(status) => stop = Some(status),
                    _ => unreachable!("apply_now carried out sends and closes"),
                }
            }
            self.flush_dirty(service, out);
        }
        stop
    }

    /// Write pending output of changed connections, enforce limits and deferred closes.
    fn flush_dirty<S: Service>(&mut self, service: &mut S, out: &mut Outbox<S::Completion>) {
        let ids: Vec<usize> = self.dirty.drain().collect();
        for id in ids {
            if self.flush_raw(id, service, out) {
                continue;
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let was_paused = conn.input_paused();
            let result = conn.write_ready();
            let reason = match result {
                Err(why) => Some(why),
                Ok(()) if conn.close_after_flush && conn.flushed() => {
                    Some(CloseReason::Server("reply sent".into()))
                }
                Ok(()) if conn.closing.is_some() && !conn.close_after_flush => conn.closing.clone(),
                Ok(()) => None,
            };
            if let Some(why) = reason {
                self.close(id, why, service, out);
                continue;
            }
            let registry = self.poll.registry();
            if let Some(conn) = self.conns.get_mut(&id) {
                if let Err(e) = conn.update_interest(registry) {
                    self.close(id, CloseReason::Io(e.to_string()), service, out);
                    continue;
                }
                let drained = !conn.input_paused();
                // Edge-triggered: input left in the socket while paused gets no new
                // event, so read it now that the output has drained.
                if was_paused && drained {
                    self.pump_input(id, true, service, out);
                }
                if drained && self.drain_wait.remove(&id) {
                    service.on_drained(id, out);
                }
            }
        }
    }

    /// Number of open ZEO connections (for status reports and tests).
    pub fn connection_count(&self) -> usize {
        self.conns.len() - self.raw.len()
    }
}
