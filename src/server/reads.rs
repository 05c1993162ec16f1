//! Read-side methods of the ZEO service (spec zeo-protocol.md §7, §10-13): loads,
//! history, new_oids, getInvalidations, iterators, record_iternext, get_info,
//! server_status, sendBlob streaming, and the worker-thread methods (pack, undoLog,
//! undoInfo) with their completions.
//!
//! Invariants: iterator ids come from one per-connection counter starting at 0;
//! `sendBlob` sends receiveBlobStart, the 59,000-byte chunks and receiveBlobStop
//! before its reply; pack/undoLog/undoInfo never block the loop thread.

use super::event_loop::{ConnId, Outbox};
use super::served::{now_f64, Kind};
use super::txn::BLOB_CHUNK;
use super::zeo::{BlobStream, Completion, Iter, Outcome, ZeoService};
use crate::protocol::metadata::{
    decode_extension, history_entry, mapping_history_entry, undo_entry, undo_spec_matches,
};
use crate::protocol::reply::{IterRecord, ReplyValue, ServerCall, TxnHeader};
use crate::protocol::{Request, Value, WireError};
use crate::storage::{Oid, PackOutcome, SResult, StorageError, Tid};
use std::io::Read;

fn wire(e: StorageError) -> Outcome {
    Outcome::Error(WireError::from_storage(&e))
}

/// Python's `repr` of a bytes value.
fn bytes_repr(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

impl ZeoService {
    pub(crate) fn read_call(
        &mut self,
        id: ConnId,
        sidx: usize,
        msgid: &Value,
        request: Request,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        use Request as R;
        let storage = self.storages[sidx].storage.clone();
        // Clients see the storage up to the last acknowledged transaction: sealed
        // ones waiting for their group fsync stay hidden from every read below that
        // shows current state (loadSerial and sendBlob need a tid, which only the
        // transaction's own conflict report can reveal).
        let announced = self.storages[sidx].announced;
        let horizon = Tid(announced.0.saturating_add(1));
        match request {
            R::GetInfo => ReplyValue::Info(self.storages[sidx].info()).into(),
            R::LastTransaction => ReplyValue::Tid(announced).into(),
            R::Ping => Outcome::Reply(Value::None),
            R::LoadBefore { oid, before } => {
                self.storages[sidx].stats.loads += 1;
                let latency = &mut self.storages[sidx].latency.load_before;
                let before = before.min(horizon);
                match latency.time(|| storage.load_before(oid, before)) {
                    Ok(r) => ReplyValue::LoadBefore(r.map(|l| {
                        let end = l.end.filter(|e| *e <= announced);
                        (l.data, l.start, end)
                    }))
                    .into(),
                    Err(e) => wire(e),
                }
            }
            R::LoadSerial { oid, serial } => match storage.load_serial(oid, serial) {
                Ok(d) => ReplyValue::Data(d).into(),
                Err(e) => wire(e),
            },
            R::GetTid { oid } => match storage.get_tid(oid) {
                Ok(t) if t <= announced => ReplyValue::Tid(t).into(),
                Ok(_) => match storage.load_before(oid, horizon) {
                    Ok(Some(l)) => ReplyValue::Tid(l.start).into(),
                    Ok(None) => wire(StorageError::pos_key(oid)),
                    Err(e) => wire(e),
                },
                Err(e) => wire(e),
            },
            R::History { oid, size } => {
                let Some(oid) = oid else {
                    return Outcome::Error(WireError::pos_key_none());
                };
                let Some(size) = size else {
                    return Outcome::Error(WireError::type_error(
                        "'>=' not supported between instances of 'int' and 'NoneType'",
                    ));
                };
                let mapping = self.storages[sidx].kind == Kind::Mapping;
                // Ask for more when sealed revisions must be left out.
                let hidden = self.storages[sidx].unacked.len();
                let history = storage
                    .history(oid, (size.max(0) as usize).saturating_add(hidden))
                    .map(|mut es| {
                        es.retain(|e| e.tid <= announced);
                        es.truncate(size.max(1) as usize);
                        es
                    })
                    .and_then(|es| {
                        if es.is_empty() {
                            Err(StorageError::pos_key(oid))
                        } else {
                            Ok(es)
                        }
                    });
                match history {
                    Ok(entries) if mapping => {
                        ReplyValue::Entries(entries.iter().map(mapping_history_entry).collect())
                            .into()
                    }
                    Ok(entries) => {
                        let mut v = Vec::new();
                        for e in &entries {
                            match history_entry(e) {
                                Ok(x) => v.push(x),
                                Err(_) => v.push(undo_like_history(e)),
                            }
                        }
                        ReplyValue::Entries(v).into()
                    }
                    Err(e) => wire(e),
                }
            }
            R::NewOids { n } => {
                if self.conns.get(&id).is_none_or(|c| c.read_only) {
                    return Outcome::Error(WireError::read_only());
                }
                match storage.new_oids(n.clamp(1, 100) as usize) {
                    Ok(o) => ReplyValue::Oids(o).into(),
                    Err(e) => wire(e),
                }
            }
            R::NewOid => Outcome::Error(WireError::attribute_error(
                "'ZEOStorage' object has no attribute 'new_oid'",
            )),
            R::GetInvalidations { tid } => self.get_invalidations(sidx, tid),
            R::Pack { time, wait } => {
                let gc = self.storages[sidx].pack_gc;
                let msgid = wait.then(|| msgid.clone());
                out.spawn(move || Completion::Pack {
                    storage: sidx,
                    conn: id,
                    msgid,
                    result: storage.pack(time, gc),
                });
                if wait {
                    Outcome::Later
                } else {
                    Outcome::Reply(Value::None)
                }
            }
            R::UndoLog { first, last } => self.undo(sidx, id, msgid, first, last, None, out),
            R::UndoInfo {
                first,
                last,
                specification,
            } => self.undo(sidx, id, msgid, first, last, specification, out),
            R::RecordIternext { next } => {
                if self.storages[sidx].kind != Kind::File {
                    return Outcome::Error(WireError::attribute_error(
                        "'MappingStorage' object has no attribute 'record_iternext'",
                    ));
                }
                match storage.record_iternext(next) {
                    Ok(Some(r)) => ReplyValue::RecordIternext {
                        oid: r.oid,
                        tid: r.tid,
                        data: r.data,
                        next: r.next,
                    }
                    .into(),
                    Ok(None) => Outcome::Error(WireError::value_error("empty tree")),
                    Err(e) => wire(e),
                }
            }
            R::IteratorStart { start, stop } => {
                match storage.iterator(start, Some(stop.map_or(announced, |s| s.min(announced)))) {
                    Ok(it) => self.new_iter(id, Iter::Txn { it, last: None }),
                    Err(e) => wire(e),
                }
            }
            R::IteratorNext { iid } => self.iterator_next(id, &iid),
            R::IteratorRecordStart { txn_iid, tid } => {
                self.iterator_record_start(id, &txn_iid, tid)
            }
            R::IteratorRecordNext { iid } => self.iterator_record_next(id, &iid),
            R::IteratorGc { iids } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    for i in iids {
                        if let Some(k) = i.as_int().and_then(|k| i64::try_from(k).ok()) {
                            c.iters.remove(&k);
                        }
                    }
                }
                Outcome::Later
            }
            R::ServerStatus => {
                let timeout = self.opts.transaction_timeout.is_some();
                ReplyValue::Status(self.storages[sidx].status(timeout)).into()
            }
            R::SetClientLabel { label } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.label = Some(match label {
                        Value::Str(s) => s,
                        other => other.to_string(),
                    });
                }
                Outcome::Later
            }
            other => Outcome::Close(format!("{} is not handled here", other.method())),
        }
    }

    fn get_invalidations(&self, sidx: usize, tid: Tid) -> Outcome {
        let served = &self.storages[sidx];
        if let Some(r) = served.invalidations.since(tid) {
            return ReplyValue::Invalidations(Some(r)).into();
        }
        if let Some(age) = self.opts.invalidation_age {
            if now_f64() - tid.time_time() < age {
                return match super::commit::invalidations_from_storage(
                    &*served.storage,
                    tid,
                    served.announced,
                ) {
                    Ok(r) => ReplyValue::Invalidations(r).into(),
                    Err(e) => wire(e),
                };
            }
        }
        ReplyValue::Invalidations(None).into()
    }

    #[allow(clippy::too_many_arguments)]
    fn undo(
        &mut self,
        sidx: usize,
        id: ConnId,
        msgid: &Value,
        first: i64,
        last: i64,
        spec: Option<Vec<(Value, Value)>>,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        if !self.storages[sidx].supports_undo() {
            return ReplyValue::NoUndo.into();
        }
        let storage = self.storages[sidx].storage.clone();
        let msgid = msgid.clone();
        let announced = self.storages[sidx].announced;
        out.spawn(move || {
            let result = undo_entries(&*storage, first, last, spec.as_deref(), announced);
            Completion::Reply {
                conn: id,
                msgid,
                result,
            }
        });
        Outcome::Later
    }

    pub(crate) fn pack_done(
        &mut self,
        sidx: usize,
        conn: ConnId,
        msgid: Option<Value>,
        result: SResult<PackOutcome>,
        out: &mut Outbox<Completion>,
    ) {
        let ok = result.is_ok();
        if let Err(e) = &result {
            log::error!(target: super::zeo::LOG, "pack of storage {:?} failed: {e}", self.storages[sidx].name);
        }
        // The new size goes to every registered client (the packer included) before
        // the pack reply, as runzeo does: a client reading len(storage) right after
        // pack() returns must see the packed length.
        if ok {
            let s = &self.storages[sidx];
            let info = ServerCall::Info {
                length: s.storage.len(),
                size: s.storage.size(),
            };
            let ids: Vec<ConnId> = s.registered.iter().copied().collect();
            for c in ids {
                self.send_call(out, c, &info);
            }
        }
        if let Some(m) = msgid {
            let r = result
                .map(|_| Value::None)
                .map_err(|e| WireError::from_storage(&e));
            self.send_reply(out, conn, m, r);
        }
    }

    fn new_iter(&mut self, id: ConnId, it: Iter) -> Outcome {
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        let iid = c.next_iid;
        c.next_iid += 1;
        c.iters.insert(iid, it);
        ReplyValue::IteratorId(iid).into()
    }

    fn iterator_next(&mut self, id: ConnId, iid: &Value) -> Outcome {
        let key = iid.as_int().and_then(|k| i64::try_from(k).ok());
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        let Some(Iter::Txn { it, last }) = key.and_then(|k| c.iters.get_mut(&k)) else {
            return Outcome::Error(WireError::key_error(iid.clone()));
        };
        match it.next() {
            Some(Ok(t)) => {
                let header = TxnHeader {
                    tid: t.tid,
                    status: t.status,
                    user: t.meta.user.clone(),
                    description: t.meta.description.clone(),
                    extension: decode_extension(&t.meta.extension).unwrap_or_default(),
                };
                *last = Some(t);
                ReplyValue::IteratorNext(Some(header)).into()
            }
            Some(Err(e)) => wire(e),
            None => {
                if let Some(k) = key {
                    c.iters.remove(&k);
                }
                ReplyValue::IteratorNext(None).into()
            }
        }
    }

    fn iterator_record_start(&mut self, id: ConnId, txn_iid: &Value, tid: Tid) -> Outcome {
        let key = txn_iid.as_int().and_then(|k| i64::try_from(k).ok());
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        let Some(Iter::Txn { last, .. }) = key.and_then(|k| c.iters.get(&k)) else {
            return Outcome::Error(WireError::key_error(txn_iid.clone()));
        };
        match last {
            Some(t) if t.tid == tid => {
                let records = t.records.clone();
                self.new_iter(id, Iter::Records(records.into_iter()))
            }
            _ => Outcome::Error(WireError::exception(format!(
                "Out-of-order request for record iterator for transaction {}",
                bytes_repr(&tid.to_bytes())
            ))),
        }
    }

    fn iterator_record_next(&mut self, id: ConnId, iid: &Value) -> Outcome {
        let key = iid.as_int().and_then(|k| i64::try_from(k).ok());
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        let Some(Iter::Records(it)) = key.and_then(|k| c.iters.get_mut(&k)) else {
            return Outcome::Error(WireError::key_error(iid.clone()));
        };
        match it.next() {
            Some(r) => ReplyValue::IteratorRecord(Some(IterRecord {
                oid: r.oid,
                tid: r.tid,
                data: r.data,
                data_txn: r.data_txn,
            }))
            .into(),
            None => {
                if let Some(k) = key {
                    c.iters.remove(&k);
                }
                ReplyValue::IteratorRecord(None).into()
            }
        }
    }

    pub(crate) fn send_blob(
        &mut self,
        id: ConnId,
        sidx: usize,
        oid: Oid,
        serial: Tid,
        msgid: &Value,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        let storage = self.storages[sidx].storage.clone();
        let file = match storage.load_blob(oid, serial).and_then(|p| {
            std::fs::File::open(&p)
                .map_err(|e| StorageError::io(format!("opening {}", p.display()), e))
        }) {
            Ok(f) => f,
            Err(e) => {
                log::debug!(target: super::zeo::LOG, "sendBlob: {e}");
                return Outcome::Error(WireError::pos_key_blob(oid, serial));
            }
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        c.blob_streams.push_back(BlobStream {
            file,
            oid,
            serial,
            msgid: msgid.clone(),
            started: false,
        });
        if c.blob_streams.len() == 1 {
            self.pump_blobs(id, out);
        }
        Outcome::Later
    }

    /// Send the next batch of the connection's blob streams; ask to be called again
    /// when the output has drained. Each stream is receiveBlobStart, its chunks,
    /// receiveBlobStop, then the `None` reply.
    pub(crate) fn pump_blobs(&mut self, id: ConnId, out: &mut Outbox<Completion>) {
        let mut budget = self.opts.blob_batch.max(BLOB_CHUNK);
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(stream) = c.blob_streams.front_mut() else {
                return;
            };
            let (oid, serial) = (stream.oid, stream.serial);
            if !stream.started {
                stream.started = true;
                self.send_call(out, id, &ServerCall::ReceiveBlobStart { oid, serial });
                continue;
            }
            if budget == 0 {
                out.when_drained(id);
                return;
            }
            let mut chunk = vec![0u8; BLOB_CHUNK];
            let mut n = 0;
            let mut failed = None;
            while n < BLOB_CHUNK {
                match stream.file.read(&mut chunk[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                log::error!(target: super::zeo::LOG, "reading blob for sendBlob: {e}");
                out.close(id, format!("cannot read a blob file: {e}"));
                return;
            }
            if n > 0 {
                chunk.truncate(n);
                budget = budget.saturating_sub(n);
                self.send_call(
                    out,
                    id,
                    &ServerCall::ReceiveBlobChunk { oid, serial, chunk },
                );
                continue;
            }
            // End of this blob.
            let msgid = stream.msgid.clone();
            c.blob_streams.pop_front();
            self.send_call(out, id, &ServerCall::ReceiveBlobStop { oid, serial });
            self.send_reply(out, id, msgid, Ok(Value::None));
        }
    }
}

/// A history entry whose extension does not decode: the standard keys only.
fn undo_like_history(e: &crate::storage::HistoryEntry) -> Value {
    let mut plain = e.clone();
    plain.extension = Vec::new();
    history_entry(&plain).unwrap_or(Value::None)
}

/// undoLog/undoInfo: entries `[first, last)` (negative `last`: `-last` entries from
/// `first`) of the transactions matching `spec`, newest first.
fn undo_entries(
    storage: &dyn crate::storage::Storage,
    first: i64,
    last: i64,
    spec: Option<&[(Value, Value)]>,
    announced: Tid,
) -> Result<Value, WireError> {
    // Transactions sealed after `announced` (waiting for their group fsync) are
    // left out; they are the newest, so without a filter only the window moves.
    let hidden =
        |es: &[crate::storage::UndoEntry]| es.iter().take_while(|e| e.tid > announced).count();
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        let probe = storage
            .undo_log(0, 64)
            .map_err(|e| WireError::from_storage(&e))?;
        let skip = hidden(&probe) as i64;
        let (first, last) = if last < 0 {
            (first + skip, last)
        } else {
            (first + skip, last + skip)
        };
        return storage
            .undo_log(first, last)
            .map(|es| {
                Value::List(
                    es.iter()
                        .filter(|e| e.tid <= announced)
                        .map(undo_entry)
                        .collect(),
                )
            })
            .map_err(|e| WireError::from_storage(&e));
    };
    let mut all = storage
        .undo_log(0, i64::MAX / 2)
        .map_err(|e| WireError::from_storage(&e))?;
    all.retain(|e| e.tid <= announced);
    let end = if last < 0 {
        first.saturating_sub(last)
    } else {
        last
    };
    let mut out = Vec::new();
    let mut i = 0i64;
    for e in &all {
        if i >= end {
            break;
        }
        let v = undo_entry(e);
        if undo_spec_matches(spec, &v)? {
            if i >= first {
                out.push(v);
            }
            i += 1;
        }
    }
    Ok(Value::List(out))
}
