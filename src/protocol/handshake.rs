//! The connection handshake (spec zeo-protocol.md §2, §13): the server's greeting
//! (`Z5` pickle / `M5` msgpack), the client's answer, protocol selection, and the
//! `ruok` monitoring probe with its JSON status document.
//!
//! Invariants: the server adopts the *client's* letter; only version `5` is
//! accepted; `ruok` is recognised only as the complete first client message.

use super::value::Value;
use crate::pyjson::Json;

/// The only protocol version ZEO 5/6 speak.
pub const PROTOCOL_VERSION: &[u8] = b"5";

/// The client's `ruok` probe payload.
pub const RUOK: &[u8] = b"ruok";

/// Message encoding of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `Z`: zodbpickle protocol 3.
    Pickle,
    /// `M`: msgpack.
    Msgpack,
}

impl Encoding {
    pub fn letter(self) -> u8 {
        match self {
            Encoding::Pickle => b'Z',
            Encoding::Msgpack => b'M',
        }
    }
    pub fn from_letter(c: u8) -> Option<Self> {
        match c {
            b'Z' => Some(Encoding::Pickle),
            b'M' => Some(Encoding::Msgpack),
            _ => None,
        }
    }
    /// The greeting payload the server sends first (`Z5` / `M5`).
    pub fn greeting(self) -> Vec<u8> {
        let mut g = vec![self.letter()];
        g.extend_from_slice(PROTOCOL_VERSION);
        g
    }
}

/// What the client's first message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHandshake {
    /// The monitoring probe: answer with [`ruok_json`] and close.
    Ruok,
    /// A protocol-5 client using this encoding (possibly not the greeted one).
    Accept(Encoding),
    /// Anything else: log the reason and close.
    Reject(String),
}

/// Interpret the first message a client sends (server side).
pub fn parse_client_handshake(payload: &[u8]) -> ClientHandshake {
    if payload == RUOK {
        return ClientHandshake::Ruok;
    }
    let Some((&letter, version)) = payload.split_first() else {
        return ClientHandshake::Reject("empty handshake".into());
    };
    if version != PROTOCOL_VERSION {
        return ClientHandshake::Reject(format!(
            "bad handshake {:?}: unsupported protocol version (only 5 is supported)",
            String::from_utf8_lossy(payload)
        ));
    }
    match Encoding::from_letter(letter) {
        Some(e) => ClientHandshake::Accept(e),
        None => ClientHandshake::Reject(format!(
            "bad handshake {:?}: unknown encoding letter",
            String::from_utf8_lossy(payload)
        )),
    }
}

/// Client side: the answer to a server greeting, `version = min(greeting[1:], "5")`
/// with only `5` acceptable. Returns the encoding and the reply payload.
pub fn answer_greeting(greeting: &[u8]) -> Result<(Encoding, Vec<u8>), String> {
    let Some((&letter, version)) = greeting.split_first() else {
        return Err("empty greeting".into());
    };
    let enc = Encoding::from_letter(letter)
        .ok_or_else(|| format!("unknown encoding in greeting {greeting:?}"))?;
    let chosen = if version < PROTOCOL_VERSION {
        version
    } else {
        PROTOCOL_VERSION
    };
    if chosen != PROTOCOL_VERSION {
        return Err(format!(
            "server protocol {:?} is not supported (ZEO 5 needed)",
            String::from_utf8_lossy(version)
        ));
    }
    Ok((enc, enc.greeting()))
}

/// Python `json.dumps` (default separators, `ensure_ascii`) of a value made of
/// dicts with str keys, strs, ints, floats, bools and None; other types (bytes,
/// sets, ...) are rendered as their repr string.
pub fn to_json(v: &Value) -> String {
    crate::pyjson::dumps(&as_json(v))
}

/// The JSON form of a decoded value, as `to_json` renders it.
fn as_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(*i),
        Value::Float(f) => Json::Float(*f),
        Value::Str(s) => Json::Str(s.clone()),
        Value::Tuple(xs) | Value::List(xs) => Json::Arr(xs.iter().map(as_json).collect()),
        Value::Dict(d) => Json::Obj(
            d.iter()
                .map(|(k, x)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, as_json(x))
                })
                .collect(),
        ),
        other => Json::Str(other.to_string()),
    }
}

/// The `ruok` answer: `{"<storage>": {server_status...}, ...}` as ASCII JSON.
pub fn ruok_json(statuses: &[(String, Value)]) -> Vec<u8> {
    let doc = Value::Dict(
        statuses
            .iter()
            .map(|(name, st)| (Value::Str(name.clone()), st.clone()))
            .collect(),
    );
    to_json(&doc).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes() {
        assert_eq!(parse_client_handshake(b"ruok"), ClientHandshake::Ruok);
        assert_eq!(
            parse_client_handshake(b"M5"),
            ClientHandshake::Accept(Encoding::Msgpack)
        );
        assert_eq!(
            parse_client_handshake(b"Z5"),
            ClientHandshake::Accept(Encoding::Pickle)
        );
        for bad in [&b"Z4"[..], b"", b"X5", b"Z55", b"Z"] {
            assert!(
                matches!(parse_client_handshake(bad), ClientHandshake::Reject(_)),
                "{bad:?}"
            );
        }
        assert_eq!(Encoding::Msgpack.greeting(), b"M5");
    }

    #[test]
    fn client_side_version_choice() {
        assert_eq!(answer_greeting(b"Z5").unwrap().1, b"Z5");
        assert_eq!(answer_greeting(b"Z6").unwrap().1, b"Z5");
        assert_eq!(answer_greeting(b"M5").unwrap().0, Encoding::Msgpack);
        assert!(answer_greeting(b"Z4").is_err());
        assert!(answer_greeting(b"Z3101").is_err());
    }

    #[test]
    fn json_like_python() {
        let st = Value::str_dict([
            ("connections", Value::Int(0)),
            ("lock_time", Value::None),
            ("start", Value::str("Sat Nov 21 17:25:19 2026")),
            ("x", Value::Float(1.5)),
            ("ok", Value::Bool(true)),
            ("u", Value::str("zoë")),
        ]);
        assert_eq!(
            String::from_utf8(ruok_json(&[("1".into(), st)])).unwrap(),
            r#"{"1": {"connections": 0, "lock_time": null, "start": "Sat Nov 21 17:25:19 2026", "x": 1.5, "ok": true, "u": "zo\u00eb"}}"#
        );
    }
}
