//! Transactional undo (spec filestorage.md §9): `undo_log` and `undo`.
//!
//! Undo writes, for each record R of the undone transaction, a backpointer to the
//! revision before R (or a zero backpointer when R created the object) in the
//! transaction in progress. Invariants: when a later transaction changed the object
//! to different data, the undo fails with UndoError (we run no Python code, so the
//! conflict-resolution path Python would try is not available); a failed undo leaves
//! the transaction in progress exactly as it was before the call; undo ids are the
//! base64 of the tid without a trailing newline.

use super::commit::Commit;
use super::format::STATUS_UNDONE;
use super::read::Reader;
use super::FileStorage;
use crate::storage::blob::is_blob_record;
use crate::storage::tid::{Oid, Tid};
use crate::storage::undo_id::{tid_to_undo_id, undo_id_to_tid};
use crate::storage::{SResult, StorageError, TxnHandle, UndoEntry};

fn undo_err(msg: impl Into<String>) -> StorageError {
    StorageError::Undo {
        message: msg.into(),
        failures: vec![],
    }
}

/// Data a record stands for, following backpointers; None when the chain ends in 0
/// (Python's `_loadBack_impl` raising POSKeyError).
fn load_back(r: &Reader, oid: Oid, pos: u64) -> SResult<Option<(Vec<u8>, Tid)>> {
    let h = r.header(pos, Some(oid))?;
    if h.plen > 0 {
        return Ok(Some((r.data(pos, &h)?, h.tid)));
    }
    let back = r.back(pos)?;
    Ok(r.resolve(oid, back, pos)?.map(|(d, t, _)| (d, t)))
}

impl FileStorage {
    pub(crate) fn undo_log_impl(&self, first: i64, last: i64) -> SResult<Vec<UndoEntry>> {
        self.check_open()?;
        if self.is_packing() {
            return Err(undo_err(
                "Undo is currently disabled for database maintenance.<p>",
            ));
        }
        let last = if last < 0 {
            first.saturating_sub(last)
        } else {
            last
        };
        let r = self.reader();
        let mut pos = r.end;
        let mut i: i64 = 0;
        let mut out = Vec::new();
        while i < last && pos >= 39 {
            let (tpos, h) = r.txn_before(pos)?;
            pos = tpos;
            if h.status == b'p' {
                break;
            }
            if h.status != b' ' {
                continue;
            }
            if i >= first {
                let (_, meta) = r.txn_meta(tpos)?;
                out.push(UndoEntry {
                    id: tid_to_undo_id(h.tid),
                    tid: h.tid,
                    time: h.tid.time_time(),
                    user_name: meta.user,
                    description: meta.description,
                    size: h.tlen,
                    extension: meta.extension,
                });
            }
            i += 1;
        }
        Ok(out)
    }

    pub(crate) fn undo_impl(&self, txn: &TxnHandle, undo_id: &[u8]) -> SResult<Vec<Oid>> {
        let tid = undo_id_to_tid(undo_id).ok_or_else(|| {
            undo_err(format!(
                "Invalid undo transaction id {:?}",
                String::from_utf8_lossy(undo_id)
            ))
        })?;
        self.with_txn(txn, |c| {
            if c.voted || c.written {
                return Err(StorageError::Transaction(
                    "the transaction has already been voted".into(),
                ));
            }
            let (tpos, h) = self
                .find_txn(tid)?
                .ok_or_else(|| undo_err("Invalid transaction id"))?;
            if h.status != b' ' {
                return Err(undo_err("non-undoable transaction"));
            }
            let saved_len = c.records.len();
            let saved_tindex = c.tindex.clone();
            let saved_order = c.order.len();
            let saved_blobs = c.blob_files.len();
            let res = self.undo_records(c, tpos, &saved_tindex);
            match res {
                Ok(oids) => Ok(oids),
                Err(e) => {
                    c.records.truncate(saved_len);
                    c.tindex = saved_tindex;
                    c.order.truncate(saved_order);
                    if let Some(b) = &self.blobs {
                        for p in c.blob_files.drain(saved_blobs..) {
                            b.remove(&p);
                        }
                    }
                    Err(e)
                }
            }
        })
    }

    fn undo_records(
        &self,
        c: &mut Commit,
        tpos: u64,
        tindex: &std::collections::HashMap<Oid, u64>,
    ) -> SResult<Vec<Oid>> {
        let r = self.reader();
        let (t, _) = r.txn_at(tpos)?;
        if t.header.status == STATUS_UNDONE {
            return Err(undo_err("non-undoable transaction"));
        }
        let mut failures: Vec<(Oid, String)> = Vec::new();
        let mut oids: Vec<Oid> = Vec::new();
        for rec in &t.records {
            let oid = rec.header.oid;
            failures.retain(|(o, _)| *o != oid);
            match self.undo_record(c, &r, tindex, oid, rec.pos, rec.header.prev) {
                Err(StorageError::Undo { message, .. }) => failures.push((oid, message)),
                Err(e) => return Err(e),
                Ok((back, ipos)) => {
                    if back != 0 {
                        if let Some(blobs) = &self.blobs {
                            if let Some((data, serial)) = load_back(&r, oid, back)? {
                                if is_blob_record(&data) {
                                    let p = blobs.copy(oid, serial, c.tid)?;
                                    c.blob_files.push(p);
                                }
                            }
                        }
                    }
                    let tid = c.tid;
                    c.push(oid, tid, ipos, None, back)?;
                    if !oids.contains(&oid) {
                        oids.push(oid);
                    }
                }
            }
        }
        if !failures.is_empty() {
            return Err(StorageError::Undo {
                message: "undo failed".into(),
                failures,
            });
        }
        Ok(oids)
    }

    /// Python's `_transactionalUndoRecord` without conflict resolution: the
    /// backpointer to write and the committed position (for `prev`).
    fn undo_record(
        &self,
        c: &Commit,
        r: &Reader,
        tindex: &std::collections::HashMap<Oid, u64>,
        oid: Oid,
        pos: u64,
        pre: u64,
    ) -> SResult<(u64, u64)> {
        let tpos = tindex.get(&oid).copied().unwrap_or(0);
        let ipos = {
            let st = self.state_read();
            st.index.get(oid).unwrap_or(0)
        };
        let tipos = if tpos != 0 { tpos } else { ipos };
        let mut copy = true;
        if tipos != pos {
            // Current data, from this transaction's own records or the file.
            let (cdataptr, current): (u64, Option<Vec<u8>>) = if tpos != 0 {
                let h = c
                    .header_at(tpos)
                    .ok_or_else(|| undo_err("_loadBack() failed"))?;
                let body = c
                    .body_at(tpos)
                    .ok_or_else(|| undo_err("_loadBack() failed"))?;
                if h.plen > 0 {
                    (tpos, Some(body.to_vec()))
                } else {
                    (super::format::be_u64(body), None)
                }
            } else {
                let h = r.header(ipos, Some(oid))?;
                if h.plen > 0 {
                    (ipos, Some(r.data(ipos, &h)?))
                } else {
                    (r.back(ipos)?, None)
                }
            };
            if cdataptr != pos {
                let undone = load_back(r, oid, pos)?
                    .ok_or_else(|| undo_err("_loadBack() failed"))?
                    .0;
                let current = match current {
                    Some(d) => d,
                    None => {
                        if cdataptr == 0 {
                            return Err(undo_err("_loadBack() failed"));
                        }
                        load_back(r, oid, cdataptr)?
                            .ok_or_else(|| undo_err("_loadBack() failed"))?
                            .0
                    }
                };
                if undone != current {
                    copy = false;
                    if pre == 0 {
                        return Err(undo_err(
                            "Can't undo an add transaction followed by conflicting transactions.",
                        ));
                    }
                }
            }
        }
        if pre == 0 {
            return Ok((0, ipos));
        }
        if copy {
            return Ok((pre, ipos));
        }
        if load_back(r, oid, pre)?.is_none() {
            return Err(undo_err("_loadBack() failed"));
        }
        Err(undo_err("Some data were modified by a later transaction"))
    }
}
