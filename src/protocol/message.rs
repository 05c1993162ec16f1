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
//! bytes of length 8. The one fixed-shape message of the read path, ClientStorage's
//! pickled loadBefore call, is recognised byte for byte without the general pickle
//! decoder; it yields exactly the envelope the decoder would (a test compares them).

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
    if enc == Encoding::Pickle {
        if let Some(env) = pickled_load_before(payload) {
            return Ok(env);
        }
    }
    decode_general(enc, payload, policy)
}

/// Where the four 8-byte strings sit in [`LOAD_BEFORE_SHAPE`].
const LOAD_BEFORE_SLOTS: [usize; 4] = [5, 15, 42, 52];

/// ZEO's client pickle of `((oid, tid), False, "loadBefore", (oid, tid))` (protocol 3,
/// memo-less "fast" pickler), with the four 8-byte strings zeroed.
const LOAD_BEFORE_SHAPE: &[u8; 63] = b"\x80\x03(C\x08\0\0\0\0\0\0\0\0C\x08\0\0\0\0\0\0\0\0\x86\x89X\x0a\0\0\0loadBeforeC\x08\0\0\0\0\0\0\0\0C\x08\0\0\0\0\0\0\0\0\x86t.";

/// The envelope of a loadBefore call in exactly ClientStorage's byte shape, or None
/// for any other payload.
fn pickled_load_before(payload: &[u8]) -> Option<Envelope> {
    if payload.len() != LOAD_BEFORE_SHAPE.len() {
        return None;
    }
    let mut from = 0;
    for &slot in &LOAD_BEFORE_SLOTS {
        if payload.get(from..slot)? != LOAD_BEFORE_SHAPE.get(from..slot)? {
            return None;
        }
        from = slot + 8;
    }
    if payload.get(from..)? != LOAD_BEFORE_SHAPE.get(from..)? {
        return None;
    }
    let bytes = |i: usize| {
        let at = LOAD_BEFORE_SLOTS[i];
        payload.get(at..at + 8).map(|b| Value::Bytes(b.to_vec()))
    };
    Some(Envelope {
        msgid: Value::Tuple(vec![bytes(0)?, bytes(1)?]),
        flag: Value::Bool(false),
        method: "loadBefore".to_string(),
        args: Value::Tuple(vec![bytes(2)?, bytes(3)?]),
    })
}

/// [`decode_message`] without the loadBefore shortcut.
fn decode_general(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// ZEO 6.2's `ZEO.asyncio.marshal.encoder(b"Z5")(m, False, "loadBefore", m)` for
    /// `m = (p64(5), b"\x7f" + b"\xff" * 7)`.
    const CLIENT_LOAD_BEFORE: &str = "8003284308000000000000000543087fffffffffffffff8689580a0000006c6f61644265666f72654308000000000000000543087fffffffffffffff86742e";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn client_load_before_takes_the_shortcut_and_matches_the_decoder() {
        let p = unhex(CLIENT_LOAD_BEFORE);
        let fast = pickled_load_before(&p).expect("ClientStorage's shape");
        let general = decode_general(Encoding::Pickle, &p, GlobalPolicy::ClientMessages).unwrap();
        assert_eq!(fast, general);
        let oid = Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0, 5]);
        let tid = Value::Bytes(vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(fast.msgid, Value::Tuple(vec![oid.clone(), tid.clone()]));
        assert_eq!(fast.args, Value::Tuple(vec![oid, tid]));
        assert_eq!(fast.method, "loadBefore");
        assert_eq!(fast.flag, Value::Bool(false));
    }

    #[test]
    fn any_oid_and_tid_decode_alike() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut p = LOAD_BEFORE_SHAPE.to_vec();
        for _ in 0..2000 {
            for &slot in &LOAD_BEFORE_SLOTS {
                p[slot..slot + 8].copy_from_slice(&xorshift(&mut x).to_be_bytes());
            }
            let fast = pickled_load_before(&p).expect("the shape");
            let general =
                decode_general(Encoding::Pickle, &p, GlobalPolicy::ClientMessages).unwrap();
            assert_eq!(fast, general);
        }
    }

    #[test]
    fn mutated_and_truncated_shapes_never_disagree_with_the_decoder() {
        let base = unhex(CLIENT_LOAD_BEFORE);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut shortcuts = 0;
        for round in 0..5000 {
            let mut p = base.clone();
            for _ in 0..=(xorshift(&mut x) % 3) {
                let i = (xorshift(&mut x) % p.len() as u64) as usize;
                p[i] = xorshift(&mut x) as u8;
            }
            if round % 7 == 0 {
                p.truncate((xorshift(&mut x) % 63) as usize);
            }
            if round % 11 == 0 {
                p.push(b'.');
            }
            if let Some(fast) = pickled_load_before(&p) {
                shortcuts += 1;
                let general =
                    decode_general(Encoding::Pickle, &p, GlobalPolicy::ClientMessages).unwrap();
                assert_eq!(fast, general, "payload {p:02x?}");
            }
            // Whatever the shortcut says, the public entry point must not panic.
            let _ = decode_message(Encoding::Pickle, &p, GlobalPolicy::ClientMessages);
        }
        // Mutations that only touch the four strings keep the shape.
        assert!(shortcuts > 100, "only {shortcuts} shortcuts taken");
    }

    #[test]
    fn other_messages_are_untouched() {
        // An int message id (what our own client sends) is not the shortcut's shape.
        let env = Envelope {
            msgid: Value::Int(7),
            flag: Value::Bool(false),
            method: "loadBefore".into(),
            args: Value::Tuple(vec![Value::Bytes(vec![0; 8]), Value::Bytes(vec![0xff; 8])]),
        };
        let p = encode_message(Encoding::Pickle, &env).unwrap();
        assert!(pickled_load_before(&p).is_none());
        assert_eq!(
            decode_message(Encoding::Pickle, &p, GlobalPolicy::ClientMessages).unwrap(),
            env
        );
    }
}
