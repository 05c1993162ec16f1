//! Message envelopes and typed requests (spec zeo-protocol.md §3, §7).
//!
//! Every post-handshake message is a 4-tuple `(msgid, flag, name, args)`.
//! [`decode_message`]/[`encode_message`] convert between payload bytes and an
//! [`Envelope`]; [`parse_incoming`] turns a client's envelope into a typed
//! [`Request`] with arity and type validation; [`Request::to_args`] goes back (for
//! client-side tools). Replies and server→client calls live in `reply.rs`.
//!
//! Invariants: message ids are kept as [`Value`]s and echoed unchanged (loadBefore
//! uses `(oid, tid)` tuples); flags are accepted as ints or bools; an id of `-1` is
//! a heartbeat, recognised before anything else is checked; oids and tids must be
//! bytes of length 8.

use super::handshake::Encoding;
use super::pickle::GlobalPolicy;
pub use super::request::{Request, SERVER_METHODS};
use super::value::Value;
use super::{msgpack, pickle, ProtocolError};

/// The raw 4-element message.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub msgid: Value,
    /// `False`/`True` from clients (two-way/one-way); `0`/`2` in replies; `True`
    /// in server calls.
    pub flag: Value,
    /// Method name, or `.reply`.
    pub method: String,
    pub args: Value,
}

/// The method name of replies.
pub const REPLY: &str = ".reply";

/// Decode one message payload. `policy` chooses the pickle global allowlist
/// (servers read client messages, clients read server messages).
pub fn decode_message(
    enc: Encoding,
    payload: &[u8],
    policy: GlobalPolicy,
) -> Result<Envelope, ProtocolError> {
    let v = match enc {
        Encoding::Pickle => pickle::decode(payload, policy)?,
        Encoding::Msgpack => msgpack::decode(payload)?,
    };
    let items = match v {
        Value::Tuple(items) | Value::List(items) if items.len() == 4 => items,
        other => {
            return Err(ProtocolError::bad(format!(
                "a message must be a 4-tuple (msgid, flag, name, args), got {}",
                other.type_name()
            )))
        }
    };
    let mut it = items.into_iter();
    let (msgid, flag, name, args) = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
        _ => return Err(ProtocolError::bad("a message must have 4 elements")),
    };
    let method = match name {
        Value::Str(s) => s,
        other => {
            return Err(ProtocolError::bad(format!(
                "message name must be a str, got {}",
                other.type_name()
            )))
        }
    };
    Ok(Envelope {
        msgid,
        flag,
        method,
        args,
    })
}

/// Encode an envelope in the connection's encoding.
pub fn encode_message(enc: Encoding, env: &Envelope) -> Result<Vec<u8>, ProtocolError> {
    encode_parts(enc, &env.msgid, &env.flag, &env.method, &env.args)
}

/// Encode `(msgid, flag, method, args)` from borrowed parts (no copies of the
/// arguments are made).
pub fn encode_parts(
    enc: Encoding,
    msgid: &Value,
    flag: &Value,
    method: &str,
    args: &Value,
) -> Result<Vec<u8>, ProtocolError> {
    let name = Value::Str(method.to_string());
    let items = [msgid, flag, &name, args];
    match enc {
        Encoding::Pickle => pickle::encode_tuple(&items),
        Encoding::Msgpack => msgpack::encode_tuple(&items),
    }
}

/// Whether an envelope is the client heartbeat `(-1, 0, ".reply", None)` (any
/// message with id -1 is ignored).
pub fn is_heartbeat(env: &Envelope) -> bool {
    env.msgid == Value::Int(-1)
}

/// A validated client call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Echo this in the reply, unchanged.
    pub msgid: Value,
    /// The client expects no reply (failures then close the connection).
    pub oneway: bool,
    pub request: Request,
}

/// What a server makes of one client message.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// Id -1: ignore without reply.
    Heartbeat,
    Call(Call),
    /// A known method with bad arguments: reply `builtins.TypeError` to a two-way
    /// call, close the connection for a one-way call.
    BadCall {
        msgid: Value,
        oneway: bool,
        method: String,
        error: ProtocolError,
    },
}

/// Classify a decoded client envelope. An unknown method name is an error (the
/// Python server closes the connection).
pub fn parse_incoming(env: Envelope) -> Result<Incoming, ProtocolError> {
    if is_heartbeat(&env) {
        return Ok(Incoming::Heartbeat);
    }
    let oneway = match &env.flag {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => {
            return Err(ProtocolError::bad(format!(
                "message flag must be a bool, got {}",
                other.type_name()
            )))
        }
    };
    match Request::parse_owned(&env.method, env.args) {
        Ok(request) => Ok(Incoming::Call(Call {
            msgid: env.msgid,
            oneway,
            request,
        })),
        Err(e @ ProtocolError::UnknownMethod(_)) => Err(e),
        Err(error) => Ok(Incoming::BadCall {
            msgid: env.msgid,
            oneway,
            method: env.method,
            error,
        }),
    }
}

/// Decode one client message payload straight to an [`Incoming`] (server side).
pub fn decode_request(enc: Encoding, payload: &[u8]) -> Result<Incoming, ProtocolError> {
    parse_incoming(decode_message(enc, payload, GlobalPolicy::ClientMessages)?)
}
