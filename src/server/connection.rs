//! One client connection's byte plumbing: the transport (plain TCP, Unix socket, or
//! TLS over TCP via rustls), the inbound buffer cut into sized messages, and the
//! outbound buffer with its backpressure limits.
//!
//! Invariants: `read_ready`/`write_ready` never block (non-blocking sockets; WouldBlock
//! means "wait for the next event"); an inbound frame is handed out only when complete;
//! outbound bytes are written in the order queued; when the unsent output exceeds
//! `max_output` the connection is marked for closing (a client that stops reading must
//! not make the server's memory grow without bound); while the unsent output exceeds
//! `pause_input_at` no more input is read, which throttles a client that sends requests
//! without reading replies.
//!
//! A connection of an observation endpoint (monitor, metrics) is *raw*: its input is
//! kept as bytes, at most `raw_limit` of them (more is dropped and reading stops), and
//! its output is written as given, without length prefixes.

use crate::protocol::{FrameDecoder, ProtocolError};
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Read chunk size.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The read buffers (socket bytes, then TLS plaintext) of the thread running the
    /// loop, reused for every readable event (fresh zeroed 64 KiB arrays each time
    /// were a measurable share of the CPU a small load costs).
    static READ_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; 2 * READ_CHUNK]);
}

/// The socket under a connection.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => registry.register(s, token, interest),
            Socket::Unix(s) => registry.register(s, token, interest),
        }
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => registry.reregister(s, token, interest),
            Socket::Unix(s) => registry.reregister(s, token, interest),
        }
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => registry.deregister(s),
            Socket::Unix(s) => registry.deregister(s),
        }
    }
}

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest inbound message accepted; a larger length prefix closes the connection.
    pub max_message: usize,
    /// Stop reading input while this many output bytes are unsent.
    pub pause_input_at: usize,
    /// Close the connection when this many output bytes are unsent.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 512 * 1024 * 1024,
            pause_input_at: 4 * 1024 * 1024,
            max_output: 256 * 1024 * 1024,
        }
    }
}

/// Why a connection is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed (EOF) or reset.
    PeerClosed,
    /// A socket error.
    Io(String),
    /// TLS handshake or record failure.
    Tls(String),
    /// A length prefix above the maximum message size.
    TooLarge(u64),
    /// Bytes that are not a sized message (e.g. a zero-length message).
    Framing(String),
    /// The client does not read its replies fast enough.
    OutputOverflow(usize),
    /// The server decided to close (protocol violation, timeout, shutdown).
    Server(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by the client"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::Tls(e) => write!(f, "TLS error: {e}"),
            CloseReason::TooLarge(n) => {
                write!(f, "message of {n} bytes exceeds the maximum message size")
            }
            CloseReason::OutputOverflow(n) => {
                write!(f, "client is not reading its replies ({n} bytes unsent)")
            }
            CloseReason::Framing(e) => write!(f, "framing error: {e}"),
            CloseReason::Server(why) => f.write_str(why),
        }
    }
}

/// Inbound bytes of a connection.
enum Input {
    /// ZEO: a sequence of sized messages.
    Framed(FrameDecoder),
    /// An endpoint's request: the bytes as received, at most `limit` of them.
    Raw { buf: Vec<u8>, limit: usize },
}

impl Input {
    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Input::Framed(d) => d.feed(bytes),
            Input::Raw { buf, limit } => {
                let room = limit.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
    }
    fn full(&self) -> bool {
        matches!(self, Input::Raw { buf, limit } if buf.len() >= *limit)
    }
}

/// A connection's transport state and buffers.
pub struct Connection {
    pub token: Token,
    /// Peer address for log lines.
    pub peer: String,
    socket: Socket,
    tls: Option<Box<rustls::ServerConnection>>,
    /// Inbound bytes: cut into sized messages, or kept raw.
    input: Input,
    out: Vec<u8>,
    outpos: usize,
    limits: Limits,
    interest: Interest,
    /// Set when the connection must be closed after flushing (or at once).
    pub closing: Option<CloseReason>,
    /// Close only after the output is flushed (e.g. after the `ruok` answer).
    pub close_after_flush: bool,
}

impl Connection {
    pub fn new(
        token: Token,
        peer: String,
        socket: Socket,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Result<Self, CloseReason> {
        let tls = match tls {
            Some(cfg) => Some(Box::new(
                rustls::ServerConnection::new(cfg).map_err(|e| CloseReason::Tls(e.to_string()))?,
            )),
            None => None,
        };
        Ok(Connection {
            token,
            peer,
            socket,
            tls,
            input: Input::Framed(FrameDecoder::new(
                u32::try_from(limits.max_message).unwrap_or(u32::MAX),
            )),
            out: Vec::new(),
            outpos: 0,
            limits,
            interest: Interest::READABLE,
            closing: None,
            close_after_flush: false,
        })
    }

    /// A raw (endpoint) connection: no TLS, input kept as bytes up to `raw_limit`.
    pub fn new_raw(
        token: Token,
        peer: String,
        socket: Socket,
        limits: Limits,
        raw_limit: usize,
    ) -> Self {
        Connection {
            token,
            peer,
            socket,
            tls: None,
            input: Input::Raw {
                buf: Vec::new(),
                limit: raw_limit,
            },
            out: Vec::new(),
            outpos: 0,
            limits,
            interest: Interest::READABLE,
            closing: None,
            close_after_flush: false,
        }
    }

    /// Whether this is a raw (endpoint) connection.
    pub fn is_raw(&self) -> bool {
        matches!(self.input, Input::Raw { .. })
    }

    /// The raw input received so far (empty for framed connections).
    pub fn raw_input(&self) -> &[u8] {
        match &self.input {
            Input::Raw { buf, .. } => buf,
            Input::Framed(_) => &[],
        }
    }

    /// Queue bytes as they are (raw connections' replies).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Half-close: tell the peer no more output comes (its reads see EOF).
    pub fn shutdown_write(&mut self) {
        let _ = match &self.socket {
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    /// Read and drop what the peer sends (at most 1 MiB per call); Err when the peer
    /// has closed. Lets a raw connection linger until the peer has read the answer,
    /// so closing it with unread input does not reset the answer away.
    pub fn discard_input(&mut self) -> Result<(), CloseReason> {
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..64 {
            match self.socket.read(&mut buf) {
                Ok(0) => return Err(CloseReason::PeerClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(CloseReason::PeerClosed),
            }
        }
        Ok(())
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        self.interest = self.wanted_interest();
        self.socket.register(registry, self.token, self.interest)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = self.socket.deregister(registry);
    }

    /// Bytes queued but not yet written to the socket (TLS plaintext included).
    pub fn unsent(&self) -> usize {
        self.out.len() - self.outpos
    }

    /// Queue one sized message (4-byte big-endian length + payload).
    pub fn send_frame(&mut self, payload: &[u8]) {
        if self.closing.is_some() && !self.close_after_flush {
            return;
        }
        self.out
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.out.extend_from_slice(payload);
        if self.unsent() > self.limits.max_output && self.closing.is_none() {
            self.closing = Some(CloseReason::OutputOverflow(self.unsent()));
        }
    }

    /// Next complete inbound message, if any. Sets `closing` when the stream is not
    /// a sequence of sized messages (oversized prefix, zero-length message).
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.closing.is_some() {
            return None;
        }
        let Input::Framed(input) = &mut self.input else {
            return None;
        };
        match input.next_frame() {
            Ok(frame) => frame,
            Err(ProtocolError::FrameTooLarge { size, .. }) => {
                self.closing = Some(CloseReason::TooLarge(size));
                None
            }
            Err(e) => {
                self.closing = Some(CloseReason::Framing(e.to_string()));
                None
            }
        }
    }

    /// Whether input is paused because too much output is pending.
    pub fn input_paused(&self) -> bool {
        self.unsent() > self.limits.pause_input_at
    }

    /// Read what the socket has. Returns Err with the reason when the connection ends.
    ///
    /// Without `until_would_block`, a plain socket read that does not fill the buffer
    /// ends the round: Linux epoll signals every later arrival as a new edge, so the
    /// socket is empty and the read that would only say WouldBlock is skipped (one
    /// system call less per request). The caller asks for `until_would_block` when
    /// the peer may have closed (the end of input is only seen by reading on) and
    /// whenever it has no event in hand.
    pub fn read_ready(&mut self, until_would_block: bool) -> Result<(), CloseReason> {
        READ_BUF.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (buf, plain) = bufs.split_at_mut(READ_CHUNK);
            self.read_with(buf, plain, until_would_block)
        })
    }

    /// [`Connection::read_ready`] with the socket buffer and, for TLS, the plaintext
    /// buffer.
    fn read_with(
        &mut self,
        buf: &mut [u8],
        plain: &mut [u8],
        until_would_block: bool,
    ) -> Result<(), CloseReason> {
        loop {
            if self.input_paused() || self.input.full() {
                return Ok(());
            }
            match self.socket.read(buf) {
                Ok(0) => return Err(CloseReason::PeerClosed),
                Ok(n) => match &mut self.tls {
                    None => {
                        self.input.feed(&buf[..n]);
                        if !until_would_block && n < buf.len() && cfg!(target_os = "linux") {
                            return Ok(());
                        }
                    }
                    Some(tls) => {
                        let mut slice = &buf[..n];
                        while !slice.is_empty() {
                            tls.read_tls(&mut slice)
                                .map_err(|e| CloseReason::Tls(e.to_string()))?;
                            if let Err(e) = tls.process_new_packets() {
                                // Send the alert explaining the failure before closing.
                                let _ = tls.write_tls(&mut self.socket);
                                return Err(CloseReason::Tls(e.to_string()));
                            }
                            // Drain the plaintext after every batch of records: rustls
                            // refuses more once its plaintext buffer is full, and one
                            // socket read can carry many records of a large message.
                            let mut reader = tls.reader();
                            loop {
                                match reader.read(plain) {
                                    Ok(0) => return Err(CloseReason::PeerClosed),
                                    Ok(m) => self.input.feed(&plain[..m]),
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                    Err(e) => return Err(CloseReason::Tls(e.to_string())),
                                }
                            }
                        }
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(CloseReason::PeerClosed)
                }
                Err(e) => return Err(CloseReason::Io(e.to_string())),
            }
        }
    }

    /// Write as much queued output as the socket takes.
    pub fn write_ready(&mut self) -> Result<(), CloseReason> {
        if let Some(tls) = &mut self.tls {
            // Move plaintext into the TLS session and flush its records, until the
            // socket would block or nothing is left: the session takes only a bounded
            // amount of plaintext at a time, and readiness is edge-triggered, so
            // stopping while the socket is still writable would stall the stream.
            'fill: loop {
                if self.outpos < self.out.len() && !tls.is_handshaking() {
                    let n = tls
                        .writer()
                        .write(&self.out[self.outpos..])
                        .map_err(|e| CloseReason::Tls(e.to_string()))?;
                    self.outpos += n;
                }
                if !tls.wants_write() {
                    break;
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut self.socket) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'fill,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(CloseReason::Io(e.to_string())),
                    }
                }
                if self.outpos == self.out.len() || tls.is_handshaking() {
                    break;
                }
            }
        } else {
            while self.outpos < self.out.len() {
                match self.socket.write(&self.out[self.outpos..]) {
                    Ok(0) => return Err(CloseReason::PeerClosed),
                    Ok(n) => self.outpos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CloseReason::Io(e.to_string())),
                }
            }
        }
        if self.outpos == self.out.len() {
            self.out.clear();
            self.outpos = 0;
        } else if self.outpos > 1024 * 1024 {
            self.out.drain(..self.outpos);
            self.outpos = 0;
        }
        Ok(())
    }

    /// True when nothing remains to be written (TLS records included).
    pub fn flushed(&self) -> bool {
        self.unsent() == 0 && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    fn wanted_interest(&self) -> Interest {
        let want_write = !self.flushed();
        let want_read = !self.input_paused();
        match (want_read, want_write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            // Keep READABLE registered even while paused so a hang-up is noticed.
            _ => Interest::READABLE,
        }
    }

    /// Re-register if the wanted interest changed.
    pub fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let want = self.wanted_interest();
        if want != self.interest {
            self.interest = want;
            self.socket.reregister(registry, self.token, want)?;
        }
        Ok(())
    }

    /// The TLS session's peer certificates (for logging), if any.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}
