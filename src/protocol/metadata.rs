//! Transaction metadata on the wire: the dicts of `history`, `undoLog` and
//! `undoInfo` (standard keys, then the transaction extension's items), extension
//! pickles, and `undoInfo` specification matching (including `ZopeUndo.Prefix`).
//!
//! Invariants: user names and descriptions stay bytes; an extension is stored as
//! a protocol-3 pickle of a dict, or zero bytes for an empty one.

use super::errors::WireError;
use super::pickle::{self, GlobalPolicy};
use super::value::Value;
use super::ProtocolError;
use crate::storage::{HistoryEntry, Tid, UndoEntry};

fn tidv(t: Tid) -> Value {
    Value::Bytes(t.0.to_be_bytes().to_vec())
}

/// Decode a stored transaction extension (a pickled dict, or empty for `{}`).
pub fn decode_extension(ext: &[u8]) -> Result<Vec<(Value, Value)>, ProtocolError> {
    if ext.is_empty() {
        return Ok(Vec::new());
    }
    match pickle::decode(ext, GlobalPolicy::ClientMessages)? {
        Value::Dict(d) => Ok(d),
        other => Err(ProtocolError::bad(format!(
            "transaction extension must be a dict, got {}",
            other.type_name()
        ))),
    }
}

/// Pickle an extension dict for storage (empty dict → zero bytes); bytes sent by
/// an old client are taken as already pickled.
pub fn encode_extension(ext: &Value) -> Result<Vec<u8>, ProtocolError> {
    match ext {
        Value::Dict(d) if d.is_empty() => Ok(Vec::new()),
        Value::Dict(_) => pickle::encode(ext),
        Value::Bytes(b) => Ok(b.clone()),
        other => Err(ProtocolError::bad(format!(
            "transaction extension must be a dict, got {}",
            other.type_name()
        ))),
    }
}

/// `d.update(extension)`: existing keys keep their place, new keys are appended.
fn merge(mut d: Vec<(Value, Value)>, ext: Vec<(Value, Value)>) -> Value {
    for (k, v) in ext {
        match d.iter_mut().find(|(dk, _)| *dk == k) {
            Some(slot) => slot.1 = v,
            None => d.push((k, v)),
        }
    }
    Value::Dict(d)
}

/// One `history` dict as FileStorage builds it: `time`, `user_name`,
/// `description`, `tid`, `size`, then the extension's items.
pub fn history_entry(e: &HistoryEntry) -> Result<Value, ProtocolError> {
    let base = vec![
        (Value::str("time"), Value::Float(e.time)),
        (Value::str("user_name"), Value::Bytes(e.user_name.clone())),
        (
            Value::str("description"),
            Value::Bytes(e.description.clone()),
        ),
        (Value::str("tid"), tidv(e.tid)),
        (Value::str("size"), Value::Int(e.size as i128)),
    ];
    Ok(merge(base, decode_extension(&e.extension)?))
}

/// One `history()` dict as Python's MappingStorage builds it: `time`, `tid`,
/// `serial` (= tid), `user_name`, `description`, `extension` (the extension as one
/// dict, not merged in), `size`. An unreadable extension becomes an empty dict.
pub fn mapping_history_entry(e: &HistoryEntry) -> Value {
    Value::Dict(vec![
        (Value::str("time"), Value::Float(e.time)),
        (Value::str("tid"), tidv(e.tid)),
        (Value::str("serial"), tidv(e.tid)),
        (Value::str("user_name"), Value::Bytes(e.user_name.clone())),
        (
            Value::str("description"),
            Value::Bytes(e.description.clone()),
        ),
        (
            Value::str("extension"),
            Value::Dict(decode_extension(&e.extension).unwrap_or_default()),
        ),
        (Value::str("size"), Value::Int(e.size as i128)),
    ])
}

/// One `undoLog`/`undoInfo` dict: `id`, `time`, `user_name`, `size`,
/// `description`, then the extension's items (an unreadable extension is
/// treated as empty, as ZODB does).
pub fn undo_entry(e: &UndoEntry) -> Value {
    let base = vec![
        (Value::str("id"), Value::Bytes(e.id.clone())),
        (Value::str("time"), Value::Float(e.time)),
        (Value::str("user_name"), Value::Bytes(e.user_name.clone())),
        (Value::str("size"), Value::Int(e.size as i128)),
        (
            Value::str("description"),
            Value::Bytes(e.description.clone()),
        ),
    ];
    merge(base, decode_extension(&e.extension).unwrap_or_default())
}

/// `undoInfo` filtering as ZODB's `UndoLogCompatible` does it: an entry is kept
/// when, for every `(key, value)` of the specification, `entry.get(key) == value`.
/// A `ZopeUndo.Prefix` value compares path prefixes of a str; against bytes (what
/// ZODB 5+ stores for `user_name`/`description`) Python raises `TypeError`, which
/// is returned here as the error reply the Python server sends.
pub fn undo_spec_matches(spec: &[(Value, Value)], entry: &Value) -> Result<bool, WireError> {
    for (k, want) in spec {
        let got = entry
            .as_dict()
            .and_then(|d| d.iter().find(|(ek, _)| ek == k).map(|(_, v)| v));
        let equal = match want {
            Value::Object {
                module,
                name,
                state,
                ..
            } if module == "ZopeUndo.Prefix" && name == "Prefix" => {
                let path: Vec<&str> = state
                    .as_deref()
                    .and_then(|s| s.get("path"))
                    .and_then(Value::as_seq)
                    .map(|p| p.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match got {
                    Some(Value::Str(s)) => {
                        let parts: Vec<&str> = s.split('/').collect();
                        parts.len() >= path.len() && parts[..path.len()] == path[..]
                    }
                    Some(Value::Bytes(_)) => {
                        return Err(WireError::type_error(
                            "a bytes-like object is required, not 'str'",
                        ))
                    }
                    other => {
                        return Err(WireError::attribute_error(format!(
                            "'{}' object has no attribute 'split'",
                            other.map(Value::type_name).unwrap_or("NoneType")
                        )))
                    }
                }
            }
            _ => got.unwrap_or(&Value::None) == want,
        };
        if !equal {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(path: &str) -> Value {
        let parts: Vec<Value> = path.split('/').map(Value::str).collect();
        Value::Object {
            module: "ZopeUndo.Prefix".into(),
            name: "Prefix".into(),
            args: vec![],
            state: Some(Box::new(Value::str_dict([
                ("length", Value::Int(parts.len() as i128)),
                ("path", Value::List(parts)),
            ]))),
        }
    }

    #[test]
    fn undo_spec_filtering() {
        let entry = Value::str_dict([
            ("user_name", Value::bytes(b"/ bob".to_vec())),
            ("description", Value::bytes(b"create a".to_vec())),
            ("note", Value::str("/site/x")),
        ]);
        let spec = vec![(
            Value::str("description"),
            Value::bytes(b"create a".to_vec()),
        )];
        assert_eq!(undo_spec_matches(&spec, &entry), Ok(true));
        let spec = vec![(Value::str("description"), Value::bytes(b"other".to_vec()))];
        assert_eq!(undo_spec_matches(&spec, &entry), Ok(false));
        let spec = vec![(Value::str("note"), prefix("/site"))];
        assert_eq!(undo_spec_matches(&spec, &entry), Ok(true));
        let spec = vec![(Value::str("note"), prefix("/other"))];
        assert_eq!(undo_spec_matches(&spec, &entry), Ok(false));
        // As observed: Prefix against bytes user_name is a TypeError reply.
        let spec = vec![(Value::str("user_name"), prefix("/"))];
        let e = undo_spec_matches(&spec, &entry).unwrap_err();
        assert_eq!(e.class_name, "builtins.TypeError");
    }
}
