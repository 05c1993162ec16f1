//! A small blocking ZEO client used by `zeo pack`, `zeo up` and the benchmarks.
//!
//! It speaks the ZEO 5 protocol as Python's ClientStorage does (spec zeo-protocol.md
//! §2-3, §6): read the greeting, answer with the server's letter and version `5`,
//! then exchange `(msgid, flag, name, args)` envelopes in the negotiated encoding.
//! Server-initiated one-way calls (`invalidateTransaction`, `info`, ...) that arrive
//! while waiting for a reply are recorded, not lost.
//!
//! Invariants: one request in flight at a time per `call`; every read and write has a
//! timeout, so a dead server makes a tool fail instead of hang.

pub mod tls;

use crate::protocol::frame::{encode_frame, FrameDecoder};
use crate::protocol::pickle::{self, GlobalPolicy};
use crate::protocol::value::Value;
use crate::protocol::{msgpack, ProtocolError};
use crate::storage::{LoadBefore, Oid, Tid};
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddress {
    /// `host:port` (IPv6 hosts in brackets).
    Tcp(String),
    Unix(PathBuf),
}

impl ServerAddress {
    /// Parse the forms zeopack and zeoup accept: `host:port`, `[v6]:port`, a bare port
    /// (localhost), or a path containing `/` (Unix socket).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        if text.contains('/') {
            return Ok(ServerAddress::Unix(PathBuf::from(text)));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(ServerAddress::Tcp(format!("localhost:{text}")));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(ServerAddress::Tcp(text.to_string()))
            }
            _ => Err(ClientError::Address(text.to_string())),
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp(a) => f.write_str(a),
            ServerAddress::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Client failures.
#[derive(Debug)]
pub enum ClientError {
    /// Not a server address.
    Address(String),
    /// Connecting or talking to the server failed.
    Io {
        address: String,
        source: std::io::Error,
    },
    /// TLS set-up or handshake failed.
    Tls(String),
    /// The server sent something we cannot decode, or not a ZEO 5 greeting.
    Protocol(String),
    /// The server answered with an exception `(class name, state)`.
    Remote { class_name: String, state: Value },
    /// The server closed the connection.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Address(a) => write!(f, "invalid server address {a:?}"),
            ClientError::Io { address, source } => write!(f, "{address}: {source}"),
            ClientError::Tls(e) => write!(f, "TLS: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientError::Remote { class_name, state } => {
                write!(f, "{class_name}: {}", remote_message(state))
            }
            ClientError::Closed => f.write_str("the server closed the connection"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// A readable rendering of an exception state: its args, or its `message`.
fn remote_message(state: &Value) -> String {
    if let Some(m) = state.get("message").and_then(Value::as_str) {
        return m.to_string();
    }
    match state.as_seq() {
        Some(args) => args
            .iter()
            .map(|a| match a {
                Value::Str(s) => s.clone(),
                Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => format!("{state:?}"),
    }
}

/// Message encoding of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Pickle,
    Msgpack,
}

impl Encoding {
    fn encode(self, v: &Value) -> Result<Vec<u8>, ProtocolError> {
        match self {
            Encoding::Pickle => pickle::encode(v),
            Encoding::Msgpack => msgpack::encode(v),
        }
    }
    fn decode(self, data: &[u8]) -> Result<Value, ProtocolError> {
        match self {
            Encoding::Pickle => pickle::decode(data, GlobalPolicy::ServerMessages),
            Encoding::Msgpack => msgpack::decode(data),
        }
    }
}

/// Connection options.
#[derive(Clone)]
pub struct Options {
    /// Read and write timeout.
    pub timeout: Duration,
    /// TLS client configuration and the server name to verify.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A one-way call the server made while we waited for a reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerCall {
    pub name: String,
    pub args: Value,
}

/// A connected client.
pub struct Client {
    address: String,
    stream: Box<dyn Stream>,
    decoder: FrameDecoder,
    encoding: Encoding,
    next_id: i64,
    /// One-way server calls received so far (invalidations, info, blob chunks).
    pub server_calls: Vec<ServerCall>,
}

fn connect_stream(addr: &ServerAddress, opts: &Options) -> Result<Box<dyn Stream>, ClientError> {
    let io_err = |source| ClientError::Io {
        address: addr.to_string(),
        source,
    };
    let plain: Box<dyn Stream> = match addr {
        ServerAddress::Tcp(a) => {
            let s = TcpStream::connect(a.as_str()).map_err(io_err)?;
            s.set_read_timeout(Some(opts.timeout)).map_err(io_err)?;
            s.set_write_timeout(Some(opts.timeout)).map_err(io_err)?;
            let _ = s.set_nodelay(true);
            match &opts.tls {
                None => Box::new(s),
                Some((cfg, name)) => {
                    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|e| ClientError::Tls(format!("server name {name:?}: {e}")))?;
                    let conn = rustls::ClientConnection::new(cfg.clone(), server_name)
                        .map_err(|e| ClientError::Tls(e.to_string()))?;
                    Box::new(rustls::StreamOwned::new(conn, s))
                }
            }
        }
        ServerAddress::Unix(p) => {
            let s = UnixStream::connect(p).map_err(io_err)?;
            s.set_read_timeout(Some(opts.timeout)).map_err(io_err)?;
            s.set_write_timeout(Some(opts.timeout)).map_err(io_err)?;
            Box::new(s)
        }
    };
    Ok(plain)
}

impl Client {
    /// Connect and complete the handshake, adopting the server's encoding.
    pub fn connect(addr: &ServerAddress, opts: &Options) -> Result<Client, ClientError> {
        let stream = connect_stream(addr, opts)?;
        let mut c = Client {
            address: addr.to_string(),
            stream,
            decoder: FrameDecoder::new(u32::MAX),
            encoding: Encoding::Pickle,
            next_id: 1,
            server_calls: Vec::new(),
        };
        let greeting = c.read_frame()?;
        c.encoding = match greeting.as_slice() {
            b"Z5" => Encoding::Pickle,
            b"M5" => Encoding::Msgpack,
            other => {
                return Err(ClientError::Protocol(format!(
                    "unsupported server greeting {:?} (want Z5 or M5)",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        c.write_frame(&greeting)?;
        Ok(c)
    }

    /// The `ruok` probe: the JSON status document the server sends instead of a session.
    pub fn ruok(addr: &ServerAddress, opts: &Options) -> Result<String, ClientError> {
        let stream = connect_stream(addr, opts)?;
        let mut c = Client {
            address: addr.to_string(),
            stream,
            decoder: FrameDecoder::new(u32::MAX),
            encoding: Encoding::Pickle,
            next_id: 1,
            server_calls: Vec::new(),
        };
        c.write_frame(b"ruok")?;
        let _greeting = c.read_frame()?;
        let doc = c.read_frame()?;
        String::from_utf8(doc).map_err(|_| ClientError::Protocol("ruok reply is not UTF-8".into()))
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn io_err(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn write_frame(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let frame = encode_frame(payload)?;
        self.stream.write_all(&frame).map_err(|e| self.io_err(e))?;
        self.stream.flush().map_err(|e| self.io_err(e))
    }

    fn read_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(frame);
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(e)),
            };
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Send a one-way call.
    pub fn call_oneway(&mut self, method: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let msg = Value::Tuple(vec![
            Value::Int(0),
            Value::Bool(true),
            Value::str(method),
            Value::Tuple(args),
        ]);
        let payload = self.encoding.encode(&msg)?;
        self.write_frame(&payload)
    }

    /// Call a two-way method and wait for its reply; one-way server calls arriving
    /// meanwhile are kept in `server_calls`.
    pub fn call(&mut self, method: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = Value::Tuple(vec![
            Value::Int(id as i128),
            Value::Bool(false),
            Value::str(method),
            Value::Tuple(args),
        ]);
        let payload = self.encoding.encode(&msg)?;
        self.write_frame(&payload)?;
        loop {
            let frame = self.read_frame()?;
            let v = self.encoding.decode(&frame)?;
            let Some([msgid, flag, name, args]) =
                v.as_seq().and_then(|s| <&[Value; 4]>::try_from(s).ok())
            else {
                return Err(ClientError::Protocol(format!(
                    "not a 4-element message: {v:?}"
                )));
            };
            let name = name.as_str().unwrap_or_default();
            if name != ".reply" {
                self.server_calls.push(ServerCall {
                    name: name.to_string(),
                    args: args.clone(),
                });
                continue;
            }
            if msgid.as_int() != Some(id as i128) {
                return Err(ClientError::Protocol(format!(
                    "reply for message {msgid:?} while waiting for {id}"
                )));
            }
            if flag.truthy() {
                let (class_name, state) = match args.as_seq() {
                    Some([c, s]) => (c.as_str().unwrap_or("?").to_string(), s.clone()),
                    _ => ("?".to_string(), args.clone()),
                };
                return Err(ClientError::Remote { class_name, state });
            }
            return Ok(args.clone());
        }
    }

    /// `register(storage, read_only)`: returns the storage's last tid.
    pub fn register(&mut self, storage: &str, read_only: bool) -> Result<Tid, ClientError> {
        let v = self.call(
            "register",
            vec![Value::str(storage), Value::Bool(read_only)],
        )?;
        tid_of(&v)
    }

    /// `lastTransaction()`.
    pub fn last_transaction(&mut self) -> Result<Tid, ClientError> {
        let v = self.call("lastTransaction", vec![])?;
        tid_of(&v)
    }

    /// `loadBefore(oid, before)`: the revision current before `before`, or `None`.
    pub fn load_before(
        &mut self,
        oid: Oid,
        before: Tid,
    ) -> Result<Option<LoadBefore>, ClientError> {
        let v = self.call(
            "loadBefore",
            vec![
                Value::bytes(oid.to_bytes()),
                Value::bytes(before.to_bytes()),
            ],
        )?;
        match v.as_seq() {
            None if v.is_none() => Ok(None),
            Some([data, start, end]) => Ok(Some(LoadBefore {
                data: data.as_bytes().unwrap_or_default().to_vec(),
                start: tid_of(start)?,
                end: if end.is_none() {
                    None
                } else {
                    Some(tid_of(end)?)
                },
            })),
            _ => Err(ClientError::Protocol(format!(
                "unexpected loadBefore reply {v:?}"
            ))),
        }
    }

    /// `pack(t)`, waiting for the pack to finish.
    pub fn pack(&mut self, t: f64) -> Result<(), ClientError> {
        self.call("pack", vec![Value::Float(t)]).map(|_| ())
    }

    /// Commit one transaction of `(oid, serial read, data)` stores the way
    /// ClientStorage does (tpc_begin, storea..., vote, tpc_finish); returns the tid.
    /// A vote that returns conflicts is aborted and reported as a `Remote` error.
    pub fn commit(
        &mut self,
        description: &[u8],
        stores: &[(Oid, Tid, &[u8])],
    ) -> Result<Tid, ClientError> {
        let txn = Value::Int(i128::from(self.next_id));
        self.call_oneway(
            "tpc_begin",
            vec![
                txn.clone(),
                Value::bytes(Vec::new()),
                Value::bytes(description.to_vec()),
                Value::Dict(vec![]),
                Value::None,
                Value::str(" "),
            ],
        )?;
        for (oid, serial, data) in stores {
            self.call_oneway(
                "storea",
                vec![
                    Value::bytes(oid.to_bytes()),
                    Value::bytes(serial.to_bytes()),
                    Value::bytes(data.to_vec()),
                    txn.clone(),
                ],
            )?;
        }
        let voted = self.call("vote", vec![txn.clone()])?;
        if voted
            .as_seq()
            .is_some_and(|v| v.iter().any(|x| x.as_dict().is_some()))
        {
            self.call("tpc_abort", vec![txn])?;
            return Err(ClientError::Remote {
                class_name: "ZODB.POSException.ConflictError".into(),
                state: voted,
            });
        }
        let tid = self.call("tpc_finish", vec![txn])?;
        tid_of(&tid)
    }
}

fn tid_of(v: &Value) -> Result<Tid, ClientError> {
    v.as_bytes()
        .and_then(Tid::from_slice)
        .ok_or_else(|| ClientError::Protocol(format!("expected an 8-byte tid, got {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        assert_eq!(
            ServerAddress::parse("8100").unwrap(),
            ServerAddress::Tcp("localhost:8100".into())
        );
        assert_eq!(
            ServerAddress::parse("zeo.example:8100").unwrap(),
            ServerAddress::Tcp("zeo.example:8100".into())
        );
        assert_eq!(
            ServerAddress::parse("[::1]:8100").unwrap(),
            ServerAddress::Tcp("[::1]:8100".into())
        );
        assert_eq!(
            ServerAddress::parse("./var/zeo.sock").unwrap(),
            ServerAddress::Unix("./var/zeo.sock".into())
        );
        assert!(ServerAddress::parse("nohost").is_err());
        assert!(ServerAddress::parse("host:notaport").is_err());
    }

    #[test]
    fn remote_messages_are_readable() {
        let state = Value::Tuple(vec![Value::str("unknown storage: 2")]);
        let e = ClientError::Remote {
            class_name: "builtins.ValueError".into(),
            state,
        };
        assert_eq!(e.to_string(), "builtins.ValueError: unknown storage: 2");
    }
}
