//! Replies and server→client calls (spec zeo-protocol.md §3, §7, §8), typed.
//!
//! [`Reply`] is `(msgid, 0 | 2, ".reply", value | (class, state))`; [`ReplyValue`]
//! gives each server method's return value a type that encodes to exactly the
//! Python types the client checks (§4.3: lists vs tuples, bytes vs str);
//! [`ServerCall`] covers `invalidateTransaction`, `info` and `receiveBlob*`.
//!
//! Invariants: replies echo the request's msgid unchanged; the flag is the int 0
//! or 2 and server calls use msgid 0 and flag `True`, as the Python server sends.

use super::errors::WireError;
use super::handshake::Encoding;
use super::message::{decode_message, encode_parts, Envelope, REPLY};
use super::pickle::GlobalPolicy;
use super::value::Value;
use super::ProtocolError;
use crate::storage::{Oid, Tid};

fn p64v(x: u64) -> Value {
    Value::Bytes(x.to_be_bytes().to_vec())
}
fn oidv(o: Oid) -> Value {
    p64v(o.0)
}
fn tidv(t: Tid) -> Value {
    p64v(t.0)
}
fn p64(v: &Value, what: &str) -> Result<u64, ProtocolError> {
    match v {
        Value::Bytes(b) if b.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_be_bytes(a))
        }
        other => Err(ProtocolError::bad(format!(
            "{what} must be 8 bytes, got {}",
            other.type_name()
        ))),
    }
}
fn opt_p64(v: &Value, what: &str) -> Result<Option<u64>, ProtocolError> {
    match v {
        Value::None => Ok(None),
        other => p64(other, what).map(Some),
    }
}
fn bytes(v: &Value, what: &str) -> Result<Vec<u8>, ProtocolError> {
    v.as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ProtocolError::bad(format!("{what} must be bytes, got {}", v.type_name())))
}
fn seq<'a>(v: &'a Value, n: Option<usize>, what: &str) -> Result<&'a [Value], ProtocolError> {
    match v.as_seq() {
        Some(s) if n.is_none_or(|n| s.len() == n) => Ok(s),
        _ => Err(ProtocolError::bad(format!(
            "{what} must be a sequence{}, got {}",
            n.map(|n| format!(" of {n} items")).unwrap_or_default(),
            v.type_name()
        ))),
    }
}
fn uint(v: &Value, what: &str) -> Result<u64, ProtocolError> {
    v.as_int()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| ProtocolError::bad(format!("{what} must be a non-negative int")))
}

/// A reply to a two-way call.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub msgid: Value,
    pub result: Result<Value, WireError>,
}

impl Reply {
    pub fn ok(msgid: Value, value: Value) -> Self {
        Reply {
            msgid,
            result: Ok(value),
        }
    }
    pub fn error(msgid: Value, e: WireError) -> Self {
        Reply {
            msgid,
            result: Err(e),
        }
    }
    pub fn to_envelope(&self) -> Envelope {
        let (flag, args) = match &self.result {
            Ok(v) => (0, v.clone()),
            Err(e) => (2, e.to_value()),
        };
        Envelope {
            msgid: self.msgid.clone(),
            flag: Value::Int(flag),
            method: REPLY.to_string(),
            args,
        }
    }
}

/// Storage facts returned by `get_info`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageInfo {
    pub length: u64,
    pub size: u64,
    pub name: String,
    pub supports_undo: bool,
    pub supports_record_iternext: bool,
    /// `(module, name)` pairs, most specific first; sent as 2-tuples.
    pub interfaces: Vec<(String, String)>,
}

/// One item of a `vote` result.
#[derive(Clone, Debug, PartialEq)]
pub enum VoteItem {
    /// An oid the server resolved or an undo changed: the client invalidates it.
    Oid(Oid),
    /// Client-side conflict resolution: `{oid, serials: (committed, sent), data}`.
    Conflict {
        oid: Oid,
        serials: (Tid, Tid),
        data: Vec<u8>,
    },
}

/// `iterator_next` item.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnHeader {
    pub tid: Tid,
    /// Status byte, sent as a one-character str.
    pub status: u8,
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    /// The extension dict (decoded).
    pub extension: Vec<(Value, Value)>,
}

/// `iterator_record_next` item.
#[derive(Clone, Debug, PartialEq)]
pub struct IterRecord {
    pub oid: Oid,
    pub tid: Tid,
    pub data: Option<Vec<u8>>,
    pub data_txn: Option<Tid>,
}

/// Typed return values of the server methods.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyValue {
    /// `None`: ping, pack, tpc_abort, sendBlob, tpc_finish of a foreign txn, ...
    None,
    /// register, lastTransaction, getTid, tpc_finish.
    Tid(Tid),
    Info(StorageInfo),
    /// loadBefore: `(data, start, end)` or `None`.
    LoadBefore(Option<(Vec<u8>, Tid, Option<Tid>)>),
    /// loadSerial.
    Data(Vec<u8>),
    /// history, undoLog, undoInfo: a list of dicts (see [`history_entry`],
    /// [`undo_entry`]).
    Entries(Vec<Value>),
    /// undoLog/undoInfo of a storage without undo: the empty tuple.
    NoUndo,
    /// new_oids.
    Oids(Vec<Oid>),
    /// getInvalidations: `(tid, [oids])` or `None`.
    Invalidations(Option<(Tid, Vec<Oid>)>),
    Vote(Vec<VoteItem>),
    /// iterator_start, iterator_record_start.
    IteratorId(i64),
    IteratorNext(Option<TxnHeader>),
    IteratorRecord(Option<IterRecord>),
    /// record_iternext: `(oid, tid, data, next_oid)`.
    RecordIternext {
        oid: Oid,
        tid: Tid,
        data: Vec<u8>,
        next: Option<Oid>,
    },
    /// server_status, keys in order.
    Status(Vec<(String, Value)>),
}

impl ReplyValue {
    /// The Python value, with the types the client expects.
    pub fn to_value(&self) -> Value {
        match self {
            ReplyValue::None => Value::None,
            ReplyValue::Tid(t) => tidv(*t),
            ReplyValue::Info(i) => Value::str_dict([
                ("length", Value::Int(i.length as i128)),
                ("size", Value::Int(i.size as i128)),
                ("name", Value::Str(i.name.clone())),
                ("supportsUndo", Value::Bool(i.supports_undo)),
                (
                    "supports_record_iternext",
                    Value::Bool(i.supports_record_iternext),
                ),
                (
                    "interfaces",
                    Value::Tuple(
                        i.interfaces
                            .iter()
                            .map(|(m, n)| Value::Tuple(vec![Value::str(m), Value::str(n)]))
                            .collect(),
                    ),
                ),
            ]),
            ReplyValue::LoadBefore(None) => Value::None,
            ReplyValue::LoadBefore(Some((data, start, end))) => Value::Tuple(vec![
                Value::Bytes(data.clone()),
                tidv(*start),
                Value::opt(end.map(tidv)),
            ]),
            ReplyValue::Data(d) => Value::Bytes(d.clone()),
            ReplyValue::Entries(e) => Value::List(e.clone()),
            ReplyValue::NoUndo => Value::Tuple(vec![]),
            ReplyValue::Oids(o) => Value::List(o.iter().map(|o| oidv(*o)).collect()),
            ReplyValue::Invalidations(None) => Value::None,
            ReplyValue::Invalidations(Some((tid, oids))) => Value::Tuple(vec![
                tidv(*tid),
                Value::List(oids.iter().map(|o| oidv(*o)).collect()),
            ]),
            ReplyValue::Vote(items) => Value::List(
                items
                    .iter()
                    .map(|it| match it {
                        VoteItem::Oid(o) => oidv(*o),
                        VoteItem::Conflict { oid, serials, data } => Value::str_dict([
                            ("oid", oidv(*oid)),
                            (
                                "serials",
                                Value::Tuple(vec![tidv(serials.0), tidv(serials.1)]),
                            ),
                            ("data", Value::Bytes(data.clone())),
                        ]),
                    })
                    .collect(),
            ),
            ReplyValue::IteratorId(i) => Value::Int(*i as i128),
            ReplyValue::IteratorNext(None) | ReplyValue::IteratorRecord(None) => Value::None,
            ReplyValue::IteratorNext(Some(t)) => Value::Tuple(vec![
                tidv(t.tid),
                Value::Str((t.status as char).to_string()),
                Value::Bytes(t.user.clone()),
                Value::Bytes(t.description.clone()),
                Value::Dict(t.extension.clone()),
            ]),
            ReplyValue::IteratorRecord(Some(r)) => Value::Tuple(vec![
                oidv(r.oid),
                tidv(r.tid),
                Value::opt(r.data.clone().map(Value::Bytes)),
                Value::opt(r.data_txn.map(tidv)),
            ]),
            ReplyValue::RecordIternext {
                oid,
                tid,
                data,
                next,
            } => Value::Tuple(vec![
                oidv(*oid),
                tidv(*tid),
                Value::Bytes(data.clone()),
                Value::opt(next.map(oidv)),
            ]),
            ReplyValue::Status(pairs) => Value::Dict(
                pairs
                    .iter()
                    .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                    .collect(),
            ),
        }
    }

    /// Interpret the successful reply `v` to a call of `method` (client side, and
    /// for checking captured traffic).
    pub fn from_value(method: &str, v: &Value) -> Result<ReplyValue, ProtocolError> {
        let ctx = |what: &str| format!("{method} reply {what}");
        Ok(match method {
            "ping" | "pack" | "tpc_abort" | "sendBlob" | "iterator_gc" => match v {
                Value::None => ReplyValue::None,
                other => {
                    return Err(ProtocolError::bad(format!(
                        "{} must be None, got {}",
                        ctx(""),
                        other.type_name()
                    )))
                }
            },
            "register" | "lastTransaction" | "getTid" | "tpc_finish" => match v {
                Value::None if method == "tpc_finish" => ReplyValue::None,
                other => ReplyValue::Tid(Tid(p64(other, &ctx("tid"))?)),
            },
            "get_info" => {
                let field = |k: &str| {
                    v.get(k)
                        .ok_or_else(|| ProtocolError::bad(ctx(&format!("lacks {k:?}"))))
                };
                let mut interfaces = Vec::new();
                for i in seq(field("interfaces")?, None, &ctx("interfaces"))? {
                    match seq(i, Some(2), &ctx("interface"))? {
                        [Value::Str(m), Value::Str(n)] => interfaces.push((m.clone(), n.clone())),
                        _ => return Err(ProtocolError::bad(ctx("interface must be 2 strs"))),
                    }
                }
                ReplyValue::Info(StorageInfo {
                    length: uint(field("length")?, &ctx("length"))?,
                    size: uint(field("size")?, &ctx("size"))?,
                    name: field("name")?
                        .as_str()
                        .ok_or_else(|| ProtocolError::bad(ctx("name must be a str")))?
                        .to_string(),
                    supports_undo: field("supportsUndo")?.truthy(),
                    supports_record_iternext: field("supports_record_iternext")?.truthy(),
                    interfaces,
                })
            }
            "loadBefore" => match v {
                Value::None => ReplyValue::LoadBefore(None),
                other => {
                    let s = seq(other, Some(3), &ctx(""))?;
                    ReplyValue::LoadBefore(Some((
                        bytes(&s[0], &ctx("data"))?,
                        Tid(p64(&s[1], &ctx("start"))?),
                        opt_p64(&s[2], &ctx("end"))?.map(Tid),
                    )))
                }
            },
            "loadSerial" => ReplyValue::Data(bytes(v, &ctx("data"))?),
            "history" | "undoLog" | "undoInfo" => match v {
                Value::Tuple(t) if t.is_empty() && method != "history" => ReplyValue::NoUndo,
                other => {
                    let items = seq(other, None, &ctx(""))?;
                    if let Some(bad) = items.iter().find(|d| d.as_dict().is_none()) {
                        return Err(ProtocolError::bad(format!(
                            "{} entries must be dicts, got {}",
                            ctx(""),
                            bad.type_name()
                        )));
                    }
                    ReplyValue::Entries(items.to_vec())
                }
            },
            "new_oids" => ReplyValue::Oids(
                seq(v, None, &ctx(""))?
                    .iter()
                    .map(|o| p64(o, &ctx("oid")).map(Oid))
                    .collect::<Result<_, _>>()?,
            ),
            "getInvalidations" => match v {
                Value::None => ReplyValue::Invalidations(None),
                other => {
                    let s = seq(other, Some(2), &ctx(""))?;
                    let oids = seq(&s[1], None, &ctx("oids"))?
                        .iter()
                        .map(|o| p64(o, &ctx("oid")).map(Oid))
                        .collect::<Result<_, _>>()?;
                    ReplyValue::Invalidations(Some((Tid(p64(&s[0], &ctx("tid"))?), oids)))
                }
            },
            "vote" => {
                let mut items = Vec::new();
                for it in seq(v, None, &ctx(""))? {
                    items.push(match it {
                        Value::Dict(_) => {
                            let get = |k: &str| {
                                it.get(k).ok_or_else(|| {
                                    ProtocolError::bad(ctx(&format!("conflict lacks {k:?}")))
                                })
                            };
                            let serials = seq(get("serials")?, Some(2), &ctx("serials"))?;
                            VoteItem::Conflict {
                                oid: Oid(p64(get("oid")?, &ctx("oid"))?),
                                serials: (
                                    Tid(p64(&serials[0], &ctx("serial"))?),
                                    Tid(p64(&serials[1], &ctx("serial"))?),
                                ),
                                data: bytes(get("data")?, &ctx("data"))?,
                            }
                        }
                        other => VoteItem::Oid(Oid(p64(other, &ctx("oid"))?)),
                    });
                }
                ReplyValue::Vote(items)
            }
            "iterator_start" | "iterator_record_start" => ReplyValue::IteratorId(
                v.as_int()
                    .and_then(|i| i64::try_from(i).ok())
                    .ok_or_else(|| ProtocolError::bad(ctx("must be an int")))?,
            ),
            "iterator_next" => match v {
                Value::None => ReplyValue::IteratorNext(None),
                other => {
                    let s = seq(other, Some(5), &ctx(""))?;
                    let status = match &s[1] {
                        Value::Str(st) if st.len() == 1 => st.as_bytes()[0],
                        _ => return Err(ProtocolError::bad(ctx("status must be a 1-char str"))),
                    };
                    ReplyValue::IteratorNext(Some(TxnHeader {
                        tid: Tid(p64(&s[0], &ctx("tid"))?),
                        status,
                        user: bytes(&s[2], &ctx("user"))?,
                        description: bytes(&s[3], &ctx("description"))?,
                        extension: s[4]
                            .as_dict()
                            .ok_or_else(|| ProtocolError::bad(ctx("extension must be a dict")))?
                            .to_vec(),
                    }))
                }
            },
            "iterator_record_next" => match v {
                Value::None => ReplyValue::IteratorRecord(None),
                other => {
                    let s = seq(other, Some(4), &ctx(""))?;
                    ReplyValue::IteratorRecord(Some(IterRecord {
                        oid: Oid(p64(&s[0], &ctx("oid"))?),
                        tid: Tid(p64(&s[1], &ctx("tid"))?),
                        data: match &s[2] {
                            Value::None => None,
                            d => Some(bytes(d, &ctx("data"))?),
                        },
                        data_txn: opt_p64(&s[3], &ctx("data_txn"))?.map(Tid),
                    }))
                }
            },
            "record_iternext" => {
                let s = seq(v, Some(4), &ctx(""))?;
                ReplyValue::RecordIternext {
                    oid: Oid(p64(&s[0], &ctx("oid"))?),
                    tid: Tid(p64(&s[1], &ctx("tid"))?),
                    data: bytes(&s[2], &ctx("data"))?,
                    next: opt_p64(&s[3], &ctx("next"))?.map(Oid),
                }
            }
            "server_status" => ReplyValue::Status(
                v.as_dict()
                    .ok_or_else(|| ProtocolError::bad(ctx("must be a dict")))?
                    .iter()
                    .map(|(k, x)| match k {
                        Value::Str(s) => Ok((s.clone(), x.clone())),
                        _ => Err(ProtocolError::bad(ctx("keys must be strs"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(ProtocolError::bad(format!(
                    "no successful reply is defined for {other}"
                )))
            }
        })
    }
}

/// Calls the server makes to a client (always one-way).
#[derive(Clone, Debug, PartialEq)]
pub enum ServerCall {
    /// To every other registered client after a commit; `oids` may be empty or
    /// hold duplicates.
    InvalidateTransaction {
        tid: Tid,
        oids: Vec<Oid>,
    },
    /// `{"length", "size"}` to the committer before its tpc_finish reply, and to
    /// everyone after a pack.
    Info {
        length: u64,
        size: u64,
    },
    ReceiveBlobStart {
        oid: Oid,
        serial: Tid,
    },
    ReceiveBlobChunk {
        oid: Oid,
        serial: Tid,
        chunk: Vec<u8>,
    },
    ReceiveBlobStop {
        oid: Oid,
        serial: Tid,
    },
}

impl ServerCall {
    pub fn method(&self) -> &'static str {
        match self {
            ServerCall::InvalidateTransaction { .. } => "invalidateTransaction",
            ServerCall::Info { .. } => "info",
            ServerCall::ReceiveBlobStart { .. } => "receiveBlobStart",
            ServerCall::ReceiveBlobChunk { .. } => "receiveBlobChunk",
            ServerCall::ReceiveBlobStop { .. } => "receiveBlobStop",
        }
    }

    /// `(0, True, name, args)`.
    pub fn to_envelope(&self) -> Envelope {
        let args = match self {
            ServerCall::InvalidateTransaction { tid, oids } => vec![
                tidv(*tid),
                Value::List(oids.iter().map(|o| oidv(*o)).collect()),
            ],
            ServerCall::Info { length, size } => vec![Value::str_dict([
                ("length", Value::Int(*length as i128)),
                ("size", Value::Int(*size as i128)),
            ])],
            ServerCall::ReceiveBlobStart { oid, serial }
            | ServerCall::ReceiveBlobStop { oid, serial } => vec![oidv(*oid), tidv(*serial)],
            ServerCall::ReceiveBlobChunk { oid, serial, chunk } => {
                vec![oidv(*oid), tidv(*serial), Value::Bytes(chunk.clone())]
            }
        };
        Envelope {
            msgid: Value::Int(0),
            flag: Value::Bool(true),
            method: self.method().to_string(),
            args: Value::Tuple(args),
        }
    }

    /// Parse a server call (client side).
    pub fn from_envelope(env: &Envelope) -> Result<ServerCall, ProtocolError> {
        let m = env.method.as_str();
        let ctx = |w: &str| format!("{m} {w}");
        let args = seq(&env.args, None, &ctx("arguments"))?;
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(ProtocolError::bad(format!(
                    "{m}() takes {n} arguments ({} given)",
                    args.len()
                )))
            }
        };
        let oid = |i: usize| p64(&args[i], &ctx("oid")).map(Oid);
        let tid = |i: usize| p64(&args[i], &ctx("serial")).map(Tid);
        Ok(match m {
            "invalidateTransaction" => {
                want(2)?;
                let oids = seq(&args[1], None, &ctx("oids"))?
                    .iter()
                    .map(|o| p64(o, &ctx("oid")).map(Oid))
                    .collect::<Result<_, _>>()?;
                ServerCall::InvalidateTransaction { tid: tid(0)?, oids }
            }
            "info" => {
                want(1)?;
                let d = &args[0];
                let f = |k: &str| {
                    d.get(k)
                        .ok_or_else(|| ProtocolError::bad(ctx(&format!("lacks {k:?}"))))
                        .and_then(|v| uint(v, &ctx(k)))
                };
                ServerCall::Info {
                    length: f("length")?,
                    size: f("size")?,
                }
            }
            "receiveBlobStart" | "receiveBlobStop" => {
                want(2)?;
                let (oid, serial) = (oid(0)?, tid(1)?);
                if m == "receiveBlobStart" {
                    ServerCall::ReceiveBlobStart { oid, serial }
                } else {
                    ServerCall::ReceiveBlobStop { oid, serial }
                }
            }
            "receiveBlobChunk" => {
                want(3)?;
                ServerCall::ReceiveBlobChunk {
                    oid: oid(0)?,
                    serial: tid(1)?,
                    chunk: bytes(&args[2], &ctx("chunk"))?,
                }
            }
            other => return Err(ProtocolError::UnknownMethod(other.to_string())),
        })
    }
}

/// What a client makes of one server message.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    Reply(Reply),
    Call(ServerCall),
}

/// Classify a server envelope (client side).
pub fn parse_server_message(env: &Envelope) -> Result<ServerMessage, ProtocolError> {
    if env.method == REPLY {
        let result = if env.flag.truthy() {
            Err(WireError::from_value(&env.args)?)
        } else {
            Ok(env.args.clone())
        };
        return Ok(ServerMessage::Reply(Reply {
            msgid: env.msgid.clone(),
            result,
        }));
    }
    ServerCall::from_envelope(env).map(ServerMessage::Call)
}

/// Decode one server message payload (client side).
pub fn decode_server_message(
    enc: Encoding,
    payload: &[u8],
) -> Result<ServerMessage, ProtocolError> {
    let env = decode_message(enc, payload, GlobalPolicy::ServerMessages)?;
    parse_server_message(&env)
}

/// Encode a reply as the Python server would: a value the encoding cannot carry
/// (e.g. a set in msgpack) becomes `builtins.ValueError("Couldn't pickle
/// response")`.
pub fn encode_reply(enc: Encoding, reply: &Reply) -> Result<Vec<u8>, ProtocolError> {
    let encoded = match &reply.result {
        Ok(v) => encode_parts(enc, &reply.msgid, &Value::Int(0), REPLY, v),
        Err(e) => encode_parts(enc, &reply.msgid, &Value::Int(2), REPLY, &e.to_value()),
    };
    match encoded {
        Ok(b) => Ok(b),
        Err(_) => encode_parts(
            enc,
            &reply.msgid,
            &Value::Int(2),
            REPLY,
            &WireError::value_error("Couldn't pickle response").to_value(),
        ),
    }
}

/// Encode a server→client call.
pub fn encode_server_call(enc: Encoding, call: &ServerCall) -> Result<Vec<u8>, ProtocolError> {
    super::message::encode_message(enc, &call.to_envelope())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencodable_reply_becomes_value_error() {
        let r = Reply::ok(Value::Int(3), Value::Set(vec![Value::Int(1)]));
        let b = encode_reply(Encoding::Msgpack, &r).unwrap();
        let m = decode_server_message(Encoding::Msgpack, &b).unwrap();
        match m {
            ServerMessage::Reply(Reply { result: Err(e), .. }) => {
                assert_eq!(e.class_name, "builtins.ValueError")
            }
            other => panic!("{other:?}"),
        }
    }
}
