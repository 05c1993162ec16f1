//! The commit machinery of one served storage, independent of sockets and encodings:
//! a connection's buffered transaction, its replay into the storage at vote (always
//! with client-side conflict resolution: conflicts go back to the client, which
//! resolves and votes again), the FIFO commit-lock queue, and the invalidation queue
//! that answers `getInvalidations`.
//!
//! Invariants (spec zeo-protocol.md §9-10):
//! - nothing touches the storage before vote; the lock is taken at vote and held until
//!   tpc_finish/tpc_abort, or released at once when the vote fails; a vote that returns
//!   conflicts keeps it while the client resolves them and votes again (so the retry
//!   cannot meet new conflicts);
//! - waiters get the lock in arrival order; a connection is at most once in the queue;
//! - a later store of an oid in the same buffer supersedes an earlier one, so a
//!   resolved store sent after a conflict wins, and a blob store after `storea` wins;
//! - the invalidation queue holds at most `capacity` entries, newest first, and is
//!   only appended in commit (tid) order.

use crate::storage::{Oid, SResult, Storage, StorageError, Tid, TxnHandle, TxnMeta, TxnStatus};
use std::collections::VecDeque;
use std::path::PathBuf;

/// One operation buffered by a connection between tpc_begin and vote.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Store {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
    },
    CheckCurrent {
        oid: Oid,
        serial: Tid,
    },
    Restore {
        oid: Oid,
        serial: Tid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    },
    Delete {
        oid: Oid,
        serial: Tid,
    },
    Undo {
        undo_id: Vec<u8>,
    },
    /// A store whose content is the blob file `file` (uploaded or shared).
    StoreBlob {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        file: PathBuf,
    },
}

/// A connection's open transaction. `I` is the client's transaction id (any value,
/// compared by equality).
#[derive(Debug)]
pub struct TxnBuffer<I> {
    pub id: I,
    pub meta: TxnMeta,
    /// Explicit tid (copy/restore), else the storage picks one at vote.
    pub tid: Option<Tid>,
    pub status: TxnStatus,
    ops: Vec<Op>,
    /// The storage transaction, between a successful vote and finish/abort.
    pub handle: Option<TxnHandle>,
}

/// A conflict returned to the client for local resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub oid: Oid,
    /// `(committed tid, serial the client sent)`.
    pub serials: (Tid, Tid),
    /// The client's rejected data.
    pub data: Vec<u8>,
}

/// What a vote did.
#[derive(Debug)]
pub enum VoteResult {
    /// Written, lock kept. `serials`: oids the client must invalidate instead of
    /// caching (undone ones); `invalidated`: oids to broadcast at finish.
    Voted {
        serials: Vec<Oid>,
        invalidated: Vec<Oid>,
    },
    /// Conflicts for the client to resolve; the storage transaction was aborted, the
    /// buffer stays open and the connection keeps the commit lock for its next vote.
    Conflicts(Vec<Conflict>),
}

impl<I> TxnBuffer<I> {
    pub fn new(id: I, meta: TxnMeta, tid: Option<Tid>, status: TxnStatus) -> Self {
        TxnBuffer {
            id,
            meta,
            tid,
            status,
            ops: Vec::new(),
            handle: None,
        }
    }

    /// Buffer one operation. A store (plain or blob) of an oid replaces an earlier
    /// store of the same oid; an earlier blob's file is returned for removal.
    pub fn push(&mut self, op: Op) -> Option<PathBuf> {
        let oid = match &op {
            Op::Store { oid, .. } | Op::StoreBlob { oid, .. } => Some(*oid),
            _ => None,
        };
        let mut dropped = None;
        if let Some(oid) = oid {
            if let Some(i) = self.ops.iter().position(|o| {
                matches!(o, Op::Store { oid: x, .. } | Op::StoreBlob { oid: x, .. } if *x == oid)
            }) {
                if let Op::StoreBlob { file, .. } = self.ops.remove(i) {
                    dropped = Some(file);
                }
            }
        }
        self.ops.push(op);
        dropped
    }

    /// Buffered operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Blob files still owned by this buffer (to delete when it is dropped unused).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        self.ops
            .iter()
            .filter_map(|o| match o {
                Op::StoreBlob { file, .. } => Some(file.clone()),
                _ => None,
            })
            .collect()
    }

    /// Replay the buffer into `storage` and vote; call with the commit lock held.
    /// On `Err` or `Conflicts` the storage transaction has been aborted.
    pub fn vote(&mut self, storage: &dyn Storage) -> SResult<VoteResult> {
        let handle = storage.tpc_begin(&self.meta, self.tid, self.status)?;
        match replay(storage, &handle, &self.ops) {
            Ok(Replayed::Ok {
                serials,
                invalidated,
            }) => match storage.tpc_vote(&handle) {
                Ok(resolved) => {
                    let mut serials = serials;
                    serials.extend(resolved);
                    self.handle = Some(handle);
                    Ok(VoteResult::Voted {
                        serials,
                        invalidated,
                    })
                }
                Err(e) => {
                    storage.tpc_abort(handle);
                    Err(e)
                }
            },
            Ok(Replayed::Conflicts(c)) => {
                storage.tpc_abort(handle);
                Ok(VoteResult::Conflicts(c))
            }
            Err(e) => {
                storage.tpc_abort(handle);
                Err(e)
            }
        }
    }
}

enum Replayed {
    Ok {
        serials: Vec<Oid>,
        invalidated: Vec<Oid>,
    },
    Conflicts(Vec<Conflict>),
}

fn replay(storage: &dyn Storage, h: &TxnHandle, ops: &[Op]) -> SResult<Replayed> {
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut serials = Vec::new();
    let mut invalidated = Vec::new();
    // Python replays plain ops first, then blob stores in reverse order.
    let plain = ops.iter().filter(|o| !matches!(o, Op::StoreBlob { .. }));
    let blobs = ops
        .iter()
        .rev()
        .filter(|o| matches!(o, Op::StoreBlob { .. }));
    for op in plain.chain(blobs) {
        let stored = match op {
            Op::Store { oid, serial, data } => {
                Some((*oid, data, storage.store(h, *oid, *serial, data)))
            }
            Op::StoreBlob {
                oid,
                serial,
                data,
                file,
            } => Some((*oid, data, storage.store_blob(h, *oid, *serial, data, file))),
            Op::CheckCurrent { oid, serial } => {
                storage.check_current_serial(h, *oid, *serial)?;
                None
            }
            Op::Restore {
                oid,
                serial,
                data,
                prev_txn,
            } => {
                storage.restore(h, *oid, *serial, data.as_deref(), *prev_txn)?;
                None
            }
            Op::Delete { oid, serial } => {
                storage.delete_object(h, *oid, *serial)?;
                None
            }
            Op::Undo { undo_id } => {
                let oids = storage.undo(h, undo_id)?;
                invalidated.extend_from_slice(&oids);
                serials.extend(oids);
                None
            }
        };
        if let Some((oid, data, result)) = stored {
            match result {
                Ok(()) => {
                    conflicts.retain(|c| c.oid != oid);
                    invalidated.push(oid);
                }
                Err(StorageError::Conflict(info)) => {
                    conflicts.retain(|c| c.oid != oid);
                    conflicts.push(Conflict {
                        oid,
                        serials: info.serials,
                        data: data.clone(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    if conflicts.is_empty() {
        Ok(Replayed::Ok {
            serials,
            invalidated,
        })
    } else {
        Ok(Replayed::Conflicts(conflicts))
    }
}

/// Why a vote cannot queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// The connection already holds the lock.
    AlreadyLocked,
    /// The connection is already waiting.
    AlreadyWaiting,
}

impl LockError {
    /// The message of the StorageTransactionError the client gets.
    pub fn message(&self) -> &'static str {
        match self {
            LockError::AlreadyLocked => "Already voting (locked)",
            LockError::AlreadyWaiting => "Already voting (waiting)",
        }
    }
}

/// The commit lock of one storage with its FIFO queue of waiting connections.
#[derive(Debug)]
pub struct CommitLock<C> {
    holder: Option<C>,
    waiting: VecDeque<C>,
    /// Seconds since the epoch when the holder got the lock.
    pub lock_time: Option<f64>,
}

impl<C: Copy + PartialEq> Default for CommitLock<C> {
    fn default() -> Self {
        CommitLock {
            holder: None,
            waiting: VecDeque::new(),
            lock_time: None,
        }
    }
}

impl<C: Copy + PartialEq> CommitLock<C> {
    /// Ask for the lock: `Ok(true)` granted now, `Ok(false)` queued.
    pub fn request(&mut self, conn: C, now: f64) -> Result<bool, LockError> {
        if self.holder == Some(conn) {
            return Err(LockError::AlreadyLocked);
        }
        if self.waiting.contains(&conn) {
            return Err(LockError::AlreadyWaiting);
        }
        if self.holder.is_none() && self.waiting.is_empty() {
            self.holder = Some(conn);
            self.lock_time = Some(now);
            Ok(true)
        } else {
            self.waiting.push_back(conn);
            Ok(false)
        }
    }

    /// Release the lock if `conn` holds it, or drop `conn` from the queue. Returns
    /// whether `conn` held it (then call [`CommitLock::grant_next`]).
    pub fn release(&mut self, conn: C) -> bool {
        if self.holder == Some(conn) {
            self.holder = None;
            self.lock_time = None;
            true
        } else {
            self.waiting.retain(|c| *c != conn);
            false
        }
    }

    /// Hand a free lock to the longest waiter; returns it.
    pub fn grant_next(&mut self, now: f64) -> Option<C> {
        if self.holder.is_some() {
            return None;
        }
        let next = self.waiting.pop_front()?;
        self.holder = Some(next);
        self.lock_time = Some(now);
        Some(next)
    }

    pub fn holder(&self) -> Option<C> {
        self.holder
    }
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Recent commits `(tid, oids)`, newest first, for quick client verification.
#[derive(Debug)]
pub struct InvalidationQueue {
    entries: VecDeque<(Tid, Vec<Oid>)>,
    capacity: usize,
}

impl InvalidationQueue {
    pub fn new(capacity: usize) -> Self {
        InvalidationQueue {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// Seed from the storage's last transactions (oldest first, as
    /// `Storage::last_invalidations` returns them).
    pub fn seed(&mut self, recent: Vec<(Tid, Vec<Oid>)>) {
        for (tid, oids) in recent {
            self.push(tid, oids);
        }
    }

    /// Record a commit (tids must increase).
    pub fn push(&mut self, tid: Tid, oids: Vec<Oid>) {
        if self.capacity == 0 {
            return;
        }
        self.entries.push_front((tid, oids));
        self.entries.truncate(self.capacity);
    }

    /// `getInvalidations(tid)` from the queue alone: `Some((newest tid, oids changed
    /// after tid))` when the queue reaches back to `tid`, else `None` (the caller may
    /// then consult the storage when invalidation-age allows).
    pub fn since(&self, tid: Tid) -> Option<(Tid, Vec<Oid>)> {
        let oldest = self.entries.back()?;
        if oldest.0 > tid {
            return None;
        }
        let newest = self.entries.front()?.0;
        let mut oids: Vec<Oid> = self
            .entries
            .iter()
            .take_while(|(t, _)| *t > tid)
            .flat_map(|(_, o)| o.iter().copied())
            .collect();
        oids.sort();
        oids.dedup();
        Some((newest, oids))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `getInvalidations` past the queue, for a tid younger than invalidation-age: read
/// the storage's transactions after `tid`. `None` when there are none.
pub fn invalidations_from_storage(
    storage: &dyn Storage,
    tid: Tid,
    announced: Tid,
) -> SResult<Option<(Tid, Vec<Oid>)>> {
    let mut last = None;
    let mut oids = Vec::new();
    for txn in storage.iterator(Some(Tid(tid.0.saturating_add(1))), Some(announced))? {
        let txn = txn?;
        last = Some(txn.tid);
        oids.extend(txn.records.iter().map(|r| r.oid));
    }
    oids.sort();
    oids.dedup();
    Ok(last.map(|t| (t, oids)))
}

/// Per-storage counters reported by `server_status` and `ruok` (spec §13).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub loads: u64,
    pub stores: u64,
    pub commits: u64,
    pub aborts: u64,
    pub active_txns: u64,
    pub conflicts: u64,
    pub conflicts_resolved: u64,
}

#[cfg(test)]
mod tests;
