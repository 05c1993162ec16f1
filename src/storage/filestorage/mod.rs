//! FileStorage: byte-compatible Data.fs engine (spec filestorage.md).
//!
//! Module map: `format` (byte layouts, pure parsers), `index` (oid → position index
//! and Python's `Data.fs.index` format), `io` (positioned file I/O that tests can make
//! fail), `open` (lock, scan, recovery), `read` (load*, history, iteration), `commit`
//! (two-phase commit), `undo`, `pack` (with `pack_gc` and `pack_copy`).
//!
//! Concurrency invariants: every method takes `&self`. The committed view (index, end
//! of data, last tid, the data file handle) lives in one `RwLock<State>`; readers copy
//! what they need out of it and then use positioned reads, so they never block each
//! other or a commit in progress. Bytes below `State::end` are immutable while the
//! handle is in use (a pack swaps in a new handle; readers holding the old `Arc` keep
//! reading the old file). One transaction at a time: `tpc_begin` waits on `commit`
//! until the previous one finished or aborted. Lock order: `commit` → `state` →
//! `counters`.

pub mod commit;
pub mod format;
pub mod index;
pub mod io;
pub mod open;
pub mod pack;
mod pack_copy;
pub(crate) mod pack_gc;
pub mod read;
pub mod undo;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use self::index::Index;
use self::io::{DataFile, FaultPlan};
use super::blob::{BlobDir, Layout};
use super::{
    CurrentRecord, HistoryEntry, LoadBefore, PackOutcome, SResult, Storage, StorageError,
    TxnHandle, TxnIter, TxnMeta, TxnStatus, UndoEntry,
};
use crate::storage::tid::{Oid, Tid};

/// How to open a FileStorage.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub read_only: bool,
    /// Delete an existing file first.
    pub create: bool,
    pub blob_dir: Option<PathBuf>,
    /// `None` = automatic layout detection.
    pub blob_layout: Option<Layout>,
    /// Read-only time travel: stop the scan before the first tid >= stop.
    pub stop: Option<Tid>,
    /// Test hook: route Data.fs writes through a fault-injecting layer.
    pub faults: Option<Arc<FaultPlan>>,
    /// Called with the progress of the open scan (index rebuild).
    pub progress: Option<open::ProgressFn>,
}

/// The committed, reader-visible view.
pub(crate) struct State {
    pub file: Arc<dyn DataFile>,
    pub index: Index,
    /// End of committed data: where the next transaction goes.
    pub end: u64,
    pub last_tid: Tid,
}

pub(crate) struct Counters {
    pub max_oid: u64,
    /// Tid of the last begun transaction (aborted ones included).
    pub last_begun: Tid,
}

/// The open storage.
pub struct FileStorage {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) read_only: bool,
    pub(crate) state: RwLock<State>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) commit: Mutex<Option<commit::Commit>>,
    pub(crate) commit_done: Condvar,
    pub(crate) serials: AtomicU64,
    pub(crate) lock_file: Mutex<Option<std::fs::File>>,
    pub(crate) blobs: Option<BlobDir>,
    pub(crate) closed: AtomicBool,
    /// A pack is running.
    pub(crate) packing: AtomicBool,
    /// Keep `P.old` after a pack (Python's `pack_keep_old`, default true).
    pub(crate) pack_keep_old: AtomicBool,
}

impl FileStorage {
    /// Path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        suffixed(&self.path, ".index")
    }

    pub(crate) fn check_open(&self) -> SResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Invalid(format!(
                "storage {} is closed",
                self.name
            )));
        }
        Ok(())
    }

    pub(crate) fn state_read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn state_write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of heap used by the index entries (for benchmarks).
    pub fn index_heap_bytes(&self) -> usize {
        self.state_read().index.heap_bytes()
    }

    /// A snapshot of the `(oid, position)` index, in oid order (tests, tools).
    pub fn index_entries(&self) -> Vec<(Oid, u64)> {
        self.state_read().index.iter().collect()
    }

    /// Write `Data.fs.index` for the committed state now (Python does this on close).
    pub fn write_index(&self) -> SResult<()> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        let (bytes, _) = {
            let st = self.state_read();
            (st.index.to_file_bytes(st.end), st.end)
        };
        open::write_index_file(&self.index_path(), &bytes)
    }
}

/// `path` + `suffix` (Data.fs → Data.fs.index).
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl Storage for FileStorage {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    fn supports_undo(&self) -> bool {
        true
    }
    fn last_transaction(&self) -> Tid {
        self.state_read().last_tid
    }
    fn len(&self) -> u64 {
        self.state_read().index.len()
    }
    fn size(&self) -> u64 {
        self.state_read().end
    }
    fn new_oids(&self, n: usize) -> SResult<Vec<Oid>> {
        self.new_oids_impl(n)
    }
    fn load(&self, oid: Oid) -> SResult<(Vec<u8>, Tid)> {
        self.load_impl(oid)
    }
    fn load_before(&self, oid: Oid, before: Tid) -> SResult<Option<LoadBefore>> {
        self.load_before_impl(oid, before)
    }
    fn load_serial(&self, oid: Oid, serial: Tid) -> SResult<Vec<u8>> {
        self.load_serial_impl(oid, serial)
    }
    fn get_tid(&self, oid: Oid) -> SResult<Tid> {
        self.get_tid_impl(oid)
    }
    fn history(&self, oid: Oid, size: usize) -> SResult<Vec<HistoryEntry>> {
        self.history_impl(oid, size)
    }
    fn record_iternext(&self, start: Option<Oid>) -> SResult<Option<CurrentRecord>> {
        self.record_iternext_impl(start)
    }
    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> SResult<TxnIter> {
        self.iterator_impl(start, stop)
    }
    fn last_invalidations(&self, n: usize) -> SResult<Vec<(Tid, Vec<Oid>)>> {
        self.last_invalidations_impl(n)
    }
    fn tpc_begin(&self, meta: &TxnMeta, tid: Option<Tid>, status: TxnStatus) -> SResult<TxnHandle> {
        self.tpc_begin_impl(meta, tid, status)
    }
    fn store(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid, data: &[u8]) -> SResult<()> {
        self.store_impl(txn, oid, old_serial, data)
    }
    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        old_serial: Tid,
        data: &[u8],
        blob_file: &Path,
    ) -> SResult<()> {
        self.store_blob_impl(txn, oid, old_serial, data, blob_file)
    }
    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        serial: Tid,
        data: Option<&[u8]>,
        prev_txn: Option<Tid>,
    ) -> SResult<()> {
        self.restore_impl(txn, oid, serial, data, prev_txn)
    }
    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, serial: Tid) -> SResult<()> {
        self.check_current_serial_impl(txn, oid, serial)
    }
    fn delete_object(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid) -> SResult<()> {
        self.delete_object_impl(txn, oid, old_serial)
    }
    fn undo(&self, txn: &TxnHandle, undo_id: &[u8]) -> SResult<Vec<Oid>> {
        self.undo_impl(txn, undo_id)
    }
    fn tpc_vote(&self, txn: &TxnHandle) -> SResult<Vec<Oid>> {
        self.tpc_vote_impl(txn)
    }
    fn tpc_seal(&self, txn: TxnHandle) -> SResult<Tid> {
        self.tpc_seal_impl(txn)
    }
    fn sync_committed(&self) -> SResult<()> {
        self.sync_committed_impl()
    }
    fn tpc_finish(&self, txn: TxnHandle) -> SResult<Tid> {
        self.tpc_finish_impl(txn)
    }
    fn tpc_abort(&self, txn: TxnHandle) {
        self.tpc_abort_impl(txn)
    }
    fn undo_log(&self, first: i64, last: i64) -> SResult<Vec<UndoEntry>> {
        self.undo_log_impl(first, last)
    }
    fn pack(&self, t: f64, gc: bool) -> SResult<PackOutcome> {
        self.pack_impl(t, gc)
    }
    fn blob_dir(&self) -> Option<PathBuf> {
        self.blobs.as_ref().map(|b| b.root.clone())
    }
    fn load_blob(&self, oid: Oid, serial: Tid) -> SResult<PathBuf> {
        match &self.blobs {
            Some(b) => b.load(oid, serial),
            None => Err(StorageError::Invalid(format!(
                "storage {} has no blob directory",
                self.name
            ))),
        }
    }
    fn close(&self) -> SResult<()> {
        self.close_impl()
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::Acquire) {
            if let Err(e) = self.close_impl() {
                log::warn!("closing {}: {e}", self.name);
            }
        }
    }
}
