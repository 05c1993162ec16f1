//! ZODB exceptions in wire form (spec zeo-protocol.md §5): an error reply carries
//! `(class_name, state)` in both encodings, where `class_name` is the dotted Python
//! class and `state` the exception's attribute dict if non-empty, else its `args`
//! tuple. The constructors below produce exactly the shapes the Python client
//! rebuilds (ConflictError needs `message`, `oid`, `class_name`, `serials`, or the
//! client's caller waits forever).
//!
//! Invariants: no constructor puts a server filesystem path into a message;
//! `serials` are `(committed tid, tid the client read)`.

use super::value::Value;
use super::ProtocolError;
use crate::storage::{ConflictInfo, Oid, StorageError, Tid};

/// An exception as it travels in an error reply.
#[derive(Clone, Debug, PartialEq)]
pub struct WireError {
    /// Dotted class name, e.g. `ZODB.POSException.POSKeyError`.
    pub class_name: String,
    /// Attribute dict or args tuple.
    pub state: Value,
}

fn oid_v(oid: Oid) -> Value {
    Value::Bytes(oid.to_bytes().to_vec())
}
fn tid_v(tid: Tid) -> Value {
    Value::Bytes(tid.to_bytes().to_vec())
}
fn args(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

pub const POS_KEY_ERROR: &str = "ZODB.POSException.POSKeyError";
pub const CONFLICT_ERROR: &str = "ZODB.POSException.ConflictError";
pub const READ_CONFLICT_ERROR: &str = "ZODB.POSException.ReadConflictError";
pub const READ_ONLY_ERROR: &str = "ZODB.POSException.ReadOnlyError";
pub const STORAGE_TRANSACTION_ERROR: &str = "ZODB.POSException.StorageTransactionError";
pub const MULTIPLE_UNDO_ERRORS: &str = "ZODB.POSException.MultipleUndoErrors";
pub const UNDO_ERROR: &str = "ZODB.POSException.UndoError";

impl WireError {
    pub fn new(class_name: impl Into<String>, state: Value) -> Self {
        WireError {
            class_name: class_name.into(),
            state,
        }
    }

    /// `(class_name, state)`, the `args` of an error reply.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            Value::Str(self.class_name.clone()),
            self.state.clone(),
        ])
    }

    /// Parse the `args` of an error reply (a 2-sequence `(str, state)`).
    pub fn from_value(v: &Value) -> Result<Self, ProtocolError> {
        match v.as_seq() {
            Some([Value::Str(c), state]) => Ok(WireError::new(c.clone(), state.clone())),
            _ => Err(ProtocolError::bad(format!(
                "error reply must be (class name, state), got {}",
                v.type_name()
            ))),
        }
    }

    /// `POSKeyError(oid)`: unknown or deleted object.
    pub fn pos_key(oid: Oid) -> Self {
        WireError::new(POS_KEY_ERROR, args(vec![oid_v(oid)]))
    }
    /// `POSKeyError(None)`: a lookup of the oid `None` (history).
    pub fn pos_key_none() -> Self {
        WireError::new(POS_KEY_ERROR, args(vec![Value::None]))
    }
    /// `POSKeyError(oid, serial)`: no such revision (`loadSerial`).
    pub fn pos_key_serial(oid: Oid, serial: Tid) -> Self {
        WireError::new(POS_KEY_ERROR, args(vec![oid_v(oid), tid_v(serial)]))
    }
    /// `POSKeyError("No blob file", oid, serial)` for `sendBlob` (unlike Python, the
    /// message names no server path).
    pub fn pos_key_blob(oid: Oid, serial: Tid) -> Self {
        WireError::new(
            POS_KEY_ERROR,
            args(vec![Value::str("No blob file"), oid_v(oid), tid_v(serial)]),
        )
    }

    fn conflict_state(message: &str, c: &ConflictInfo) -> Value {
        Value::str_dict([
            ("message", Value::str(message)),
            ("oid", oid_v(c.oid)),
            (
                "class_name",
                Value::opt(c.class_name.clone().map(Value::Str)),
            ),
            (
                "serials",
                Value::Tuple(vec![tid_v(c.serials.0), tid_v(c.serials.1)]),
            ),
        ])
    }
    /// `ConflictError` as ZODB 6.4 storages raise it at vote.
    pub fn conflict(c: &ConflictInfo) -> Self {
        WireError::new(
            CONFLICT_ERROR,
            Self::conflict_state("database conflict error", c),
        )
    }
    /// `ReadConflictError` from `checkCurrentSerialInTransaction`.
    pub fn read_conflict(c: &ConflictInfo) -> Self {
        WireError::new(
            READ_CONFLICT_ERROR,
            Self::conflict_state("database read conflict error", c),
        )
    }
    pub fn read_only() -> Self {
        WireError::new(READ_ONLY_ERROR, args(vec![]))
    }
    /// `StorageTransactionError(current_id, given_id)` (vote with no or another
    /// transaction; `current` is `Value::None` when there is none).
    pub fn storage_transaction_ids(current: Value, given: Value) -> Self {
        WireError::new(STORAGE_TRANSACTION_ERROR, args(vec![current, given]))
    }
    /// `StorageTransactionError(message)`, e.g. `"Already voting (locked)"`.
    pub fn storage_transaction(message: impl Into<String>) -> Self {
        WireError::new(
            STORAGE_TRANSACTION_ERROR,
            args(vec![Value::Str(message.into())]),
        )
    }
    fn builtin(name: &str, message: String) -> Self {
        WireError::new(format!("builtins.{name}"), args(vec![Value::Str(message)]))
    }
    /// `builtins.ValueError`, e.g. `"unknown storage: NAME"`.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::builtin("ValueError", message.into())
    }
    /// `builtins.TypeError` (bad arguments, `history(oid, None)`).
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::builtin("TypeError", message.into())
    }
    /// `builtins.AttributeError` (`new_oid`, `record_iternext` on MappingStorage).
    pub fn attribute_error(message: impl Into<String>) -> Self {
        Self::builtin("AttributeError", message.into())
    }
    /// `builtins.AssertionError` (`tpc_finish` before `vote`).
    pub fn assertion_error(message: impl Into<String>) -> Self {
        Self::builtin("AssertionError", message.into())
    }
    /// `builtins.Exception` (out-of-order record iterator).
    pub fn exception(message: impl Into<String>) -> Self {
        Self::builtin("Exception", message.into())
    }
    /// `builtins.KeyError(key)` (unknown iterator id).
    pub fn key_error(key: Value) -> Self {
        WireError::new("builtins.KeyError", args(vec![key]))
    }
    /// `MultipleUndoErrors` with `_errs` as `(oid, reason)` pairs. `_reason`/`_oid`
    /// mirror the first pair the way Python's constructor stores them
    /// (`UndoError.__init__(self, *errs[0])`: `_reason` = oid, `_oid` = reason).
    pub fn multiple_undo(failures: &[(Oid, String)]) -> Self {
        let errs = failures
            .iter()
            .map(|(o, r)| Value::Tuple(vec![oid_v(*o), Value::Str(r.clone())]))
            .collect();
        let (first_oid, first_reason) = match failures.first() {
            Some((o, r)) => (oid_v(*o), Value::Str(r.clone())),
            None => (Value::None, Value::None),
        };
        WireError::new(
            MULTIPLE_UNDO_ERRORS,
            Value::str_dict([
                ("_reason", first_oid),
                ("_oid", first_reason),
                ("_errs", Value::List(errs)),
            ]),
        )
    }
    /// A single `UndoError(reason, oid)`.
    pub fn undo_error(reason: impl Into<String>, oid: Option<Oid>) -> Self {
        WireError::new(
            UNDO_ERROR,
            Value::str_dict([
                ("_reason", Value::Str(reason.into())),
                ("_oid", Value::opt(oid.map(oid_v))),
            ]),
        )
    }

    /// The wire form of a storage error, as the Python server would send it.
    pub fn from_storage(e: &StorageError) -> Self {
        let class = e.python_class();
        let one = |m: String| WireError::new(class, args(vec![Value::Str(m)]));
        match e {
            StorageError::PosKey { oid, serial: None } => Self::pos_key(*oid),
            StorageError::PosKey {
                oid,
                serial: Some(s),
            } => Self::pos_key_serial(*oid, *s),
            StorageError::Conflict(c) => Self::conflict(c),
            StorageError::ReadConflict(c) => Self::read_conflict(c),
            StorageError::ReadOnly => Self::read_only(),
            StorageError::Transaction(m) => Self::storage_transaction(m.clone()),
            StorageError::Undo { message, failures } if failures.is_empty() => {
                Self::undo_error(message.clone(), None)
            }
            StorageError::Undo { failures, .. } => Self::multiple_undo(failures),
            StorageError::Corrupted { offset, what, .. } => {
                one(format!("storage data corrupted at offset {offset}: {what}"))
            }
            StorageError::Locked { .. } => one("the storage is locked by another process".into()),
            StorageError::Pack(m) | StorageError::Invalid(m) => one(m.clone()),
            StorageError::Io { source, .. } => one(format!("I/O error on the server: {source}")),
        }
    }

    /// Whether clients treat this as an expected condition (not logged as an error).
    pub fn is_expected(&self) -> bool {
        matches!(
            self.class_name.as_str(),
            POS_KEY_ERROR | CONFLICT_ERROR | READ_CONFLICT_ERROR
        )
    }

    /// The conflict carried by a `ConflictError`/`ReadConflictError` state.
    pub fn conflict_info(&self) -> Option<ConflictInfo> {
        if self.class_name != CONFLICT_ERROR && self.class_name != READ_CONFLICT_ERROR {
            return None;
        }
        let oid = Oid::from_slice(self.state.get("oid")?.as_bytes()?)?;
        let serials = self.state.get("serials")?.as_seq()?;
        let [a, b] = serials else { return None };
        let committed = Tid::from_slice(a.as_bytes()?)?;
        let read = Tid::from_slice(b.as_bytes()?)?;
        let class_name = self
            .state
            .get("class_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(ConflictInfo {
            oid,
            serials: (committed, read),
            class_name,
        })
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.class_name, self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_shape() {
        let c = ConflictInfo {
            oid: Oid(1),
            serials: (Tid(5), Tid(3)),
            class_name: Some("persistent.mapping.PersistentMapping".into()),
        };
        let e = WireError::from_storage(&StorageError::Conflict(c.clone()));
        assert_eq!(e.class_name, CONFLICT_ERROR);
        let keys: Vec<_> = e
            .state
            .as_dict()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["message", "oid", "class_name", "serials"]);
        assert_eq!(e.conflict_info(), Some(c));
        assert!(e.is_expected());
        let back = WireError::from_value(&e.to_value()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn no_paths_leak() {
        let e = StorageError::Corrupted {
            path: "/secret/Data.fs".into(),
            offset: 7,
            what: "bad tlen".into(),
        };
        assert!(!WireError::from_storage(&e).to_string().contains("secret"));
        let e = StorageError::io("reading /secret/x", std::io::Error::other("boom"));
        assert!(!WireError::from_storage(&e).to_string().contains("secret"));
        assert!(!WireError::pos_key_blob(Oid(1), Tid(2))
            .to_string()
            .contains('/'));
    }

    #[test]
    fn bad_error_payloads() {
        assert!(WireError::from_value(&Value::Int(3)).is_err());
        assert!(WireError::from_value(&Value::Tuple(vec![Value::Int(1), Value::None])).is_err());
    }
}
