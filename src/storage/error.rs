//! Storage errors: the ZODB exceptions a storage raises (POSKeyError, ConflictError,
//! ReadConflictError, UndoError, ReadOnlyError, StorageTransactionError) plus format,
//! lock and I/O failures, each with the file, offset or oid needed to act on it.
//!
//! Invariant: `ConflictInfo.serials` is `(committed, old_serial)`: the currently
//! committed tid first, as ZODB orders it.

use super::tid::{Oid, Tid};
use std::fmt;
use std::path::PathBuf;

/// What a ConflictError / ReadConflictError carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictInfo {
    pub oid: Oid,
    /// `(committed tid, the serial the client read)`.
    pub serials: (Tid, Tid),
    /// Dotted class name from the rejected data's class pickle, when known.
    pub class_name: Option<String>,
}

#[derive(Debug)]
pub enum StorageError {
    /// The object (or this revision of it) does not exist.
    PosKey { oid: Oid, serial: Option<Tid> },
    /// Write conflict: the object changed since the client read it.
    Conflict(ConflictInfo),
    /// checkCurrentSerialInTransaction failed.
    ReadConflict(ConflictInfo),
    /// A write was attempted on a read-only storage.
    ReadOnly,
    /// A call named a transaction that is not the one in progress, or came out of order.
    Transaction(String),
    /// An undo could not be done; `(oid, reason)` pairs when several failed.
    Undo {
        message: String,
        failures: Vec<(Oid, String)>,
    },
    /// The file is not a valid storage file at `offset`.
    Corrupted {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// Another process holds the storage lock.
    Locked { path: PathBuf, detail: String },
    /// A pack could not be done.
    Pack(String),
    /// An argument is invalid (tid, pack time, metadata too long, ...).
    Invalid(String),
    /// An operating-system error while doing `context`.
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
    pub fn pos_key(oid: Oid) -> Self {
        StorageError::PosKey { oid, serial: None }
    }
    /// The Python exception class name used on the wire.
    pub fn python_class(&self) -> &'static str {
        match self {
            StorageError::PosKey { .. } => "ZODB.POSException.POSKeyError",
            StorageError::Conflict(_) => "ZODB.POSException.ConflictError",
            StorageError::ReadConflict(_) => "ZODB.POSException.ReadConflictError",
            StorageError::ReadOnly => "ZODB.POSException.ReadOnlyError",
            StorageError::Transaction(_) => "ZODB.POSException.StorageTransactionError",
            StorageError::Undo { failures, .. } if !failures.is_empty() => {
                "ZODB.POSException.MultipleUndoErrors"
            }
            StorageError::Undo { .. } => "ZODB.POSException.UndoError",
            StorageError::Corrupted { .. } => "ZODB.FileStorage.FileStorage.CorruptedDataError",
            StorageError::Locked { .. } => "zc.lockfile.LockError",
            StorageError::Pack(_) => "ZODB.FileStorage.FileStorage.PackError",
            StorageError::Invalid(_) => "ZODB.POSException.StorageError",
            StorageError::Io { .. } => "builtins.OSError",
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::PosKey { oid, serial: None } => write!(f, "POSKeyError: oid {oid} not found"),
            StorageError::PosKey { oid, serial: Some(s) } => {
                write!(f, "POSKeyError: oid {oid} has no revision {s}")
            }
            StorageError::Conflict(c) => write!(
                f,
                "database conflict error (oid {}, class {}, serial this txn started with {}, serial currently committed {})",
                c.oid,
                c.class_name.as_deref().unwrap_or("?"),
                c.serials.1,
                c.serials.0
            ),
            StorageError::ReadConflict(c) => write!(
                f,
                "database read conflict error (oid {}, serial this txn started with {}, serial currently committed {})",
                c.oid, c.serials.1, c.serials.0
            ),
            StorageError::ReadOnly => f.write_str("the storage is read-only"),
            StorageError::Transaction(m) => write!(f, "storage transaction error: {m}"),
            StorageError::Undo { message, failures } => {
                f.write_str(message)?;
                for (oid, why) in failures {
                    write!(f, "; oid {oid}: {why}")?;
                }
                Ok(())
            }
            StorageError::Corrupted { path, offset, what } => {
                write!(f, "{}: corrupt at offset {offset}: {what}", path.display())
            }
            StorageError::Locked { path, detail } => {
                write!(f, "couldn't lock {}: {detail} (is another server using this storage?)", path.display())
            }
            StorageError::Pack(m) => write!(f, "pack failed: {m}"),
            StorageError::Invalid(m) => f.write_str(m),
            StorageError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for StorageError {}
