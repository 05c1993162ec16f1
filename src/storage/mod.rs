//! The storage layer: the `Storage` trait the server and tools call, its value types,
//! its error enum, and the engines (FileStorage on Data.fs, in-memory MappingStorage).
//!
//! Invariants every engine keeps (spec filestorage.md, shared/spec):
//! - tids handed out are strictly above the last *begun* tid ([`Tid::later_than`]);
//! - one transaction at a time per storage: `tpc_begin` .. `tpc_finish`/`tpc_abort`;
//!   calls naming another transaction fail with [`StorageError::Transaction`];
//! - a store whose `old_serial` is not the committed serial fails with
//!   [`StorageError::Conflict`] *before* writing anything, and the transaction stays
//!   usable (the ZEO server collects conflicts and returns them at vote);
//! - `tpc_finish` returns only once the transaction is durable;
//! - all methods take `&self` so loads can run while a pack works in another thread.
//!
//! No sockets here; the server maps these calls onto the wire.

pub mod blob;
pub mod error;
pub mod filestorage;
pub mod mapping;
pub mod refs;
pub mod tid;
pub mod undo_id;

use std::path::PathBuf;

pub use error::{ConflictInfo, StorageError};
pub use tid::{Oid, Tid};

/// Storage-area result.
pub type SResult<T> = std::result::Result<T, StorageError>;

/// Transaction metadata as stored in a transaction record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnMeta {
    /// Raw user bytes (UTF-8 by convention, e.g. `/site bob`).
    pub user: Vec<u8>,
    /// Raw description bytes.
    pub description: Vec<u8>,
    /// The extension as stored: a complete protocol-3 pickle of a dict, or empty
    /// for an empty mapping.
    pub extension: Vec<u8>,
}

impl TxnMeta {
    /// Refuse metadata a Data.fs cannot hold: user, description and extension each
    /// have a 2-byte length field (FileStorage raises the same in tpc_begin).
    pub fn check_lengths(&self) -> SResult<()> {
        for (what, len) in [
            ("user name", self.user.len()),
            ("description", self.description.len()),
            ("extension data", self.extension.len()),
        ] {
            if len > 0xffff {
                return Err(StorageError::Invalid(format!(
                    "transaction {what} too long ({len} bytes, at most 65535)"
                )));
            }
        }
        Ok(())
    }
}

/// Status byte of a committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// `' '`: normal, undoable.
    Normal,
    /// `'p'`: rewritten by pack (or copied from a packed transaction).
    Packed,
}

impl TxnStatus {
    pub fn byte(self) -> u8 {
        match self {
            TxnStatus::Normal => b' ',
            TxnStatus::Packed => b'p',
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b' ' => Some(TxnStatus::Normal),
            b'p' => Some(TxnStatus::Packed),
            _ => None,
        }
    }
}

/// Result of `load_before`: the revision current just before a tid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBefore {
    pub data: Vec<u8>,
    /// Tid of the revision returned.
    pub start: Tid,
    /// Tid of the next revision, `None` if this one is current.
    pub end: Option<Tid>,
}

/// One entry of `history(oid, size)`, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub tid: Tid,
    /// `TimeStamp(tid).timeTime()`.
    pub time: f64,
    pub user_name: Vec<u8>,
    pub description: Vec<u8>,
    /// The record's data length (0 for backpointers and deletions).
    pub size: u64,
    /// The transaction's extension pickle (empty = no extension); the server
    /// merges its items into the reply dict.
    pub extension: Vec<u8>,
}

/// One entry of `undo_log`/`undo_info`, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct UndoEntry {
    /// The undo id: base64 of the tid without trailing newline (FileStorage).
    pub id: Vec<u8>,
    pub tid: Tid,
    pub time: f64,
    pub user_name: Vec<u8>,
    pub description: Vec<u8>,
    /// The transaction record's `tlen`.
    pub size: u64,
    /// The extension pickle; its items override the standard keys on the wire.
    pub extension: Vec<u8>,
}

/// One data record as iteration yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRecord {
    pub oid: Oid,
    pub tid: Tid,
    /// The object state, backpointers resolved; `None` for a deletion / undone creation.
    pub data: Option<Vec<u8>>,
    /// For backpointer records: tid of the record directly at the backpointer.
    pub data_txn: Option<Tid>,
}

/// One transaction as iteration yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    pub tid: Tid,
    pub status: u8,
    pub meta: TxnMeta,
    pub records: Vec<DataRecord>,
}

/// One step of `record_iternext`: the current revision of an oid and the next oid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentRecord {
    pub oid: Oid,
    pub tid: Tid,
    pub data: Vec<u8>,
    /// The next oid in order, `None` at the end.
    pub next: Option<Oid>,
}

/// A boxed transaction iterator (`iterator(start, stop)`).
pub type TxnIter = Box<dyn Iterator<Item = SResult<TransactionRecord>> + Send>;

/// What a pack did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackOutcome {
    /// The file was rewritten; old and new sizes in bytes.
    Packed { old_size: u64, new_size: u64 },
    /// Nothing to free, or the pack was redundant; nothing changed.
    Unchanged,
}

/// Handle for the transaction in progress; created by `tpc_begin`, consumed by
/// `tpc_finish`/`tpc_abort`. Not `Clone`: there is exactly one per transaction.
#[derive(Debug, PartialEq, Eq)]
pub struct TxnHandle {
    /// The tid this transaction will commit with.
    pub tid: Tid,
    /// Engine-private serial distinguishing transactions (guards against stale handles).
    pub serial: u64,
}

/// The storage interface used by the server (`zeo serve`) and the tools.
pub trait Storage: Send + Sync {
    /// Name reported by `get_info` (FileStorage: the configured path as given).
    fn name(&self) -> String;
    fn is_read_only(&self) -> bool;
    fn supports_undo(&self) -> bool;
    /// Last committed tid; `Tid::ZERO` when empty.
    fn last_transaction(&self) -> Tid;
    /// Number of oids in the index (deleted ones included).
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Approximate size in bytes (FileStorage: end of data).
    fn size(&self) -> u64;

    /// `n` fresh oids (max oid + 1, ...).
    fn new_oids(&self, n: usize) -> SResult<Vec<Oid>>;

    /// Current data and serial. POSKeyError if unknown or deleted.
    fn load(&self, oid: Oid) -> SResult<(Vec<u8>, Tid)>;
    /// Newest revision with tid < `before`; `Ok(None)` if none is that old.
    fn load_before(&self, oid: Oid, before: Tid) -> SResult<Option<LoadBefore>>;
    /// Exact revision `serial`.
    fn load_serial(&self, oid: Oid, serial: Tid) -> SResult<Vec<u8>>;
    /// Tid of the current revision; POSKeyError if unknown or deleted.
    fn get_tid(&self, oid: Oid) -> SResult<Tid>;
    /// Up to `size` revisions, newest first.
    fn history(&self, oid: Oid, size: usize) -> SResult<Vec<HistoryEntry>>;
    /// `(oid, tid, data, next_oid)` for the smallest current oid >= `start`
    /// (`record_iternext`); `None` when there is no such oid.
    fn record_iternext(&self, start: Option<Oid>) -> SResult<Option<CurrentRecord>>;
    /// Transactions with `start <= tid <= stop`, oldest first.
    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> SResult<TxnIter>;
    /// The last `n` transactions as `(tid, oids)`, oldest first (seeds the server's
    /// invalidation queue).
    fn last_invalidations(&self, n: usize) -> SResult<Vec<(Tid, Vec<Oid>)>>;

    // --- two-phase commit -------------------------------------------------------
    /// Start a transaction; `tid` explicit (restore/copy) or generated; `status` is
    /// what `tpc_finish` writes.
    fn tpc_begin(&self, meta: &TxnMeta, tid: Option<Tid>, status: TxnStatus) -> SResult<TxnHandle>;
    /// Store a new revision; `old_serial` is the tid the client read (`ZERO` for new).
    fn store(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid, data: &[u8]) -> SResult<()>;
    /// Store a revision whose content is the blob file `blob_file` (moved into the
    /// blob directory under this transaction's tid).
    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        old_serial: Tid,
        data: &[u8],
        blob_file: &std::path::Path,
    ) -> SResult<()>;
    /// Copy path: record with tid `serial`, data or deletion (`None`), backpointer to
    /// the same data in `prev_txn` when found there.
    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        serial: Tid,
        data: Option<&[u8]>,
        prev_txn: Option<Tid>,
    ) -> SResult<()>;
    /// Fail with ReadConflict unless `serial` is the committed tid of `oid`.
    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, serial: Tid) -> SResult<()>;
    /// Delete an object (external GC): a zero-backpointer record.
    fn delete_object(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid) -> SResult<()>;
    /// Undo the transaction `undo_id`; returns the oids it changes.
    fn undo(&self, txn: &TxnHandle, undo_id: &[u8]) -> SResult<Vec<Oid>>;
    /// Write the transaction (not yet visible); returns oids resolved by the storage.
    fn tpc_vote(&self, txn: &TxnHandle) -> SResult<Vec<Oid>>;
    /// Finish without waiting for the disk (group commit): mark the voted
    /// transaction committed and make it current (visible to every reader of this
    /// storage), but do not fsync. The transaction is durable only after a later
    /// [`Storage::sync_committed`] returns Ok; until then a crash may lose it (it
    /// must not be acknowledged before). Default: `tpc_finish`.
    fn tpc_seal(&self, txn: TxnHandle) -> SResult<Tid> {
        self.tpc_finish(txn)
    }
    /// Make every transaction sealed so far durable (one fsync for all of them).
    /// On failure the storage closes itself. Default: nothing to do.
    fn sync_committed(&self) -> SResult<()> {
        Ok(())
    }
    /// Make the transaction durable and visible; returns its tid.
    fn tpc_finish(&self, txn: TxnHandle) -> SResult<Tid>;
    /// Forget the transaction; a no-op for a stale handle.
    fn tpc_abort(&self, txn: TxnHandle);

    // --- undo and pack -------------------------------------------------------------
    /// Undoable transactions, newest first: entries `[first, last)`, where a negative
    /// `last` means at most `-last` entries. (`undoInfo` filters are applied by the
    /// server over these entries.)
    fn undo_log(&self, first: i64, last: i64) -> SResult<Vec<UndoEntry>>;
    /// Pack to `t` (seconds since the epoch), with or without garbage collection.
    /// May run in a worker thread while other calls proceed.
    fn pack(&self, t: f64, gc: bool) -> SResult<PackOutcome>;

    // --- blobs ---------------------------------------------------------------------
    /// The blob directory, when blobs are enabled.
    fn blob_dir(&self) -> Option<PathBuf>;
    /// Path of the committed blob file for `(oid, serial)`; POSKeyError if absent.
    fn load_blob(&self, oid: Oid, serial: Tid) -> SResult<PathBuf>;

    /// Flush state (e.g. write Data.fs.index) and release locks.
    fn close(&self) -> SResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lengths_fit_the_two_byte_fields() {
        let ok = TxnMeta {
            user: vec![b'u'; 65535],
            description: vec![b'd'; 65535],
            extension: vec![],
        };
        ok.check_lengths().unwrap();
        let long = TxnMeta {
            description: vec![b'd'; 65536],
            ..TxnMeta::default()
        };
        let e = long.check_lengths().unwrap_err().to_string();
        assert!(e.contains("description too long (65536 bytes"), "{e}");
        // Both engines refuse it at tpc_begin.
        let m = mapping::MappingStorage::new();
        assert!(m.tpc_begin(&long, None, TxnStatus::Normal).is_err());
    }
}
