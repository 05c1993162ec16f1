//! Two-phase commit (spec filestorage.md §7): tpc_begin, store, store_blob,
//! restore, delete_object, check_current_serial, vote, finish, abort.
//!
//! The data records of the transaction in progress are built in memory (Python uses
//! the `P.tmp` scratch file). Invariants: nothing reaches Data.fs before vote; vote
//! writes the whole transaction, status `c`, with one positioned write at the end of
//! committed data, and on any error truncates back and fails; finish is split into
//! "flip the status byte", "fsync" and "publish" (index merge, end and last tid);
//! `tpc_seal` flips and publishes without the fsync and `sync_committed` then makes
//! every sealed transaction durable with one fsync (group commit: the server
//! acknowledges a sealed transaction only after that fsync). Readers of the storage
//! see a transaction after publish. A failed store leaves the
//! transaction usable (ZEO collects conflicts and reports them at vote).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::{self, DataHeader, STATUS_CHECKPOINT, TXN_HEADER_LEN};
use super::index::MAX_POS;
use super::FileStorage;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{ConflictInfo, SResult, StorageError, TxnHandle, TxnMeta, TxnStatus};

/// The transaction in progress.
pub(crate) struct Commit {
    pub serial: u64,
    pub tid: Tid,
    pub status: u8,
    pub meta: TxnMeta,
    /// Position of the transaction header (end of committed data at begin).
    pub pos: u64,
    pub header_len: u64,
    /// Encoded data records.
    pub records: Vec<u8>,
    /// oid → absolute position of its latest record in this transaction.
    pub tindex: HashMap<Oid, u64>,
    /// Oids in store order (with repeats).
    pub order: Vec<Oid>,
    /// Oids whose data the storage changed (conflict resolution); always empty here.
    pub resolved: Vec<Oid>,
    /// Bytes may exist in Data.fs past `pos` (vote started).
    pub written: bool,
    pub voted: bool,
    /// Blob files installed for this transaction (removed on abort).
    pub blob_files: Vec<PathBuf>,
}

impl Commit {
    /// Absolute position the next record will get.
    pub fn next_pos(&self) -> u64 {
        self.pos + self.header_len + self.records.len() as u64
    }

    /// Append a record; returns its position.
    pub fn push(
        &mut self,
        oid: Oid,
        tid: Tid,
        prev: u64,
        data: Option<&[u8]>,
        back: u64,
    ) -> SResult<u64> {
        let here = self.next_pos();
        if here > MAX_POS {
            return Err(StorageError::Invalid(
                "the data file would exceed 2^48 bytes".into(),
            ));
        }
        let h = DataHeader {
            oid,
            tid,
            prev,
            tloc: self.pos,
            vlen: 0,
            plen: data.map_or(0, |d| d.len() as u64),
        };
        match data {
            Some(d) if !d.is_empty() => format::encode_data_record(&mut self.records, &h, d),
            _ => format::encode_backpointer_record(&mut self.records, &h, back),
        }
        self.tindex.insert(oid, here);
        self.order.push(oid);
        Ok(here)
    }

    /// Header of a record of this transaction (by absolute position).
    pub fn header_at(&self, pos: u64) -> Option<DataHeader> {
        let off = usize::try_from(pos.checked_sub(self.pos + self.header_len)?).ok()?;
        DataHeader::decode(self.records.get(off..)?)
    }

    /// Body (data or 8-byte backpointer) of a record of this transaction.
    pub fn body_at(&self, pos: u64) -> Option<&[u8]> {
        let h = self.header_at(pos)?;
        let off = usize::try_from(pos - self.pos - self.header_len).ok()? + 42;
        let n = if h.plen == 0 { 8 } else { h.plen as usize };
        self.records.get(off..off.checked_add(n)?)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl FileStorage {
    fn check_writable(&self) -> SResult<()> {
        self.check_open()?;
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        Ok(())
    }

    pub(crate) fn new_oids_impl(&self, n: usize) -> SResult<Vec<Oid>> {
        self.check_writable()?;
        let mut c = self.counters();
        Ok((0..n)
            .map(|_| {
                c.max_oid += 1;
                Oid(c.max_oid)
            })
            .collect())
    }

    fn raise_max_oid(&self, oid: Oid) {
        let mut c = self.counters();
        if oid.0 > c.max_oid {
            c.max_oid = oid.0;
        }
    }

    /// Run `f` on the transaction in progress if `txn` names it.
    pub(crate) fn with_txn<R>(
        &self,
        txn: &TxnHandle,
        f: impl FnOnce(&mut Commit) -> SResult<R>,
    ) -> SResult<R> {
        self.check_writable()?;
        let mut g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(c) if c.serial == txn.serial => f(c),
            _ => Err(StorageError::Transaction(format!(
                "transaction {} is not the one in progress",
                txn.tid
            ))),
        }
    }

    pub(crate) fn tpc_begin_impl(
        &self,
        meta: &TxnMeta,
        tid: Option<Tid>,
        status: TxnStatus,
    ) -> SResult<TxnHandle> {
        self.check_writable()?;
        meta.check_lengths()?;
        let mut g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_some() {
            g = self.commit_done.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        self.check_writable()?;
        let (pos, last_tid) = {
            let st = self.state_read();
            (st.end, st.last_tid)
        };
        let tid = {
            let mut c = self.counters();
            let t = match tid {
                Some(t) => {
                    if t <= last_tid {
                        return Err(StorageError::Invalid(format!(
                            "explicit transaction id {t:?} is not later than the last transaction {last_tid:?}"
                        )));
                    }
                    t
                }
                None => Tid::from_unix(now()).later_than(c.last_begun),
            };
            c.last_begun = c.last_begun.max(t);
            t
        };
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let header_len = TXN_HEADER_LEN
            + (meta.user.len() + meta.description.len() + meta.extension.len()) as u64;
        *g = Some(Commit {
            serial,
            tid,
            status: status.byte(),
            meta: meta.clone(),
            pos,
            header_len,
            records: Vec::new(),
            tindex: HashMap::new(),
            order: Vec::new(),
            resolved: Vec::new(),
            written: false,
            voted: false,
            blob_files: Vec::new(),
        });
        Ok(TxnHandle { tid, serial })
    }

    /// Committed `(position, tid)` of `oid`, if it has a record.
    fn committed(&self, oid: Oid) -> SResult<Option<(u64, Tid)>> {
        let (r, pos) = match self.lookup(oid) {
            Ok(x) => x,
            Err(StorageError::PosKey { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some((pos, r.header(pos, Some(oid))?.tid)))
    }

    fn not_after_vote(c: &Commit) -> SResult<()> {
        if c.voted || c.written {
            return Err(StorageError::Transaction(
                "the transaction has already been voted".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn store_impl(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        old_serial: Tid,
        data: &[u8],
    ) -> SResult<()> {
        self.with_txn(txn, |c| {
            Self::not_after_vote(c)?;
            self.raise_max_oid(oid);
            let prev = match self.committed(oid)? {
                Some((pos, committed)) => {
                    if committed != old_serial {
                        return Err(StorageError::Conflict(ConflictInfo {
                            oid,
                            serials: (committed, old_serial),
                            class_name: format::class_name(data),
                        }));
                    }
                    pos
                }
                None => 0,
            };
            let tid = c.tid;
            c.push(oid, tid, prev, Some(data), 0).map(|_| ())
        })
    }

    pub(crate) fn store_blob_impl(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        old_serial: Tid,
        data: &[u8],
        blob_file: &Path,
    ) -> SResult<()> {
        let blobs = self.blobs.as_ref().ok_or_else(|| {
            StorageError::Invalid(format!("storage {} has no blob directory", self.name))
        })?;
        self.store_impl(txn, oid, old_serial, data)?;
        self.with_txn(txn, |c| {
            let p = blobs.install(oid, c.tid, blob_file)?;
            c.blob_files.push(p);
            Ok(())
        })
    }

    pub(crate) fn delete_object_impl(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        old_serial: Tid,
    ) -> SResult<()> {
        self.with_txn(txn, |c| {
            Self::not_after_vote(c)?;
            let (pos, committed) = self
                .committed(oid)?
                .ok_or_else(|| StorageError::pos_key(oid))?;
            if committed != old_serial {
                return Err(StorageError::Conflict(ConflictInfo {
                    oid,
                    serials: (committed, old_serial),
                    class_name: None,
                }));
            }
            let tid = c.tid;
            c.push(oid, tid, pos, None, 0).map(|_| ())
        })
    }

    pub(crate) fn check_current_serial_impl(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        serial: Tid,
    ) -> SResult<()> {
        self.with_txn(txn, |_| Ok(()))?;
        let committed = self.get_tid_impl(oid)?;
        if committed != serial {
            return Err(StorageError::ReadConflict(ConflictInfo {
                oid,
                serials: (committed, serial),
                class_name: None,
            }));
        }
        Ok(())
    }

    /// Position of the committed transaction with tid `tid`, walking back from the end.
    pub(crate) fn find_txn(&self, tid: Tid) -> SResult<Option<(u64, format::TxnHeader)>> {
        let r = self.reader();
        let mut e = r.end;
        while e > 4 {
            let (pos, h) = r.txn_before(e)?;
            if h.tid == tid {
                return Ok(Some((pos, h)));
            }
            if h.tid < tid {
                return Ok(None);
            }
            e = pos;
        }
        Ok(None)
    }

    /// Python's `_data_find`: the last record of `oid` in the transaction at `tpos`,
    /// usable as a backpointer for `data` (0 if none fits).
    fn data_find(&self, tpos: u64, oid: Oid, data: Option<&[u8]>) -> SResult<u64> {
        let r = self.reader();
        let (t, buf) = r.txn_at(tpos)?;
        let Some(rec) = t.records.iter().rev().find(|x| x.header.oid == oid) else {
            return Ok(0);
        };
        if rec.header.plen == 0 {
            return Ok(rec.pos);
        }
        let stored = buf.get(rec.body_off..rec.body_off + rec.header.plen as usize);
        Ok(if data.is_some() && stored == data {
            rec.pos
        } else {
            0
        })
    }

    pub(crate) fn restore_impl(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        serial: Tid,
        data: Option<&[u8]>,
        prev_txn: Option<Tid>,
    ) -> SResult<()> {
        self.with_txn(txn, |c| {
            Self::not_after_vote(c)?;
            self.raise_max_oid(oid);
            let mut back = 0;
            if let Some(pt) = prev_txn {
                let (tpos, _) = self.find_txn(pt)?.ok_or_else(|| StorageError::Undo {
                    message: format!("Invalid transaction id {pt:?} given as prev_txn"),
                    failures: vec![],
                })?;
                back = self.data_find(tpos, oid, data)?;
            }
            let prev = self.committed(oid)?.map_or(0, |x| x.0);
            let data = if back != 0 { None } else { data };
            c.push(oid, serial, prev, data, back).map(|_| ())
        })
    }

    pub(crate) fn tpc_vote_impl(&self, txn: &TxnHandle) -> SResult<Vec<Oid>> {
        let file = self.state_read().file.clone();
        self.with_txn(txn, |c| {
            if c.voted {
                return Ok(c.resolved.clone());
            }
            let buf = format::encode_txn(
                c.tid,
                STATUS_CHECKPOINT,
                &c.meta.user,
                &c.meta.description,
                &c.meta.extension,
                &c.records,
            );
            if c.pos.saturating_add(buf.len() as u64) > MAX_POS {
                return Err(StorageError::Invalid(
                    "the data file would exceed 2^48 bytes".into(),
                ));
            }
            c.written = true;
            if let Err(e) = file.write_all_at(&buf, c.pos) {
                if let Err(e2) = file.set_len(c.pos) {
                    log::error!(
                        "{}: cannot truncate back to {} after a failed vote: {e2}",
                        self.name,
                        c.pos
                    );
                }
                return Err(StorageError::io(
                    format!(
                        "writing transaction {:?} to {} at {}",
                        c.tid,
                        self.path.display(),
                        c.pos
                    ),
                    e,
                ));
            }
            c.voted = true;
            Ok(c.resolved.clone())
        })
    }

    /// Finish step 1: flip the status byte of the voted transaction.
    fn flip_status(&self, c: &Commit) -> std::io::Result<()> {
        let file = self.state_read().file.clone();
        file.write_all_at(&[c.status], c.pos + 16)
    }

    /// Finish step 2: make everything written so far durable.
    pub fn sync(&self) -> SResult<()> {
        let file = self.state_read().file.clone();
        file.sync()
            .map_err(|e| StorageError::io(format!("fsync of {}", self.path.display()), e))
    }

    /// Finish step 3: make the transaction visible to readers.
    fn publish(&self, c: &Commit) {
        let mut st = self.state_write();
        for (&oid, &pos) in &c.tindex {
            st.index.insert(oid, pos);
        }
        st.end = c.pos + c.header_len + c.records.len() as u64 + 8;
        st.last_tid = c.tid;
    }

    /// The voted transaction `txn` names, or why not.
    fn voted_commit<'a>(g: &'a mut Option<Commit>, txn: &TxnHandle) -> SResult<&'a mut Commit> {
        match g.as_mut() {
            Some(c) if c.serial == txn.serial => {
                if c.voted {
                    Ok(c)
                } else {
                    Err(StorageError::Transaction(
                        "tpc_finish before a successful tpc_vote".into(),
                    ))
                }
            }
            _ => Err(StorageError::Transaction(format!(
                "transaction {} is not the one in progress",
                txn.tid
            ))),
        }
    }

    /// Finish steps 1 and 2 (status flip, fsync). On failure the storage closes
    /// itself, as Python's does: the transaction stays 'c' (or partly flipped) at
    /// the end of the file, is cut off here and dropped on the next open anyway.
    fn make_durable(&self, g: &mut Option<Commit>) -> SResult<()> {
        let Some(c) = g.as_mut() else {
            return Ok(());
        };
        let res = self.flip(c).and_then(|_| self.sync());
        if let Err(e) = res {
            let c = g.take().expect("checked above");
            self.fail_closed(
                Some(c.pos),
                &format!("finishing transaction {:?}", c.tid),
                &e,
            );
            return Err(e);
        }
        Ok(())
    }

    fn flip(&self, c: &Commit) -> SResult<()> {
        self.flip_status(c).map_err(|e| {
            StorageError::io(
                format!(
                    "writing the status of transaction {:?} in {}",
                    c.tid,
                    self.path.display()
                ),
                e,
            )
        })
    }

    /// A write or fsync of committed data failed: cut the file back to `cut_at` (if
    /// given) and close the storage (Python's FileStorage closes itself too).
    fn fail_closed(&self, cut_at: Option<u64>, what: &str, e: &StorageError) {
        log::error!("{}: {what} failed, closing the storage: {e}", self.name);
        if let Some(pos) = cut_at {
            let file = self.state_read().file.clone();
            let _ = file.set_len(pos);
        }
        self.closed.store(true, Ordering::Release);
        self.lock_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.commit_done.notify_all();
    }

    pub(crate) fn tpc_finish_impl(&self, txn: TxnHandle) -> SResult<Tid> {
        self.check_writable()?;
        let mut g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        Self::voted_commit(&mut g, &txn)?;
        self.make_durable(&mut g)?;
        let c = g.take().expect("checked above");
        self.publish(&c);
        drop(g);
        self.commit_done.notify_all();
        Ok(c.tid)
    }

    /// Group commit, step 1: flip the status and publish, no fsync. The file
    /// position up to which committed data awaits an fsync is remembered.
    pub(crate) fn tpc_seal_impl(&self, txn: TxnHandle) -> SResult<Tid> {
        self.check_writable()?;
        let mut g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        Self::voted_commit(&mut g, &txn)?;
        let c = g.take().expect("checked above");
        if let Err(e) = self.flip(&c) {
            self.fail_closed(Some(c.pos), &format!("sealing transaction {:?}", c.tid), &e);
            return Err(e);
        }
        self.publish(&c);
        drop(g);
        self.commit_done.notify_all();
        Ok(c.tid)
    }

    /// Group commit, step 2: one fsync for everything sealed so far. On failure
    /// the storage closes itself (what was sealed may or may not be on disk; none
    /// of it was acknowledged).
    pub(crate) fn sync_committed_impl(&self) -> SResult<()> {
        self.check_open()?;
        // What was sealed may or may not be on disk; none of it was acknowledged, and
        // nothing is cut: the next open's recovery decides.
        self.sync()
            .inspect_err(|e| self.fail_closed(None, "fsync of sealed transactions", e))
    }

    pub(crate) fn tpc_abort_impl(&self, txn: TxnHandle) {
        let mut g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = g.as_ref() else { return };
        if c.serial != txn.serial {
            return;
        }
        let c = g.take().expect("checked above");
        if c.written {
            let file = self.state_read().file.clone();
            if let Err(e) = file.set_len(c.pos) {
                log::error!(
                    "{}: cannot truncate back to {} on abort: {e}",
                    self.name,
                    c.pos
                );
            }
        }
        if let Some(b) = &self.blobs {
            for p in &c.blob_files {
                b.remove(p);
            }
        }
        drop(g);
        self.commit_done.notify_all();
    }
}
