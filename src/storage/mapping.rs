//! MappingStorage: the in-memory engine, for ad-hoc serving and as the reference model
//! in property tests against FileStorage.
//!
//! It keeps FileStorage's record model in memory: every committed data record has a
//! unique, increasing "position", a `prev` link to the oid's previous record, and either
//! data, a backpointer to an older record, or a zero backpointer (deletion / undone
//! creation). Reads, undo and the reported sizes follow the same algorithms as
//! FileStorage (spec filestorage.md §6, §9), so both engines answer every load,
//! loadBefore, history and undoLog identically.
//!
//! Invariants: positions only grow; `prev` and backpointers point to smaller positions;
//! `index[oid]` is the position of the oid's newest committed record; a transaction in
//! progress is invisible to readers until `tpc_finish`.

use super::tid::{Oid, Tid};
use super::{
    ConflictInfo, CurrentRecord, DataRecord, HistoryEntry, LoadBefore, PackOutcome, SResult,
    Storage, StorageError, TransactionRecord, TxnHandle, TxnIter, TxnMeta, TxnStatus, UndoEntry,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Size of a transaction header in a Data.fs (used to report FileStorage-equal sizes).
const TXN_HEADER: u64 = 23;
/// Size of a data record header in a Data.fs.
const DATA_HEADER: u64 = 42;

/// What a record holds.
#[derive(Clone, Debug)]
enum Body {
    Data(Arc<[u8]>),
    /// Backpointer to an older record's position.
    Back(u64),
    /// Zero backpointer: the object does not exist as of this record.
    Gone,
}

#[derive(Clone, Debug)]
struct Rec {
    oid: Oid,
    tid: Tid,
    prev: u64,
    body: Body,
}

impl Rec {
    /// The record's `plen`: data length, 0 for backpointers and deletions.
    fn plen(&self) -> u64 {
        match &self.body {
            Body::Data(d) => d.len() as u64,
            _ => 0,
        }
    }
    /// Bytes the record would occupy in a Data.fs.
    fn file_size(&self) -> u64 {
        match &self.body {
            Body::Data(d) => DATA_HEADER + d.len() as u64,
            _ => DATA_HEADER + 8,
        }
    }
}

#[derive(Clone, Debug)]
struct Txn {
    tid: Tid,
    status: u8,
    meta: TxnMeta,
    /// Positions of this transaction's records, in write order.
    records: Vec<u64>,
    /// The `tlen` a Data.fs would store for this transaction.
    tlen: u64,
}

/// A record buffered by the transaction in progress (position assigned at vote).
#[derive(Clone, Debug)]
struct PendingRec {
    oid: Oid,
    tid: Tid,
    prev: u64,
    body: Body,
}

#[derive(Debug)]
struct Pending {
    serial: u64,
    tid: Tid,
    status: TxnStatus,
    meta: TxnMeta,
    records: Vec<PendingRec>,
    /// oid -> body of this transaction's latest record (undo's temporary index).
    touched: HashMap<Oid, Body>,
    voted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<u64, Rec>,
    index: BTreeMap<Oid, u64>,
    txns: Vec<Txn>,
    /// End of data as a Data.fs would have it.
    size: u64,
    last_tid: Tid,
    last_begun: Tid,
    max_oid: Option<Oid>,
    pending: Option<Pending>,
    serial: u64,
}

/// The in-memory storage.
pub struct MappingStorage {
    name: String,
    read_only: bool,
    inner: Mutex<Inner>,
    /// Notified when a transaction finishes or aborts (pack waits for that).
    idle: Condvar,
    /// Clock used for new tids (seconds since the epoch); replaceable in tests.
    clock: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl MappingStorage {
    /// An empty writable storage named "Mapping Storage".
    pub fn new() -> Self {
        Self::with_name("Mapping Storage")
    }

    pub fn with_name(name: &str) -> Self {
        MappingStorage {
            name: name.to_string(),
            read_only: false,
            inner: Mutex::new(Inner {
                size: 4,
                ..Inner::default()
            }),
            idle: Condvar::new(),
            clock: Box::new(now),
        }
    }

    /// Replace the clock used to generate tids (tests use a deterministic one).
    pub fn with_clock(mut self, clock: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Refuse all writes from now on.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic in our own code while holding it.
        self.inner.lock().expect("MappingStorage lock poisoned")
    }

    fn check_writable(&self) -> SResult<()> {
        if self.read_only {
            Err(StorageError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl Default for MappingStorage {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Inner {
    fn rec(&self, pos: u64) -> SResult<&Rec> {
        self.records
            .get(&pos)
            .ok_or_else(|| StorageError::Corrupted {
                path: PathBuf::from("<memory>"),
                offset: pos,
                what: "no record at this position".into(),
            })
    }

    /// Follow backpointers from `body` to data; `None` when the chain ends in a deletion.
    fn resolve(&self, body: &Body) -> SResult<Option<Arc<[u8]>>> {
        let mut body = body.clone();
        loop {
            match body {
                Body::Data(d) => return Ok(Some(d)),
                Body::Gone => return Ok(None),
                Body::Back(p) => body = self.rec(p)?.body.clone(),
            }
        }
    }

    fn current(&self, oid: Oid) -> SResult<&Rec> {
        let pos = *self.index.get(&oid).ok_or(StorageError::pos_key(oid))?;
        self.rec(pos)
    }

    fn data_of(&self, rec: &Rec) -> SResult<Vec<u8>> {
        match self.resolve(&rec.body)? {
            Some(d) => Ok(d.to_vec()),
            None => Err(StorageError::PosKey {
                oid: rec.oid,
                serial: None,
            }),
        }
    }

    fn pending_mut(&mut self, txn: &TxnHandle) -> SResult<&mut Pending> {
        match &mut self.pending {
            Some(p) if p.serial == txn.serial && p.tid == txn.tid => Ok(p),
            _ => Err(StorageError::Transaction(
                "the call names a transaction that is not in progress".into(),
            )),
        }
    }

    /// Committed serial of `oid`, if it has any record (deleted ones included).
    fn committed_serial(&self, oid: Oid) -> SResult<Option<(u64, Tid)>> {
        match self.index.get(&oid) {
            Some(&pos) => Ok(Some((pos, self.rec(pos)?.tid))),
            None => Ok(None),
        }
    }

    fn find_txn(&self, tid: Tid) -> Option<&Txn> {
        let i = self.txns.binary_search_by(|t| t.tid.cmp(&tid)).ok()?;
        self.txns.get(i)
    }

    fn raise_max_oid(&mut self, oid: Oid) {
        if self.max_oid.is_none_or(|m| oid > m) {
            self.max_oid = Some(oid);
        }
    }
}

/// The `(oid, class)` conflict description for a rejected store.
fn conflict(oid: Oid, committed: Tid, old: Tid, data: Option<&[u8]>) -> StorageError {
    StorageError::Conflict(ConflictInfo {
        oid,
        serials: (committed, old),
        class_name: data.and_then(super::refs::pickle_class_name),
    })
}

pub use super::undo_id::{tid_to_undo_id, undo_id_to_tid};

impl Storage for MappingStorage {
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
        self.lock().last_tid
    }
    fn len(&self) -> u64 {
        self.lock().index.len() as u64
    }
    fn size(&self) -> u64 {
        self.lock().size
    }

    fn new_oids(&self, n: usize) -> SResult<Vec<Oid>> {
        self.check_writable()?;
        let mut inner = self.lock();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            // Oid 0 is the root: like FileStorage and Python's MappingStorage, the first new
            // oid is 1.
            let next = inner.max_oid.map_or(Oid(1), |m| Oid(m.0 + 1));
            inner.max_oid = Some(next);
            out.push(next);
        }
        Ok(out)
    }

    fn load(&self, oid: Oid) -> SResult<(Vec<u8>, Tid)> {
        let inner = self.lock();
        let rec = inner.current(oid)?;
        Ok((inner.data_of(rec)?, rec.tid))
    }

    fn load_before(&self, oid: Oid, before: Tid) -> SResult<Option<LoadBefore>> {
        let inner = self.lock();
        let mut rec = inner.current(oid)?;
        let mut end = None;
        while rec.tid >= before {
            end = Some(rec.tid);
            if rec.prev == 0 {
                return Ok(None);
            }
            rec = inner.rec(rec.prev)?;
        }
        Ok(Some(LoadBefore {
            data: inner.data_of(rec)?,
            start: rec.tid,
            end,
        }))
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> SResult<Vec<u8>> {
        let inner = self.lock();
        let missing = StorageError::PosKey {
            oid,
            serial: Some(serial),
        };
        let mut rec = inner.current(oid).map_err(|_| StorageError::PosKey {
            oid,
            serial: Some(serial),
        })?;
        loop {
            if rec.tid == serial {
                return inner.data_of(rec).map_err(|_| missing);
            }
            if rec.tid < serial || rec.prev == 0 {
                return Err(missing);
            }
            rec = inner.rec(rec.prev)?;
        }
    }

    fn get_tid(&self, oid: Oid) -> SResult<Tid> {
        let inner = self.lock();
        let rec = inner.current(oid)?;
        match rec.body {
            Body::Gone => Err(StorageError::pos_key(oid)),
            _ => Ok(rec.tid),
        }
    }

    fn history(&self, oid: Oid, size: usize) -> SResult<Vec<HistoryEntry>> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut pos = *inner.index.get(&oid).ok_or(StorageError::pos_key(oid))?;
        while out.len() < size.max(1) {
            let rec = inner.rec(pos)?;
            let txn = inner.find_txn(rec.tid);
            out.push(HistoryEntry {
                tid: rec.tid,
                time: rec.tid.time_time(),
                user_name: txn.map(|t| t.meta.user.clone()).unwrap_or_default(),
                description: txn.map(|t| t.meta.description.clone()).unwrap_or_default(),
                size: rec.plen(),
                extension: txn.map(|t| t.meta.extension.clone()).unwrap_or_default(),
            });
            if rec.prev == 0 {
                break;
            }
            pos = rec.prev;
        }
        Ok(out)
    }

    fn record_iternext(&self, start: Option<Oid>) -> SResult<Option<CurrentRecord>> {
        let inner = self.lock();
        let mut range = inner.index.range(start.unwrap_or(Oid(0))..);
        let Some((&oid, &pos)) = range.next() else {
            return Ok(None);
        };
        let next = range.next().map(|(&o, _)| o);
        let rec = inner.rec(pos)?;
        Ok(Some(CurrentRecord {
            oid,
            tid: rec.tid,
            data: inner.data_of(rec)?,
            next,
        }))
    }

    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> SResult<TxnIter> {
        let inner = self.lock();
        let mut out = Vec::new();
        for t in &inner.txns {
            if start.is_some_and(|s| t.tid < s) || stop.is_some_and(|s| t.tid > s) {
                continue;
            }
            let mut records = Vec::with_capacity(t.records.len());
            for &pos in &t.records {
                let rec = inner.rec(pos)?;
                let data_txn = match rec.body {
                    Body::Back(p) => Some(inner.rec(p)?.tid),
                    _ => None,
                };
                records.push(DataRecord {
                    oid: rec.oid,
                    tid: rec.tid,
                    data: inner.resolve(&rec.body)?.map(|d| d.to_vec()),
                    data_txn,
                });
            }
            out.push(Ok(TransactionRecord {
                tid: t.tid,
                status: t.status,
                meta: t.meta.clone(),
                records,
            }));
        }
        Ok(Box::new(out.into_iter()))
    }

    fn last_invalidations(&self, n: usize) -> SResult<Vec<(Tid, Vec<Oid>)>> {
        let inner = self.lock();
        let skip = inner.txns.len().saturating_sub(n);
        inner.txns[skip..]
            .iter()
            .map(|t| {
                let oids = t
                    .records
                    .iter()
                    .map(|p| inner.rec(*p).map(|r| r.oid))
                    .collect::<SResult<Vec<_>>>()?;
                Ok((t.tid, oids))
            })
            .collect()
    }

    fn tpc_begin(&self, meta: &TxnMeta, tid: Option<Tid>, status: TxnStatus) -> SResult<TxnHandle> {
        self.check_writable()?;
        meta.check_lengths()?;
        let mut inner = self.lock();
        if inner.pending.is_some() {
            return Err(StorageError::Transaction(
                "another transaction is in progress".into(),
            ));
        }
        let tid = match tid {
            Some(t) if t <= inner.last_tid => {
                return Err(StorageError::Invalid(format!(
                    "explicit tid {t:?} is not after the last transaction {:?}",
                    inner.last_tid
                )))
            }
            Some(t) => t,
            None => Tid::from_unix((self.clock)()).later_than(inner.last_begun),
        };
        inner.last_begun = inner.last_begun.max(tid);
        inner.serial += 1;
        let serial = inner.serial;
        inner.pending = Some(Pending {
            serial,
            tid,
            status,
            meta: meta.clone(),
            records: Vec::new(),
            touched: HashMap::new(),
            voted: false,
        });
        Ok(TxnHandle { tid, serial })
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid, data: &[u8]) -> SResult<()> {
        self.check_writable()?;
        let mut inner = self.lock();
        inner.pending_mut(txn)?;
        inner.raise_max_oid(oid);
        let committed = inner.committed_serial(oid)?;
        if let Some((_, tid)) = committed {
            if tid != old_serial {
                return Err(conflict(oid, tid, old_serial, Some(data)));
            }
        }
        let prev = committed.map_or(0, |(p, _)| p);
        let p = inner.pending_mut(txn)?;
        let body = Body::Data(Arc::from(data));
        p.touched.insert(oid, body.clone());
        p.records.push(PendingRec {
            oid,
            tid: txn.tid,
            prev,
            body,
        });
        Ok(())
    }

    fn store_blob(
        &self,
        _txn: &TxnHandle,
        _oid: Oid,
        _old_serial: Tid,
        _data: &[u8],
        _blob_file: &std::path::Path,
    ) -> SResult<()> {
        Err(StorageError::Invalid(
            "this storage has no blob directory (MappingStorage does not support blobs)".into(),
        ))
    }

    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        serial: Tid,
        data: Option<&[u8]>,
        prev_txn: Option<Tid>,
    ) -> SResult<()> {
        self.check_writable()?;
        let mut inner = self.lock();
        inner.pending_mut(txn)?;
        inner.raise_max_oid(oid);
        let mut body = match data {
            Some(d) => Body::Data(Arc::from(d)),
            None => Body::Gone,
        };
        if let (Some(d), Some(ptid)) = (data, prev_txn) {
            let t = inner
                .find_txn(ptid)
                .ok_or_else(|| StorageError::Undo {
                    message: "Invalid transaction id".into(),
                    failures: vec![],
                })?
                .clone();
            // The last record of `oid` in that transaction.
            let mut found = None;
            for &pos in &t.records {
                if inner.rec(pos)?.oid == oid {
                    found = Some(pos);
                }
            }
            if let Some(pos) = found {
                match &inner.rec(pos)?.body {
                    Body::Back(b) => body = Body::Back(*b),
                    Body::Data(existing) if existing[..] == d[..] => body = Body::Back(pos),
                    _ => {}
                }
            }
        }
        let prev = inner.committed_serial(oid)?.map_or(0, |(p, _)| p);
        let p = inner.pending_mut(txn)?;
        p.touched.insert(oid, body.clone());
        p.records.push(PendingRec {
            oid,
            tid: serial,
            prev,
            body,
        });
        Ok(())
    }

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, serial: Tid) -> SResult<()> {
        let mut inner = self.lock();
        inner.pending_mut(txn)?;
        let rec = inner.current(oid)?;
        if matches!(rec.body, Body::Gone) {
            return Err(StorageError::pos_key(oid));
        }
        if rec.tid != serial {
            return Err(StorageError::ReadConflict(ConflictInfo {
                oid,
                serials: (rec.tid, serial),
                class_name: None,
            }));
        }
        Ok(())
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, old_serial: Tid) -> SResult<()> {
        self.check_writable()?;
        let mut inner = self.lock();
        inner.pending_mut(txn)?;
        let (prev, tid) = inner
            .committed_serial(oid)?
            .ok_or(StorageError::pos_key(oid))?;
        if tid != old_serial {
            return Err(conflict(oid, tid, old_serial, None));
        }
        let p = inner.pending_mut(txn)?;
        p.touched.insert(oid, Body::Gone);
        p.records.push(PendingRec {
            oid,
            tid: txn.tid,
            prev,
            body: Body::Gone,
        });
        Ok(())
    }

    fn undo(&self, txn: &TxnHandle, undo_id: &[u8]) -> SResult<Vec<Oid>> {
        self.check_writable()?;
        let mut inner = self.lock();
        inner.pending_mut(txn)?;
        let undo_err = |m: &str| StorageError::Undo {
            message: m.to_string(),
            failures: vec![],
        };
        let target = undo_id_to_tid(undo_id).ok_or_else(|| undo_err("Invalid transaction id"))?;
        let t = inner
            .find_txn(target)
            .ok_or_else(|| undo_err("Invalid transaction id"))?
            .clone();
        if t.status != b' ' {
            return Err(undo_err("non-undoable transaction"));
        }
        let mut failures: Vec<(Oid, String)> = Vec::new();
        let mut writes: Vec<(Oid, u64, Body)> = Vec::new();
        let mut temp: HashMap<Oid, Body> = inner.pending_mut(txn)?.touched.clone();
        for &pos in &t.records {
            let r = inner.rec(pos)?.clone();
            let committed_pos = *inner
                .index
                .get(&r.oid)
                .ok_or(StorageError::pos_key(r.oid))?;
            // Current state: this undo transaction's own earlier write, else committed.
            let (cur_is_r, cur_body) = match temp.get(&r.oid) {
                Some(b) => (false, b.clone()),
                None => (committed_pos == pos, inner.rec(committed_pos)?.body.clone()),
            };
            let mut ok = cur_is_r;
            if !ok {
                let points_at_r = matches!(cur_body, Body::Back(b) if b == pos);
                let same = match (inner.resolve(&cur_body)?, inner.resolve(&r.body)?) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                };
                ok = points_at_r || same;
            }
            if !ok {
                let why = if r.prev == 0 {
                    "Can't undo an add transaction followed by conflicting transactions"
                } else {
                    "Some data were modified by a later transaction"
                };
                failures.push((r.oid, why.to_string()));
                continue;
            }
            failures.retain(|(o, _)| *o != r.oid);
            let body = if r.prev == 0 {
                Body::Gone
            } else {
                Body::Back(r.prev)
            };
            temp.insert(r.oid, body.clone());
            writes.push((r.oid, committed_pos, body));
        }
        if !failures.is_empty() {
            return Err(StorageError::Undo {
                message: "Multiple undo errors".into(),
                failures,
            });
        }
        let p = inner.pending_mut(txn)?;
        let mut oids = Vec::new();
        for (oid, prev, body) in writes {
            p.touched.insert(oid, body.clone());
            p.records.push(PendingRec {
                oid,
                tid: txn.tid,
                prev,
                body,
            });
            oids.push(oid);
        }
        Ok(oids)
    }

    fn tpc_vote(&self, txn: &TxnHandle) -> SResult<Vec<Oid>> {
        let mut inner = self.lock();
        let p = inner.pending_mut(txn)?;
        p.voted = true;
        Ok(Vec::new())
    }

    fn tpc_finish(&self, txn: TxnHandle) -> SResult<Tid> {
        let mut inner = self.lock();
        if !inner.pending_mut(&txn)?.voted {
            return Err(StorageError::Transaction(
                "tpc_finish called before tpc_vote".into(),
            ));
        }
        let Some(p) = inner.pending.take() else {
            unreachable!("pending_mut just found the transaction");
        };
        let mut tlen = TXN_HEADER
            + p.meta.user.len() as u64
            + p.meta.description.len() as u64
            + p.meta.extension.len() as u64;
        let txn_pos = inner.size;
        let mut pos = txn_pos + tlen;
        let mut positions = Vec::with_capacity(p.records.len());
        for pr in p.records {
            let rec = Rec {
                oid: pr.oid,
                tid: pr.tid,
                prev: pr.prev,
                body: pr.body,
            };
            let sz = rec.file_size();
            inner.index.insert(rec.oid, pos);
            inner.records.insert(pos, rec);
            positions.push(pos);
            pos += sz;
            tlen += sz;
        }
        inner.size = txn_pos + tlen + 8;
        inner.last_tid = p.tid;
        inner.txns.push(Txn {
            tid: p.tid,
            status: p.status.byte(),
            meta: p.meta,
            records: positions,
            tlen,
        });
        drop(inner);
        self.idle.notify_all();
        Ok(p.tid)
    }

    fn tpc_abort(&self, txn: TxnHandle) {
        let mut inner = self.lock();
        if inner.pending_mut(&txn).is_ok() {
            inner.pending = None;
            drop(inner);
            self.idle.notify_all();
        }
    }

    fn undo_log(&self, first: i64, last: i64) -> SResult<Vec<UndoEntry>> {
        let inner = self.lock();
        let last = if last < 0 { first - last } else { last };
        let mut out = Vec::new();
        let mut i = 0i64;
        for t in inner.txns.iter().rev() {
            if i >= last {
                break;
            }
            if t.status == b'p' {
                break;
            }
            if t.status != b' ' {
                continue;
            }
            if i >= first {
                out.push(UndoEntry {
                    id: tid_to_undo_id(t.tid),
                    tid: t.tid,
                    time: t.tid.time_time(),
                    user_name: t.meta.user.clone(),
                    description: t.meta.description.clone(),
                    size: t.tlen,
                    extension: t.meta.extension.clone(),
                });
            }
            i += 1;
        }
        Ok(out)
    }

    fn pack(&self, t: f64, gc: bool) -> SResult<PackOutcome> {
        self.check_writable()?;
        let stop = pack::stop_tid(t)?;
        let inner = self.lock();
        // Like FileStorage's final copy, wait until no transaction is in progress.
        let mut inner = self
            .idle
            .wait_while(inner, |i| i.pending.is_some())
            .unwrap_or_else(|e| e.into_inner());
        pack::pack(&mut inner, stop, gc)
    }

    fn blob_dir(&self) -> Option<PathBuf> {
        None
    }

    fn load_blob(&self, oid: Oid, serial: Tid) -> SResult<PathBuf> {
        Err(StorageError::PosKey {
            oid,
            serial: Some(serial),
        })
    }

    fn close(&self) -> SResult<()> {
        Ok(())
    }
}

mod pack;
#[cfg(test)]
mod tests;
