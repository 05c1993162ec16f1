//! Typed client requests (spec zeo-protocol.md §7): one [`Request`] variant per
//! server method, validated for arity and argument types with messages that name
//! the method, the argument and what was wrong; [`Request::to_args`] rebuilds the
//! argument tuple the Python client sends.
//!
//! Invariants: oids and tids are bytes of length 8; transaction and iterator ids
//! are kept as the client's `Value`s (compared by equality, echoed unchanged).

use super::message::Envelope;
use super::value::Value;
use super::ProtocolError;
use crate::storage::{Oid, Tid};

/// Every method a registered client may call, with whether the Python client
/// calls it one-way.
pub const SERVER_METHODS: &[(&str, bool)] = &[
    ("register", false),
    ("get_info", false),
    ("lastTransaction", false),
    ("ping", false),
    ("loadBefore", false),
    ("loadSerial", false),
    ("getTid", false),
    ("history", false),
    ("new_oids", false),
    ("new_oid", false),
    ("getInvalidations", false),
    ("pack", false),
    ("undoLog", false),
    ("undoInfo", false),
    ("tpc_begin", true),
    ("storea", true),
    ("checkCurrentSerialInTransaction", true),
    ("restorea", true),
    ("deleteObject", true),
    ("undoa", true),
    ("storeBlobStart", true),
    ("storeBlobChunk", true),
    ("storeBlobEnd", true),
    ("storeBlobShared", true),
    ("vote", false),
    ("tpc_finish", false),
    ("tpc_abort", false),
    ("sendBlob", false),
    ("record_iternext", false),
    ("iterator_start", false),
    ("iterator_next", false),
    ("iterator_record_start", false),
    ("iterator_record_next", false),
    ("iterator_gc", true),
    ("server_status", false),
    ("set_client_label", true),
];

/// A client request, validated. Transaction ids (`txn`) and iterator ids are the
/// client's values, compared by equality and echoed unchanged.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Register {
        storage: String,
        read_only: bool,
    },
    GetInfo,
    LastTransaction,
    Ping,
    LoadBefore {
        oid: Oid,
        before: Tid,
    },
    LoadSerial {
        oid: Oid,
        serial: Tid,
    },
    GetTid {
        oid: Oid,
    },
    /// `size` is `None` when the client passed `None` (Python raises TypeError);
    /// it defaults to 1 when absent. `oid` is `None` when the client passed `None`
    /// (FileStorage looks it up first and answers POSKeyError).
    History {
        oid: Option<Oid>,
        size: Option<i64>,
    },
    /// `n` as sent (default 100); the server clamps it to 1..=100.
    NewOids {
        n: i64,
    },
    NewOid,
    GetInvalidations {
        tid: Tid,
    },
    /// `time`: seconds since the epoch; `wait` default true.
    Pack {
        time: f64,
        wait: bool,
    },
    UndoLog {
        first: i64,
        last: i64,
    },
    /// `specification`: the filter dict, `None` for no filter.
    UndoInfo {
        first: i64,
        last: i64,
        specification: Option<Vec<(Value, Value)>>,
    },
    TpcBegin {
        txn: Value,
        user: Vec<u8>,
        description: Vec<u8>,
        /// The extension: a dict (normally), or already-pickled bytes.
        extension: Value,
        tid: Option<Tid>,
        /// Status byte to commit with: `b' '` or `b'p'`.
        status: u8,
    },
    StoreA {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        txn: Value,
    },
    CheckCurrentSerial {
        oid: Oid,
        serial: Tid,
        txn: Value,
    },
    RestoreA {
        oid: Oid,
        serial: Tid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
        txn: Value,
    },
    DeleteObject {
        oid: Oid,
        serial: Tid,
        txn: Value,
    },
    UndoA {
        undo_id: Vec<u8>,
        txn: Value,
    },
    StoreBlobStart,
    StoreBlobChunk {
        chunk: Vec<u8>,
    },
    StoreBlobEnd {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        txn: Value,
    },
    StoreBlobShared {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        filename: String,
        txn: Value,
    },
    Vote {
        txn: Value,
    },
    TpcFinish {
        txn: Value,
    },
    TpcAbort {
        txn: Value,
    },
    SendBlob {
        oid: Oid,
        serial: Tid,
    },
    RecordIternext {
        next: Option<Oid>,
    },
    IteratorStart {
        start: Option<Tid>,
        stop: Option<Tid>,
    },
    IteratorNext {
        iid: Value,
    },
    IteratorRecordStart {
        txn_iid: Value,
        tid: Tid,
    },
    IteratorRecordNext {
        iid: Value,
    },
    IteratorGc {
        iids: Vec<Value>,
    },
    ServerStatus,
    SetClientLabel {
        label: Value,
    },
}

/// Positional arguments of one call, with typed accessors producing clear errors.
struct Args<'a> {
    method: &'a str,
    /// Owned, so large byte strings (records, blob chunks) are moved, not copied.
    items: Vec<Value>,
}

impl<'a> Args<'a> {
    fn arity(&self, min: usize, max: usize) -> Result<(), ProtocolError> {
        let n = self.items.len();
        if n < min || n > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(ProtocolError::bad(format!(
                "{}() takes {want} arguments ({n} given)",
                self.method
            )));
        }
        Ok(())
    }
    fn type_err(&self, i: usize, name: &str, want: &str) -> ProtocolError {
        let got = self.items.get(i).map(Value::type_name).unwrap_or("nothing");
        ProtocolError::bad(format!(
            "{}() argument {} ({name}) must be {want}, got {got}",
            self.method,
            i + 1
        ))
    }
    fn get(&self, i: usize) -> Option<&Value> {
        self.items.get(i)
    }
    fn value(&mut self, i: usize) -> Value {
        self.items
            .get_mut(i)
            .map(|v| std::mem::replace(v, Value::None))
            .unwrap_or(Value::None)
    }
    fn p64(&self, i: usize, name: &str) -> Result<u64, ProtocolError> {
        match self.get(i) {
            Some(Value::Bytes(b)) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(u64::from_be_bytes(a))
            }
            _ => Err(self.type_err(i, name, "8 bytes")),
        }
    }
    fn oid(&self, i: usize, name: &str) -> Result<Oid, ProtocolError> {
        self.p64(i, name).map(Oid)
    }
    fn tid(&self, i: usize, name: &str) -> Result<Tid, ProtocolError> {
        self.p64(i, name).map(Tid)
    }
    /// The serial a store names: 8 bytes, or `None`, which Python clients send for a
    /// new object's first revision (ZODB treats it like z64: new objects' serials are
    /// not checked).
    ///
    /// A str of 8 characters below U+0100 is taken as those 8 bytes: Python 2
    /// leftovers such as ZODB's tests send `'\0' * 8`, which runzeo's FileStorage
    /// accepts for a new object.
    fn serial(&self, i: usize, name: &str) -> Result<Tid, ProtocolError> {
        match self.get(i) {
            Some(Value::None) => Ok(Tid::ZERO),
            Some(Value::Str(s))
                if s.chars().count() == 8 && s.chars().all(|c| (c as u32) < 256) =>
            {
                let mut a = [0u8; 8];
                for (slot, c) in a.iter_mut().zip(s.chars()) {
                    *slot = c as u32 as u8;
                }
                Ok(Tid(u64::from_be_bytes(a)))
            }
            _ => self.tid(i, name),
        }
    }
    fn opt_tid(&self, i: usize, name: &str) -> Result<Option<Tid>, ProtocolError> {
        match self.get(i) {
            None | Some(Value::None) => Ok(None),
            Some(_) => self.tid(i, name).map(Some),
        }
    }
    fn bytes(&mut self, i: usize, name: &str) -> Result<Vec<u8>, ProtocolError> {
        match self.items.get_mut(i) {
            Some(Value::Bytes(b)) => Ok(std::mem::take(b)),
            _ => Err(self.type_err(i, name, "bytes")),
        }
    }
    /// A record's data: bytes, or a str taken as its UTF-8 bytes. runzeo buffers
    /// whatever arrives and only fails at vote; ZEO's own tests store str data in
    /// transactions they then abort, so refusing it here would drop the connection.
    fn data(&mut self, i: usize, name: &str) -> Result<Vec<u8>, ProtocolError> {
        match self.items.get_mut(i) {
            Some(Value::Bytes(b)) => Ok(std::mem::take(b)),
            Some(Value::Str(s)) => Ok(std::mem::take(s).into_bytes()),
            _ => Err(self.type_err(i, name, "bytes")),
        }
    }
    /// Bytes, or a str taken as UTF-8 (the Python server accepts both).
    fn text_bytes(&self, i: usize, name: &str) -> Result<Vec<u8>, ProtocolError> {
        match self.get(i) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(Value::Str(s)) => Ok(s.as_bytes().to_vec()),
            _ => Err(self.type_err(i, name, "bytes or str")),
        }
    }
    fn string(&self, i: usize, name: &str) -> Result<String, ProtocolError> {
        match self.get(i) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => Err(self.type_err(i, name, "a str")),
        }
    }
    fn int(&self, i: usize, name: &str) -> Result<i64, ProtocolError> {
        match self.get(i) {
            Some(Value::Int(v)) => {
                i64::try_from(*v).map_err(|_| self.type_err(i, name, "an int in 64-bit range"))
            }
            Some(Value::Bool(b)) => Ok(*b as i64),
            _ => Err(self.type_err(i, name, "an int")),
        }
    }
    fn int_or(&self, i: usize, name: &str, default: i64) -> Result<i64, ProtocolError> {
        if self.get(i).is_none() {
            Ok(default)
        } else {
            self.int(i, name)
        }
    }
    fn flag(&self, i: usize, name: &str) -> Result<bool, ProtocolError> {
        match self.get(i) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(v)) => Ok(*v != 0),
            Some(Value::None) => Ok(false),
            _ => Err(self.type_err(i, name, "a bool or int")),
        }
    }
}

fn p64v(x: u64) -> Value {
    Value::Bytes(x.to_be_bytes().to_vec())
}
fn oidv(o: Oid) -> Value {
    p64v(o.0)
}
fn tidv(t: Tid) -> Value {
    p64v(t.0)
}
fn opt_tidv(t: Option<Tid>) -> Value {
    Value::opt(t.map(tidv))
}

impl Request {
    /// Validate `args` (the 4th element of the envelope) for `method`.
    pub fn parse(method: &str, args: &Value) -> Result<Request, ProtocolError> {
        Self::parse_owned(method, args.clone())
    }

    /// Like [`Request::parse`], taking the arguments by value so that byte
    /// strings are moved into the request instead of copied.
    pub fn parse_owned(method: &str, args: Value) -> Result<Request, ProtocolError> {
        let Some((name, _)) = SERVER_METHODS.iter().find(|(m, _)| *m == method) else {
            return Err(ProtocolError::UnknownMethod(method.to_string()));
        };
        let items = match args {
            Value::Tuple(v) | Value::List(v) => v,
            other => {
                return Err(ProtocolError::bad(format!(
                    "{method}() arguments must be a tuple, got {}",
                    other.type_name()
                )))
            }
        };
        let mut a = Args {
            method: name,
            items,
        };
        use Request as R;
        let r = match *name {
            "register" => {
                a.arity(2, 2)?;
                R::Register {
                    storage: a.string(0, "storage")?,
                    read_only: a.flag(1, "read_only")?,
                }
            }
            "get_info" | "lastTransaction" | "ping" | "new_oid" | "storeBlobStart"
            | "server_status" => {
                a.arity(0, 0)?;
                match *name {
                    "get_info" => R::GetInfo,
                    "lastTransaction" => R::LastTransaction,
                    "ping" => R::Ping,
                    "new_oid" => R::NewOid,
                    "storeBlobStart" => R::StoreBlobStart,
                    _ => R::ServerStatus,
                }
            }
            "loadBefore" => {
                a.arity(2, 2)?;
                R::LoadBefore {
                    oid: a.oid(0, "oid")?,
                    before: a.tid(1, "tid")?,
                }
            }
            "loadSerial" | "sendBlob" => {
                a.arity(2, 2)?;
                let (oid, serial) = (a.oid(0, "oid")?, a.tid(1, "serial")?);
                if *name == "loadSerial" {
                    R::LoadSerial { oid, serial }
                } else {
                    R::SendBlob { oid, serial }
                }
            }
            "getTid" => {
                a.arity(1, 1)?;
                R::GetTid {
                    oid: a.oid(0, "oid")?,
                }
            }
            "history" => {
                a.arity(1, 2)?;
                let size = match a.get(1) {
                    None => Some(1),
                    Some(Value::None) => None,
                    Some(_) => Some(a.int(1, "size")?),
                };
                let oid = match a.get(0) {
                    Some(Value::None) => None,
                    _ => Some(a.oid(0, "oid")?),
                };
                R::History { oid, size }
            }
            "new_oids" => {
                a.arity(0, 1)?;
                R::NewOids {
                    n: a.int_or(0, "n", 100)?,
                }
            }
            "getInvalidations" => {
                a.arity(1, 1)?;
                R::GetInvalidations {
                    tid: a.tid(0, "tid")?,
                }
            }
            "pack" => {
                a.arity(1, 2)?;
                let time = match a.get(0) {
                    Some(Value::Float(f)) => *f,
                    Some(Value::Int(i)) => *i as f64,
                    _ => return Err(a.type_err(0, "time", "a number")),
                };
                let wait = match a.get(1) {
                    None => true,
                    Some(_) => a.flag(1, "wait")?,
                };
                R::Pack { time, wait }
            }
            "undoLog" => {
                a.arity(0, 2)?;
                R::UndoLog {
                    first: a.int_or(0, "first", 0)?,
                    last: a.int_or(1, "last", -20)?,
                }
            }
            "undoInfo" => {
                a.arity(0, 3)?;
                let specification = match a.get(2) {
                    None | Some(Value::None) => None,
                    Some(Value::Dict(d)) => Some(d.clone()),
                    Some(_) => return Err(a.type_err(2, "specification", "a dict or None")),
                };
                R::UndoInfo {
                    first: a.int_or(0, "first", 0)?,
                    last: a.int_or(1, "last", -20)?,
                    specification,
                }
            }
            "tpc_begin" => {
                a.arity(4, 6)?;
                let extension = match a.get(3) {
                    Some(v @ (Value::Dict(_) | Value::Bytes(_))) => v.clone(),
                    _ => return Err(a.type_err(3, "ext", "a dict")),
                };
                let status = match a.get(5) {
                    None => b' ',
                    Some(Value::Str(s)) if s.len() == 1 => s.as_bytes()[0],
                    Some(Value::Bytes(b)) if b.len() == 1 => b[0],
                    Some(_) => return Err(a.type_err(5, "status", "a one-character str")),
                };
                R::TpcBegin {
                    txn: a.value(0),
                    user: a.text_bytes(1, "user")?,
                    description: a.text_bytes(2, "description")?,
                    extension,
                    tid: a.opt_tid(4, "tid")?,
                    status,
                }
            }
            "storea" | "storeBlobEnd" => {
                a.arity(4, 4)?;
                let (oid, serial, data, txn) = (
                    a.oid(0, "oid")?,
                    a.serial(1, "serial")?,
                    a.data(2, "data")?,
                    a.value(3),
                );
                if *name == "storea" {
                    R::StoreA {
                        oid,
                        serial,
                        data,
                        txn,
                    }
                } else {
                    R::StoreBlobEnd {
                        oid,
                        serial,
                        data,
                        txn,
                    }
                }
            }
            "checkCurrentSerialInTransaction" | "deleteObject" => {
                a.arity(3, 3)?;
                let (oid, serial, txn) = (a.oid(0, "oid")?, a.tid(1, "serial")?, a.value(2));
                if *name == "deleteObject" {
                    R::DeleteObject { oid, serial, txn }
                } else {
                    R::CheckCurrentSerial { oid, serial, txn }
                }
            }
            "restorea" => {
                a.arity(5, 5)?;
                let data = match a.get(2) {
                    Some(Value::None) => None,
                    _ => Some(a.bytes(2, "data")?),
                };
                R::RestoreA {
                    oid: a.oid(0, "oid")?,
                    serial: a.tid(1, "serial")?,
                    data,
                    prev_txn: a.opt_tid(3, "prev_txn")?,
                    txn: a.value(4),
                }
            }
            "undoa" => {
                a.arity(2, 2)?;
                R::UndoA {
                    undo_id: a.text_bytes(0, "trans_id")?,
                    txn: a.value(1),
                }
            }
            "storeBlobChunk" => {
                a.arity(1, 1)?;
                R::StoreBlobChunk {
                    chunk: a.bytes(0, "chunk")?,
                }
            }
            "storeBlobShared" => {
                a.arity(5, 5)?;
                R::StoreBlobShared {
                    oid: a.oid(0, "oid")?,
                    serial: a.serial(1, "serial")?,
                    data: a.data(2, "data")?,
                    filename: a.string(3, "filename")?,
                    txn: a.value(4),
                }
            }
            "vote" | "tpc_finish" | "tpc_abort" => {
                a.arity(1, 1)?;
                let txn = a.value(0);
                match *name {
                    "vote" => R::Vote { txn },
                    "tpc_finish" => R::TpcFinish { txn },
                    _ => R::TpcAbort { txn },
                }
            }
            "record_iternext" => {
                a.arity(0, 1)?;
                let next = match a.get(0) {
                    None | Some(Value::None) => None,
                    Some(_) => Some(a.oid(0, "next")?),
                };
                R::RecordIternext { next }
            }
            "iterator_start" => {
                a.arity(2, 2)?;
                R::IteratorStart {
                    start: a.opt_tid(0, "start")?,
                    stop: a.opt_tid(1, "stop")?,
                }
            }
            "iterator_next" | "iterator_record_next" => {
                a.arity(1, 1)?;
                let iid = a.value(0);
                if *name == "iterator_next" {
                    R::IteratorNext { iid }
                } else {
                    R::IteratorRecordNext { iid }
                }
            }
            "iterator_record_start" => {
                a.arity(2, 2)?;
                R::IteratorRecordStart {
                    txn_iid: a.value(0),
                    tid: a.tid(1, "tid")?,
                }
            }
            "iterator_gc" => {
                a.arity(1, 1)?;
                let iids = match a.get(0) {
                    Some(
                        Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v),
                    ) => v.clone(),
                    _ => return Err(a.type_err(0, "iids", "a list of iterator ids")),
                };
                R::IteratorGc { iids }
            }
            "set_client_label" => {
                a.arity(1, 1)?;
                R::SetClientLabel { label: a.value(0) }
            }
            other => return Err(ProtocolError::UnknownMethod(other.to_string())),
        };
        Ok(r)
    }

    /// The wire method name.
    pub fn method(&self) -> &'static str {
        use Request as R;
        match self {
            R::Register { .. } => "register",
            R::GetInfo => "get_info",
            R::LastTransaction => "lastTransaction",
            R::Ping => "ping",
            R::LoadBefore { .. } => "loadBefore",
            R::LoadSerial { .. } => "loadSerial",
            R::GetTid { .. } => "getTid",
            R::History { .. } => "history",
            R::NewOids { .. } => "new_oids",
            R::NewOid => "new_oid",
            R::GetInvalidations { .. } => "getInvalidations",
            R::Pack { .. } => "pack",
            R::UndoLog { .. } => "undoLog",
            R::UndoInfo { .. } => "undoInfo",
            R::TpcBegin { .. } => "tpc_begin",
            R::StoreA { .. } => "storea",
            R::CheckCurrentSerial { .. } => "checkCurrentSerialInTransaction",
            R::RestoreA { .. } => "restorea",
            R::DeleteObject { .. } => "deleteObject",
            R::UndoA { .. } => "undoa",
            R::StoreBlobStart => "storeBlobStart",
            R::StoreBlobChunk { .. } => "storeBlobChunk",
            R::StoreBlobEnd { .. } => "storeBlobEnd",
            R::StoreBlobShared { .. } => "storeBlobShared",
            R::Vote { .. } => "vote",
            R::TpcFinish { .. } => "tpc_finish",
            R::TpcAbort { .. } => "tpc_abort",
            R::SendBlob { .. } => "sendBlob",
            R::RecordIternext { .. } => "record_iternext",
            R::IteratorStart { .. } => "iterator_start",
            R::IteratorNext { .. } => "iterator_next",
            R::IteratorRecordStart { .. } => "iterator_record_start",
            R::IteratorRecordNext { .. } => "iterator_record_next",
            R::IteratorGc { .. } => "iterator_gc",
            R::ServerStatus => "server_status",
            R::SetClientLabel { .. } => "set_client_label",
        }
    }

    /// Whether the Python client sends this method one-way.
    pub fn is_oneway(&self) -> bool {
        let m = self.method();
        SERVER_METHODS
            .iter()
            .any(|(name, oneway)| *name == m && *oneway)
    }

    /// The argument tuple as the Python client sends it.
    pub fn to_args(&self) -> Value {
        use Request as R;
        let v = match self {
            R::Register { storage, read_only } => {
                vec![Value::Str(storage.clone()), Value::Bool(*read_only)]
            }
            R::GetInfo
            | R::LastTransaction
            | R::Ping
            | R::NewOid
            | R::StoreBlobStart
            | R::ServerStatus => vec![],
            R::LoadBefore { oid, before } => vec![oidv(*oid), tidv(*before)],
            R::LoadSerial { oid, serial } | R::SendBlob { oid, serial } => {
                vec![oidv(*oid), tidv(*serial)]
            }
            R::GetTid { oid } => vec![oidv(*oid)],
            R::History { oid, size } => {
                vec![
                    Value::opt(oid.map(oidv)),
                    Value::opt(size.map(|s| Value::Int(s as i128))),
                ]
            }
            R::NewOids { n } => vec![Value::Int(*n as i128)],
            R::GetInvalidations { tid } => vec![tidv(*tid)],
            R::Pack { time, wait } => vec![Value::Float(*time), Value::Int(*wait as i128)],
            R::UndoLog { first, last } => {
                vec![Value::Int(*first as i128), Value::Int(*last as i128)]
            }
            R::UndoInfo {
                first,
                last,
                specification,
            } => vec![
                Value::Int(*first as i128),
                Value::Int(*last as i128),
                Value::opt(specification.clone().map(Value::Dict)),
            ],
            R::TpcBegin {
                txn,
                user,
                description,
                extension,
                tid,
                status,
            } => vec![
                txn.clone(),
                Value::Bytes(user.clone()),
                Value::Bytes(description.clone()),
                extension.clone(),
                opt_tidv(*tid),
                Value::Str((*status as char).to_string()),
            ],
            R::StoreA {
                oid,
                serial,
                data,
                txn,
            }
            | R::StoreBlobEnd {
                oid,
                serial,
                data,
                txn,
            } => vec![
                oidv(*oid),
                tidv(*serial),
                Value::Bytes(data.clone()),
                txn.clone(),
            ],
            R::CheckCurrentSerial { oid, serial, txn } | R::DeleteObject { oid, serial, txn } => {
                vec![oidv(*oid), tidv(*serial), txn.clone()]
            }
            R::RestoreA {
                oid,
                serial,
                data,
                prev_txn,
                txn,
            } => vec![
                oidv(*oid),
                tidv(*serial),
                Value::opt(data.clone().map(Value::Bytes)),
                opt_tidv(*prev_txn),
                txn.clone(),
            ],
            R::UndoA { undo_id, txn } => vec![Value::Bytes(undo_id.clone()), txn.clone()],
            R::StoreBlobChunk { chunk } => vec![Value::Bytes(chunk.clone())],
            R::StoreBlobShared {
                oid,
                serial,
                data,
                filename,
                txn,
            } => vec![
                oidv(*oid),
                tidv(*serial),
                Value::Bytes(data.clone()),
                Value::Str(filename.clone()),
                txn.clone(),
            ],
            R::Vote { txn } | R::TpcFinish { txn } | R::TpcAbort { txn } => vec![txn.clone()],
            R::RecordIternext { next } => vec![Value::opt(next.map(oidv))],
            R::IteratorStart { start, stop } => vec![opt_tidv(*start), opt_tidv(*stop)],
            R::IteratorNext { iid } | R::IteratorRecordNext { iid } => vec![iid.clone()],
            R::IteratorRecordStart { txn_iid, tid } => vec![txn_iid.clone(), tidv(*tid)],
            R::IteratorGc { iids } => vec![Value::List(iids.clone())],
            R::SetClientLabel { label } => vec![label.clone()],
        };
        Value::Tuple(v)
    }

    /// The envelope a client sends: `msgid` is the caller's (loadBefore uses
    /// `(oid, tid)`; one-way calls use 0).
    pub fn to_envelope(&self, msgid: Value) -> Envelope {
        let oneway = self.is_oneway();
        Envelope {
            msgid: if oneway { Value::Int(0) } else { msgid },
            flag: Value::Bool(oneway),
            method: self.method().to_string(),
            args: self.to_args(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_with_serial_none_is_a_first_revision() {
        let args = Value::Tuple(vec![
            Value::bytes(vec![0; 8]),
            Value::None,
            Value::bytes(b"data".to_vec()),
            Value::Int(7),
        ]);
        match Request::parse("storea", &args).unwrap() {
            Request::StoreA { serial, .. } => assert_eq!(serial, Tid::ZERO),
            other => panic!("{other:?}"),
        }
        // str data (ZEO's tests send 'foo') and a str serial of 8 chars below U+0100.
        let args = Value::Tuple(vec![
            Value::bytes(vec![0; 8]),
            Value::str("\0\0\0\0\0\0\0\u{1}"),
            Value::str("foo"),
            Value::Int(7),
        ]);
        match Request::parse("storea", &args).unwrap() {
            Request::StoreA { serial, data, .. } => {
                assert_eq!(serial, Tid(1));
                assert_eq!(data, b"foo");
            }
            other => panic!("{other:?}"),
        }
        let args = Value::Tuple(vec![
            Value::bytes(vec![0; 8]),
            Value::str("\0\0\0\0\0\0\0\u{100}"),
            Value::str("foo"),
            Value::Int(7),
        ]);
        assert!(Request::parse("storea", &args).is_err());
        // Other tid arguments still need 8 bytes.
        let args = Value::Tuple(vec![Value::bytes(vec![0; 8]), Value::None]);
        assert!(Request::parse("loadSerial", &args).is_err());
    }
}
