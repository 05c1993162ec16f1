//! The commit path of the ZEO service (spec zeo-protocol.md §9, §11): tpc_begin,
//! buffered operations, blob uploads (server-side and shared directory), vote with
//! the per-storage FIFO commit-lock queue, tpc_finish with its invalidation
//! broadcast, tpc_abort, the clean-up every close runs, and the transaction timeout.
//!
//! Invariants: the storage is touched only by the lock holder; a queued vote gets its
//! reply only when its turn comes, and every invalidation of the commit that held the
//! lock is queued before it; at tpc_finish `invalidateTransaction` is queued to every
//! other registered connection of the storage before the committer's `info` and tid
//! reply; whoever releases the lock hands it to the next waiter at once.
//! Group commit: tpc_finish seals the transaction (status flip, visible in the
//! storage) and frees the lock at once; one fsync on the serial worker covers every
//! transaction sealed before it starts, and each is acknowledged (invalidations,
//! `info`, tid) only after its fsync, in tid order. Clients learn the current state
//! only up to the last acknowledged tid (`Served::announced`).

use super::commit::{Op, TxnBuffer, VoteResult};
use super::event_loop::{ConnId, Outbox};
use super::served::{now_f64, Unacked};
use super::zeo::{Completion, Outcome, Upload, ZeoService, LOG};
use crate::protocol::metadata::encode_extension;
use crate::protocol::reply::{ReplyValue, ServerCall, VoteItem};
use crate::protocol::{Value, WireError};
use crate::storage::{Oid, Tid, TxnMeta, TxnStatus};
use std::io::Write;
use std::time::{Duration, Instant};

/// Size of the blob chunks `sendBlob` streams (as Python's server).
pub const BLOB_CHUNK: usize = 59_000;

impl ZeoService {
    fn writable(&self, id: ConnId) -> Result<(), WireError> {
        match self.conns.get(&id) {
            Some(c) if !c.read_only => Ok(()),
            _ => Err(WireError::read_only()),
        }
    }

    /// The connection's transaction if `txn` names it and it still takes operations.
    fn txn_for(&mut self, id: ConnId, txn: &Value) -> Result<&mut TxnBuffer<Value>, WireError> {
        self.writable(id)?;
        let c = self.conns.get_mut(&id).ok_or_else(WireError::read_only)?;
        if c.voted.is_some() || c.pending_vote.is_some() {
            return Err(WireError::storage_transaction(
                "operation on a transaction that is voting",
            ));
        }
        match c.txn.as_mut() {
            Some(t) if t.id == *txn => Ok(t),
            Some(t) => Err(WireError::storage_transaction_ids(
                t.id.clone(),
                txn.clone(),
            )),
            None => Err(WireError::storage_transaction_ids(Value::None, txn.clone())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tpc_begin(
        &mut self,
        id: ConnId,
        sidx: usize,
        txn: Value,
        user: Vec<u8>,
        description: Vec<u8>,
        extension: &Value,
        tid: Option<Tid>,
        status: u8,
    ) -> Outcome {
        if let Err(e) = self.writable(id) {
            return Outcome::Error(e);
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        match &c.txn {
            Some(t) if t.id == txn => return Outcome::Later,
            Some(_) => {
                return Outcome::Error(WireError::storage_transaction(
                    "Multiple simultaneous tpc_begin requests from the same client.",
                ))
            }
            None => {}
        }
        let Some(status) = TxnStatus::from_byte(status) else {
            return Outcome::Error(WireError::value_error(format!(
                "invalid transaction status {:?}",
                status as char
            )));
        };
        let extension = match encode_extension(extension) {
            Ok(e) => e,
            Err(e) => return Outcome::Error(WireError::type_error(e.to_string())),
        };
        let meta = TxnMeta {
            user,
            description,
            extension,
        };
        c.txn = Some(TxnBuffer::new(txn, meta, tid, status));
        self.storages[sidx].stats.active_txns += 1;
        Outcome::Later
    }

    /// Buffer one transaction-scoped operation.
    pub(crate) fn store(&mut self, id: ConnId, sidx: usize, txn: &Value, op: Op) -> Outcome {
        let counts = matches!(
            op,
            Op::Store { .. } | Op::Restore { .. } | Op::Delete { .. }
        );
        match self.txn_for(id, txn) {
            Ok(t) => {
                if let Some(old) = t.push(op) {
                    let _ = std::fs::remove_file(old);
                }
            }
            Err(e) => return Outcome::Error(e),
        }
        if counts {
            self.storages[sidx].stats.stores += 1;
        }
        Outcome::Later
    }

    pub(crate) fn blob_start(&mut self, id: ConnId, sidx: usize) -> Outcome {
        if let Err(e) = self.writable(id) {
            return Outcome::Error(e);
        }
        let Some(blobs) = self.storages[sidx].blobs.as_ref() else {
            return Outcome::Error(WireError::value_error("this storage has no blob directory"));
        };
        self.upload_seq += 1;
        let path = blobs.tmp_dir().join(format!(
            "upload-{}-{}-{}.tmp",
            std::process::id(),
            id,
            self.upload_seq
        ));
        let file = match std::fs::File::create(&path) {
            Ok(f) => f,
            Err(e) => {
                log::error!(target: LOG, "cannot create blob upload file {}: {e}", path.display());
                return Outcome::Error(WireError::value_error(
                    "cannot create a temporary blob file on the server",
                ));
            }
        };
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(old) = c.upload.replace(Upload { file, path }) {
                let _ = std::fs::remove_file(old.path);
            }
        }
        Outcome::Later
    }

    pub(crate) fn blob_chunk(&mut self, id: ConnId, chunk: &[u8]) -> Outcome {
        let Some(u) = self.conns.get_mut(&id).and_then(|c| c.upload.as_mut()) else {
            return Outcome::Error(WireError::value_error(
                "storeBlobChunk without storeBlobStart",
            ));
        };
        if let Err(e) = u.file.write_all(chunk) {
            log::error!(target: LOG, "writing blob upload {}: {e}", u.path.display());
            return Outcome::Error(WireError::value_error(
                "cannot write a temporary blob file on the server",
            ));
        }
        Outcome::Later
    }

    pub(crate) fn blob_end(
        &mut self,
        id: ConnId,
        sidx: usize,
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        txn: &Value,
    ) -> Outcome {
        let Some(upload) = self.conns.get_mut(&id).and_then(|c| c.upload.take()) else {
            return Outcome::Error(WireError::value_error(
                "storeBlobEnd without storeBlobStart",
            ));
        };
        let Upload { file, path } = upload;
        if let Err(e) = file.sync_all() {
            log::error!(target: LOG, "syncing blob upload {}: {e}", path.display());
        }
        drop(file);
        let op = Op::StoreBlob {
            oid,
            serial,
            data,
            file: path.clone(),
        };
        let r = self.store(id, sidx, txn, op);
        if matches!(r, Outcome::Error(_)) {
            let _ = std::fs::remove_file(&path);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn blob_shared(
        &mut self,
        id: ConnId,
        sidx: usize,
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        filename: &str,
        txn: &Value,
    ) -> Outcome {
        if !shared_name_ok(filename) {
            return Outcome::Error(WireError::value_error(format!(
                "invalid blob file name {filename:?}"
            )));
        }
        let Some(blobs) = self.storages[sidx].blobs.as_ref() else {
            return Outcome::Error(WireError::value_error("this storage has no blob directory"));
        };
        let file = blobs.oid_dir(oid).join(filename);
        self.store(
            id,
            sidx,
            txn,
            Op::StoreBlob {
                oid,
                serial,
                data,
                file,
            },
        )
    }

    pub(crate) fn vote(
        &mut self,
        id: ConnId,
        sidx: usize,
        msgid: Value,
        txn: &Value,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        match &c.txn {
            Some(t) if t.id == *txn => {}
            Some(t) => {
                return Outcome::Error(WireError::storage_transaction_ids(
                    t.id.clone(),
                    txn.clone(),
                ))
            }
            None => {
                return Outcome::Error(WireError::storage_transaction_ids(Value::None, txn.clone()))
            }
        }
        // After returning conflicts the connection keeps the lock while it resolves
        // them, so its next vote runs at once against an unchanged database.
        if self.storages[sidx].lock.holder() == Some(id) && c.voted.is_none() {
            if !self.run_vote(id, sidx, msgid, out) {
                self.release_lock(id, sidx, out);
            }
            return Outcome::Later;
        }
        match self.storages[sidx].lock.request(id, now_f64()) {
            Err(e) => Outcome::Error(WireError::storage_transaction(e.message())),
            Ok(true) => {
                if !self.run_vote(id, sidx, msgid, out) {
                    self.release_lock(id, sidx, out);
                }
                Outcome::Later
            }
            Ok(false) => {
                c.pending_vote = Some(msgid);
                log::debug!(target: LOG, "({}) vote waiting for the commit lock", c.peer);
                Outcome::Later
            }
        }
    }

    /// Replay and vote with the lock held by `id`; sends the vote reply. Returns
    /// whether `id` keeps the lock.
    fn run_vote(
        &mut self,
        id: ConnId,
        sidx: usize,
        msgid: Value,
        out: &mut Outbox<Completion>,
    ) -> bool {
        let served = &mut self.storages[sidx];
        served.lock_generation += 1;
        let generation = served.lock_generation;
        let storage = served.storage.clone();
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let Some(t) = c.txn.as_mut() else {
            return false;
        };
        // The newest tid the reply names (conflict serials): a reply may not reveal
        // a sealed transaction before its invalidations went out.
        let mut reveals = Tid::ZERO;
        let (keep, result) = match served.latency.vote.time(|| t.vote(&*storage)) {
            Ok(VoteResult::Voted {
                serials,
                invalidated,
            }) => {
                c.voted = Some(invalidated);
                let items = serials.into_iter().map(VoteItem::Oid).collect();
                (true, Ok(ReplyValue::Vote(items).to_value()))
            }
            Ok(VoteResult::Conflicts(cs)) => {
                reveals = cs.iter().map(|c| c.serials.0).max().unwrap_or(Tid::ZERO);
                let items = cs
                    .into_iter()
                    .map(|c| VoteItem::Conflict {
                        oid: c.oid,
                        serials: c.serials,
                        data: c.data,
                    })
                    .collect();
                // Keep the lock: the client resolves and votes again, and no other
                // commit may slip in between (otherwise a busy object can make the
                // client give up after its retry limit and finish unvoted).
                (true, Ok(ReplyValue::Vote(items).to_value()))
            }
            Err(e) => {
                if let crate::storage::StorageError::Conflict(ci)
                | crate::storage::StorageError::ReadConflict(ci) = &e
                {
                    reveals = ci.serials.0;
                }
                let w = WireError::from_storage(&e);
                if let Some(t) = c.txn.take() {
                    for f in t.blob_files() {
                        let _ = std::fs::remove_file(f);
                    }
                }
                let st = &mut self.storages[sidx].stats;
                st.active_txns = st.active_txns.saturating_sub(1);
                if matches!(e, crate::storage::StorageError::Conflict(_)) {
                    st.conflicts += 1;
                }
                (false, Err(w))
            }
        };
        if reveals > self.storages[sidx].announced {
            self.storages[sidx].held.push((reveals, id, msgid, result));
        } else {
            self.send_reply(out, id, msgid, result);
        }
        if keep {
            if let Some(secs) = self.opts.transaction_timeout {
                let key = self.next_timer;
                self.next_timer += 1;
                self.timeouts.insert(key, (sidx, id, generation));
                out.timer(Instant::now() + Duration::from_secs_f64(secs.max(0.0)), key);
            }
        }
        keep
    }

    /// Release `id`'s lock (or queue place) and hand the lock on to waiters.
    pub(crate) fn release_lock(&mut self, id: ConnId, sidx: usize, out: &mut Outbox<Completion>) {
        if !self.storages[sidx].lock.release(id) {
            return;
        }
        while let Some(next) = self.storages[sidx].lock.grant_next(now_f64()) {
            let msgid = self
                .conns
                .get_mut(&next)
                .and_then(|c| c.pending_vote.take());
            let kept = match msgid {
                Some(m) => self.run_vote(next, sidx, m, out),
                None => false,
            };
            if kept {
                break;
            }
            self.storages[sidx].lock.release(next);
        }
    }

    pub(crate) fn tpc_finish(
        &mut self,
        id: ConnId,
        sidx: usize,
        msgid: Value,
        txn: &Value,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        if c.txn.as_ref().is_none_or(|t| t.id != *txn) {
            return Outcome::Reply(Value::None);
        }
        if c.voted.is_none() {
            // The client finishes a transaction it never voted successfully (its
            // conflict-resolution retries ran out): abort it and free the lock, or
            // nothing else could ever commit.
            self.abort_txn(id, out);
            return Outcome::Error(WireError::assertion_error("finished called wo lock"));
        }
        let invalidated = c.voted.take().unwrap_or_default();
        let handle = c.txn.take().and_then(|mut t| t.handle.take());
        let served = &mut self.storages[sidx];
        served.stats.active_txns = served.stats.active_txns.saturating_sub(1);
        let Some(handle) = handle else {
            self.release_lock(id, sidx, out);
            return Outcome::Error(WireError::assertion_error("finished called wo lock"));
        };
        // Group commit: seal now (status flip, visible in the storage, so the next
        // voter's conflict checks see it) and free the lock; the fsync runs on the
        // serial worker and covers every transaction sealed before it starts. Each
        // is acknowledged (invalidations, `info`, tid) only after its fsync, in tid
        // order; until then clients see `announced`, never the sealed tid.
        let storage = served.storage.clone();
        let result = match storage.tpc_seal(handle) {
            Ok(tid) => {
                served.unacked.push_back(Unacked {
                    tid,
                    conn: id,
                    msgid,
                    invalidated,
                });
                self.start_sync(sidx, out);
                Outcome::Later
            }
            Err(e) => {
                served.stats.aborts += 1;
                log::error!(target: LOG, "({}) tpc_finish failed: {e}", self.peer(id));
                Outcome::Error(WireError::from_storage(&e))
            }
        };
        self.release_lock(id, sidx, out);
        result
    }

    /// Start an fsync of the storage's sealed transactions unless one is running.
    fn start_sync(&mut self, sidx: usize, out: &mut Outbox<Completion>) {
        let served = &mut self.storages[sidx];
        let Some(upto) = served.unacked.back().map(|u| u.tid) else {
            return;
        };
        if served.syncing {
            return;
        }
        served.syncing = true;
        let storage = served.storage.clone();
        out.spawn_serial(move || {
            let started = Instant::now();
            let result = storage.sync_committed();
            Completion::Synced {
                storage: sidx,
                upto,
                result,
                took: started.elapsed(),
            }
        });
    }

    /// An fsync ended: acknowledge (or fail) the sealed transactions it covered, in
    /// tid order: invalidations to every other client, then `info` and the tid to
    /// the committer; then start the next fsync if more were sealed meanwhile.
    pub(crate) fn synced(
        &mut self,
        sidx: usize,
        upto: Tid,
        result: crate::storage::SResult<()>,
        took: Duration,
        out: &mut Outbox<Completion>,
    ) {
        self.storages[sidx].syncing = false;
        loop {
            let served = &mut self.storages[sidx];
            let Some(u) = served.unacked.front() else {
                break;
            };
            if u.tid > upto {
                break;
            }
            let Some(Unacked {
                tid,
                conn,
                msgid,
                invalidated,
            }) = served.unacked.pop_front()
            else {
                break;
            };
            served.latency.finish.observe(took);
            let storage = served.storage.clone();
            let reply = match &result {
                Ok(()) => {
                    served.stats.commits += 1;
                    served.announced = tid;
                    served.invalidations.push(tid, invalidated.clone());
                    let others: Vec<ConnId> = served
                        .registered
                        .iter()
                        .copied()
                        .filter(|c| *c != conn)
                        .collect();
                    let call = ServerCall::InvalidateTransaction {
                        tid,
                        oids: invalidated,
                    };
                    for other in others {
                        self.send_call(out, other, &call);
                    }
                    let info = ServerCall::Info {
                        length: storage.len(),
                        size: storage.size(),
                    };
                    self.send_call(out, conn, &info);
                    Ok(ReplyValue::Tid(tid).to_value())
                }
                Err(e) => {
                    served.stats.aborts += 1;
                    log::error!(target: LOG, "({}) tpc_finish failed: {e}", self.peer(conn));
                    Err(WireError::from_storage(e))
                }
            };
            self.send_reply(out, conn, msgid, reply);
        }
        // Vote replies that named a now acknowledged (or failed) tid may go.
        let announced = self.storages[sidx].announced;
        let failed = result.is_err();
        let held = std::mem::take(&mut self.storages[sidx].held);
        for (tid, conn, msgid, reply) in held {
            if tid <= announced || failed {
                self.send_reply(out, conn, msgid, reply);
            } else {
                self.storages[sidx].held.push((tid, conn, msgid, reply));
            }
        }
        self.start_sync(sidx, out);
    }

    pub(crate) fn tpc_abort(
        &mut self,
        id: ConnId,
        txn: &Value,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        let current = self
            .conns
            .get(&id)
            .and_then(|c| c.txn.as_ref())
            .is_some_and(|t| t.id == *txn);
        if current {
            self.abort_txn(id, out);
        }
        Outcome::Reply(Value::None)
    }

    /// Abort the connection's transaction wherever it is (buffered, queued, voted)
    /// and pass the lock on.
    pub(crate) fn abort_txn(&mut self, id: ConnId, out: &mut Outbox<Completion>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(mut t) = c.txn.take() else {
            return;
        };
        c.voted = None;
        c.pending_vote = None;
        let Some(sidx) = c.storage else {
            return;
        };
        let served = &mut self.storages[sidx];
        if let Some(h) = t.handle.take() {
            served.storage.tpc_abort(h);
        }
        for f in t.blob_files() {
            // Shared-dir files belong to the client's blob tree; remove only ours.
            if served
                .blobs
                .as_ref()
                .is_some_and(|b| f.starts_with(b.tmp_dir()))
            {
                let _ = std::fs::remove_file(f);
            }
        }
        served.stats.aborts += 1;
        served.stats.active_txns = served.stats.active_txns.saturating_sub(1);
        self.release_lock(id, sidx, out);
    }

    /// A transaction-timeout timer fired: close the holder if it still holds the
    /// same lock grant (its close aborts and frees the lock).
    pub(crate) fn transaction_timeout(&mut self, key: u64, out: &mut Outbox<Completion>) {
        let Some((sidx, id, generation)) = self.timeouts.remove(&key) else {
            return;
        };
        let served = &self.storages[sidx];
        if served.lock.holder() != Some(id) || served.lock_generation != generation {
            return;
        }
        let secs = self.opts.transaction_timeout.unwrap_or(0.0);
        log::error!(target: "critical:ZEO.StorageServer", "({}) Transaction timeout after {secs} seconds", self.peer(id));
        out.close(id, format!("transaction timeout after {secs} seconds"));
    }
}

/// `storeBlobShared` file names: a base name ending in `.tmp` or `.tmp` plus one
/// character (what the Python client's `mkstemp` suffix produces).
pub fn shared_name_ok(name: &str) -> bool {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return false;
    }
    if name.ends_with(".tmp") {
        return true;
    }
    let mut chars = name.chars();
    chars.next_back();
    chars.as_str().ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::shared_name_ok;

    #[test]
    fn shared_blob_names() {
        assert!(shared_name_ok("0x00hng55lfw.tmp-"));
        assert!(shared_name_ok("abc.tmp"));
        assert!(!shared_name_ok("../x.tmp"));
        assert!(!shared_name_ok("a/b.tmp"));
        assert!(!shared_name_ok("abc.tmpxy"));
        assert!(!shared_name_ok("abc"));
    }
}
