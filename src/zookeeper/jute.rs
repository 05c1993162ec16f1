//! The ZooKeeper wire format ("jute"), as pure functions over buffers.
//!
//! Owns: encoding of the requests the client sends (connect, create, delete, exists,
//! getData, setData, getChildren, ping, closeSession) and decoding of the replies.
//! Layout table: docs/zookeeper.md. Every packet is a 4-byte big-endian length then
//! the payload; integers are big-endian, strings and buffers are an `int` length
//! (-1 for null) then bytes, vectors an `int` count then elements.
//!
//! Invariants: decoders never panic and never allocate more than the input holds
//! (vector counts are checked against the bytes left); a frame longer than
//! [`MAX_FRAME`] is refused before it is read.

use std::fmt;

/// Largest frame we accept (ZooKeeper's own jute.maxbuffer default is 1 MiB - 1; a
/// getChildren reply of a big registry stays far below this).
pub const MAX_FRAME: usize = 16 << 20;

/// Special request/reply xids.
pub const XID_NOTIFICATION: i32 = -1;
pub const XID_PING: i32 = -2;

/// Operation codes (org.apache.zookeeper.ZooDefs.OpCode).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_CHILDREN: i32 = 8;
    pub const PING: i32 = 11;
    pub const CLOSE_SESSION: i32 = -11;
}

/// Node creation flags (CreateMode).
pub const EPHEMERAL: i32 = 1;
pub const PERSISTENT: i32 = 0;

/// A decoding failure: what was being read and at which offset of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub what: &'static str,
    pub offset: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed ZooKeeper reply: bad {} at byte {}",
            self.what, self.offset
        )
    }
}

/// An ACL entry: permissions bit mask and (scheme, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

impl Acl {
    /// `world:anyone` with READ only: zc.zk's READ_ACL_UNSAFE for registrations.
    pub fn world_read() -> Vec<Acl> {
        vec![Acl {
            perms: 1,
            scheme: "world".into(),
            id: "anyone".into(),
        }]
    }
    /// `world:anyone` with every permission (OPEN_ACL_UNSAFE).
    pub fn world_all() -> Vec<Acl> {
        vec![Acl {
            perms: 31,
            scheme: "world".into(),
            id: "anyone".into(),
        }]
    }
}

/// A node's metadata (org.apache.zookeeper.data.Stat), 68 bytes on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// ConnectRequest: sent first on every TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub last_zxid: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
}

/// ConnectResponse; `timeout_ms <= 0` means the session was refused as expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
}

/// Requests after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create {
        path: String,
        data: Vec<u8>,
        acl: Vec<Acl>,
        flags: i32,
    },
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
    },
    GetData {
        path: String,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    GetChildren {
        path: String,
    },
    Ping,
    CloseSession,
}

impl Request {
    /// The operation code.
    pub fn op(&self) -> i32 {
        match self {
            Request::Create { .. } => op::CREATE,
            Request::Delete { .. } => op::DELETE,
            Request::Exists { .. } => op::EXISTS,
            Request::GetData { .. } => op::GET_DATA,
            Request::SetData { .. } => op::SET_DATA,
            Request::GetChildren { .. } => op::GET_CHILDREN,
            Request::Ping => op::PING,
            Request::CloseSession => op::CLOSE_SESSION,
        }
    }
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Delete { .. } => "delete",
            Request::Exists { .. } => "exists",
            Request::GetData { .. } => "getData",
            Request::SetData { .. } => "setData",
            Request::GetChildren { .. } => "getChildren",
            Request::Ping => "ping",
            Request::CloseSession => "closeSession",
        }
    }
    /// The node path the request is about ("" for session requests).
    pub fn path(&self) -> &str {
        match self {
            Request::Create { path, .. }
            | Request::Delete { path, .. }
            | Request::Exists { path }
            | Request::GetData { path }
            | Request::SetData { path, .. }
            | Request::GetChildren { path } => path,
            Request::Ping | Request::CloseSession => "",
        }
    }
}

/// ReplyHeader: xid, zxid, err (0 = OK, else a KeeperException code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

// ---- encoding ----

/// A big-endian writer that produces one length-prefixed frame.
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Enc(vec![0; 4])
    }
    fn int(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn long(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn buffer(&mut self, b: &[u8]) {
        // Lengths we write come from our own paths/data, bounded far below 2 GiB.
        self.int(i32::try_from(b.len()).unwrap_or(i32::MAX));
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }
    fn finish(mut self) -> Vec<u8> {
        let n = u32::try_from(self.0.len() - 4).unwrap_or(u32::MAX);
        self.0[..4].copy_from_slice(&n.to_be_bytes());
        self.0
    }
}

/// The framed ConnectRequest (protocol version 0, readOnly false).
pub fn encode_connect(r: &ConnectRequest) -> Vec<u8> {
    let mut e = Enc::new();
    e.int(0);
    e.long(r.last_zxid);
    e.int(r.timeout_ms);
    e.long(r.session_id);
    e.buffer(&r.password);
    e.bool(false);
    e.finish()
}

/// A framed request with its header (xid, type). Pings always use [`XID_PING`].
pub fn encode_request(xid: i32, req: &Request) -> Vec<u8> {
    let mut e = Enc::new();
    e.int(if matches!(req, Request::Ping) {
        XID_PING
    } else {
        xid
    });
    e.int(req.op());
    match req {
        Request::Create {
            path,
            data,
            acl,
            flags,
        } => {
            e.string(path);
            e.buffer(data);
            e.int(i32::try_from(acl.len()).unwrap_or(i32::MAX));
            for a in acl {
                e.int(a.perms);
                e.string(&a.scheme);
                e.string(&a.id);
            }
            e.int(*flags);
        }
        Request::Delete { path, version } => {
            e.string(path);
            e.int(*version);
        }
        Request::Exists { path } | Request::GetData { path } | Request::GetChildren { path } => {
            e.string(path);
            e.bool(false);
        }
        Request::SetData {
            path,
            data,
            version,
        } => {
            e.string(path);
            e.buffer(data);
            e.int(*version);
        }
        Request::Ping | Request::CloseSession => {}
    }
    e.finish()
}

// ---- decoding ----

/// A checked big-endian reader over one frame's payload.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let err = DecodeError {
            what,
            offset: self.pos,
        };
        let end = self.pos.checked_add(n).ok_or(err.clone())?;
        let s = self.buf.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(s)
    }
    pub fn int(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn long(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.take(1, what)?[0] != 0)
    }
    /// A buffer; null (-1) decodes as empty.
    pub fn buffer(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let at = self.pos;
        let n = self.int(what)?;
        if n == -1 {
            return Ok(Vec::new());
        }
        let n = usize::try_from(n).map_err(|_| DecodeError { what, offset: at })?;
        Ok(self.take(n, what)?.to_vec())
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.buffer(what)?;
        String::from_utf8(b).map_err(|_| DecodeError { what, offset: at })
    }
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// The length prefix of a frame; refuses negative and oversized lengths.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let n = i32::from_be_bytes(prefix);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_FRAME => Ok(n),
        _ => Err(DecodeError {
            what: "frame length",
            offset: 0,
        }),
    }
}

/// ConnectResponse (the trailing readOnly byte is optional, as servers differ).
pub fn decode_connect(payload: &[u8]) -> Result<ConnectResponse, DecodeError> {
    let mut d = Dec::new(payload);
    Ok(ConnectResponse {
        protocol_version: d.int("protocol version")?,
        timeout_ms: d.int("session timeout")?,
        session_id: d.long("session id")?,
        password: d.buffer("session password")?,
    })
}

/// The reply header, leaving the decoder at the body.
pub fn decode_header(d: &mut Dec<'_>) -> Result<ReplyHeader, DecodeError> {
    Ok(ReplyHeader {
        xid: d.int("xid")?,
        zxid: d.long("zxid")?,
        err: d.int("error code")?,
    })
}

pub fn decode_stat(d: &mut Dec<'_>) -> Result<Stat, DecodeError> {
    Ok(Stat {
        czxid: d.long("stat")?,
        mzxid: d.long("stat")?,
        ctime: d.long("stat")?,
        mtime: d.long("stat")?,
        version: d.int("stat")?,
        cversion: d.int("stat")?,
        aversion: d.int("stat")?,
        ephemeral_owner: d.long("stat")?,
        data_length: d.int("stat")?,
        num_children: d.int("stat")?,
        pzxid: d.long("stat")?,
    })
}

/// GetDataResponse body: data then stat.
pub fn decode_get_data(d: &mut Dec<'_>) -> Result<(Vec<u8>, Stat), DecodeError> {
    let data = d.buffer("node data")?;
    Ok((data, decode_stat(d)?))
}

/// GetChildrenResponse body: a vector of names.
pub fn decode_children(d: &mut Dec<'_>) -> Result<Vec<String>, DecodeError> {
    let at = d.pos;
    let n = d.int("children count")?;
    if n == -1 {
        return Ok(Vec::new());
    }
    let n = usize::try_from(n).map_err(|_| DecodeError {
        what: "children count",
        offset: at,
    })?;
    // Each name takes at least its 4-byte length: bounds the allocation by the input.
    if n > d.remaining() / 4 {
        return Err(DecodeError {
            what: "children count",
            offset: at,
        });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(d.string("child name")?);
    }
    Ok(out)
}

/// Decode any reply frame far enough to exercise every body decoder (the fuzz and
/// robustness entry point): header, then the body shapes for `op`.
pub fn decode_any(op: i32, payload: &[u8]) -> Result<ReplyHeader, DecodeError> {
    let mut d = Dec::new(payload);
    let h = decode_header(&mut d)?;
    match op {
        op::CREATE => {
            d.string("created path")?;
        }
        op::EXISTS | op::SET_DATA => {
            decode_stat(&mut d)?;
        }
        op::GET_DATA => {
            decode_get_data(&mut d)?;
        }
        op::GET_CHILDREN => {
            decode_children(&mut d)?;
        }
        _ => {}
    }
    Ok(h)
}

/// The KeeperException name of an error code, for messages.
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        -1 => "SystemError",
        -2 => "RuntimeInconsistency",
        -3 => "DataInconsistency",
        -4 => "ConnectionLoss",
        -5 => "MarshallingError",
        -6 => "Unimplemented",
        -7 => "OperationTimeout",
        -8 => "BadArguments",
        -100 => "APIError",
        -101 => "NoNode",
        -102 => "NoAuth",
        -103 => "BadVersion",
        -108 => "NoChildrenForEphemerals",
        -110 => "NodeExists",
        -111 => "NotEmpty",
        -112 => "SessionExpired",
        -113 => "InvalidCallback",
        -114 => "InvalidACL",
        -115 => "AuthFailed",
        -118 => "SessionMoved",
        -119 => "NotReadOnly",
        -125 => "QuotaExceeded",
        -127 => "Throttled",
        _ => "unknown error",
    }
}

pub const ERR_NO_NODE: i32 = -101;
pub const ERR_NODE_EXISTS: i32 = -110;
pub const ERR_SESSION_EXPIRED: i32 = -112;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_layout() {
        let f = encode_connect(&ConnectRequest {
            last_zxid: 0x10,
            timeout_ms: 4000,
            session_id: 0,
            password: vec![0; 16],
        });
        // len, protocolVersion, lastZxid, timeOut, sessionId, passwd(len+16), readOnly
        assert_eq!(f.len(), 4 + 4 + 8 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(&f[..4], &(f.len() as u32 - 4).to_be_bytes());
        assert_eq!(&f[12..16], &[0, 0, 0, 0x10]);
        assert_eq!(&f[16..20], &4000i32.to_be_bytes());
        assert_eq!(&f[28..32], &16i32.to_be_bytes());
    }

    #[test]
    fn create_request_layout() {
        let f = encode_request(
            7,
            &Request::Create {
                path: "/a".into(),
                data: b"x".to_vec(),
                acl: Acl::world_read(),
                flags: EPHEMERAL,
            },
        );
        let mut want = Vec::new();
        want.extend_from_slice(&7i32.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 2, b'/', b'a', 0, 0, 0, 1, b'x']);
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"world");
        want.extend_from_slice(&[0, 0, 0, 6]);
        want.extend_from_slice(b"anyone");
        want.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(&f[4..], &want[..]);
        let ping = encode_request(9, &Request::Ping);
        assert_eq!(&ping[4..], &[0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
    }

    #[test]
    fn children_reply() {
        let mut p = Vec::new();
        p.extend_from_slice(&5i32.to_be_bytes());
        p.extend_from_slice(&99i64.to_be_bytes());
        p.extend_from_slice(&0i32.to_be_bytes());
        p.extend_from_slice(&2i32.to_be_bytes());
        for n in ["a:1", "b:2"] {
            p.extend_from_slice(&(n.len() as i32).to_be_bytes());
            p.extend_from_slice(n.as_bytes());
        }
        let mut d = Dec::new(&p);
        let h = decode_header(&mut d).unwrap();
        assert_eq!((h.xid, h.zxid, h.err), (5, 99, 0));
        assert_eq!(decode_children(&mut d).unwrap(), vec!["a:1", "b:2"]);
        // A huge count with no bytes behind it is refused, not allocated.
        let mut bad = p[..16].to_vec();
        bad.extend_from_slice(&i32::MAX.to_be_bytes());
        let mut d = Dec::new(&bad);
        decode_header(&mut d).unwrap();
        assert_eq!(decode_children(&mut d).unwrap_err().what, "children count");
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len([0, 0, 0, 16]).unwrap(), 16);
        assert!(frame_len([0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(frame_len([0x7f, 0, 0, 0]).is_err());
    }

    #[test]
    fn robustness_against_mutated_replies() {
        // xorshift64: deterministic random/mutated/truncated inputs; must never panic.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut seed = Vec::new();
        seed.extend_from_slice(&1i32.to_be_bytes());
        seed.extend_from_slice(&2i64.to_be_bytes());
        seed.extend_from_slice(&0i32.to_be_bytes());
        seed.extend_from_slice(&3i32.to_be_bytes());
        seed.extend_from_slice(b"abc");
        seed.extend_from_slice(&[0u8; 68]);
        let ops = [1, 2, 3, 4, 5, 8, 11, -11, 99];
        for i in 0..6000u32 {
            let mut buf = seed.clone();
            match i % 3 {
                0 => {
                    let n = (next() % 8) as usize;
                    for _ in 0..n {
                        let at = (next() as usize) % buf.len();
                        buf[at] = next() as u8;
                    }
                }
                1 => buf.truncate((next() as usize) % (buf.len() + 1)),
                _ => {
                    let n = (next() % 120) as usize;
                    buf = (0..n).map(|_| next() as u8).collect();
                }
            }
            let op = ops[(next() as usize) % ops.len()];
            let _ = decode_any(op, &buf);
            let _ = decode_connect(&buf);
            if buf.len() >= 4 {
                let _ = frame_len([buf[0], buf[1], buf[2], buf[3]]);
            }
        }
    }
}
