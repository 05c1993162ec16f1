//! Read paths (spec filestorage.md §6): load, loadBefore, loadSerial, getTid,
//! history, record_iternext, lastInvalidations and the transaction iterator.
//!
//! Every read copies `(file handle, end, index position)` out of the state lock and
//! then uses positioned reads, so readers never serialize. Invariants: every record
//! read at an index position must carry the requested oid (else `Corrupted`); walks
//! along `prev` and backpointer chains require strictly decreasing positions, so a
//! damaged file cannot make them loop; no allocation is larger than the committed
//! file area.

use std::path::PathBuf;
use std::sync::Arc;

use super::format::{
    self, DataHeader, TxnHeader, DATA_HEADER_LEN, STATUS_CHECKPOINT, STATUS_UNDONE, TXN_HEADER_LEN,
};
use super::io::DataFile;
use super::FileStorage;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{
    CurrentRecord, DataRecord, HistoryEntry, LoadBefore, SResult, StorageError, TransactionRecord,
    TxnIter, TxnMeta,
};

/// Bytes read speculatively after a record header on loads (most pickles fit).
const READ_AHEAD: u64 = 1024;

/// A consistent view for positioned reads: the data file and the committed end.
#[derive(Clone)]
pub(crate) struct Reader {
    pub file: Arc<dyn DataFile>,
    pub end: u64,
    pub path: PathBuf,
}

impl Reader {
    fn corrupted(&self, offset: u64, what: impl Into<String>) -> StorageError {
        StorageError::Corrupted {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    fn read(&self, pos: u64, n: u64) -> SResult<Vec<u8>> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= self.end)
            .ok_or_else(|| {
                self.corrupted(
                    pos,
                    format!(
                        "{n} bytes at {pos} run past the end of committed data ({})",
                        self.end
                    ),
                )
            })?;
        let _ = end;
        let mut buf = vec![0u8; n as usize];
        self.file.read_exact_at(&mut buf, pos).map_err(|e| {
            StorageError::io(format!("reading {} at {pos}", self.path.display()), e)
        })?;
        Ok(buf)
    }

    /// The data record header at `pos`; if `oid` is given it must match.
    pub fn header(&self, pos: u64, oid: Option<Oid>) -> SResult<DataHeader> {
        let b = self.read(pos, DATA_HEADER_LEN)?;
        self.check_header(pos, &b, oid)
    }

    fn check_header(&self, pos: u64, b: &[u8], oid: Option<Oid>) -> SResult<DataHeader> {
        let h =
            DataHeader::decode(b).ok_or_else(|| self.corrupted(pos, "short data record header"))?;
        if let Some(o) = oid {
            if h.oid != o {
                return Err(self.corrupted(
                    pos,
                    format!("expected a data record for oid {o}, found oid {}", h.oid),
                ));
            }
        }
        if h.vlen != 0 {
            return Err(self.corrupted(pos, "data record has a version"));
        }
        Ok(h)
    }

    /// Data of a record with `plen > 0`.
    pub fn data(&self, pos: u64, h: &DataHeader) -> SResult<Vec<u8>> {
        self.read(pos + DATA_HEADER_LEN, h.plen)
    }

    /// Backpointer of a record with `plen == 0`.
    pub fn back(&self, pos: u64) -> SResult<u64> {
        let b = self.read(pos + DATA_HEADER_LEN, 8)?;
        Ok(format::be_u64(&b))
    }

    /// Follow backpointers from `back` until a record with data: `(data, tid of that
    /// record, its position)`; None when the chain ends in 0.
    pub fn resolve(
        &self,
        oid: Oid,
        mut back: u64,
        from: u64,
    ) -> SResult<Option<(Vec<u8>, Tid, u64)>> {
        let mut last = from;
        loop {
            if back == 0 {
                return Ok(None);
            }
            if back >= last {
                return Err(self.corrupted(
                    last,
                    format!("backpointer {back} does not point before the record"),
                ));
            }
            let h = self.header(back, Some(oid))?;
            if h.plen > 0 {
                return Ok(Some((self.data(back, &h)?, h.tid, back)));
            }
            last = back;
            back = self.back(back)?;
        }
    }

    /// The header at `pos` plus up to `extra` bytes after it, read with one `pread`
    /// (a load then usually needs no second system call).
    pub fn header_ahead(&self, pos: u64, oid: Oid, extra: u64) -> SResult<(DataHeader, Vec<u8>)> {
        let avail = self.end.saturating_sub(pos);
        if avail < DATA_HEADER_LEN {
            return Ok((self.header(pos, Some(oid))?, Vec::new()));
        }
        let buf = self.read(pos, avail.min(DATA_HEADER_LEN + extra))?;
        let h = self.check_header(pos, &buf, Some(oid))?;
        Ok((h, buf))
    }

    /// [`Reader::record_state`] using bytes already read by [`Reader::header_ahead`].
    pub fn record_state_ahead(
        &self,
        pos: u64,
        h: &DataHeader,
        buf: &[u8],
    ) -> SResult<Option<Vec<u8>>> {
        let body = DATA_HEADER_LEN as usize;
        if h.plen > 0 {
            if let Some(d) = usize::try_from(h.plen)
                .ok()
                .and_then(|n| buf.get(body..body.checked_add(n)?))
            {
                return Ok(Some(d.to_vec()));
            }
            return Ok(Some(self.data(pos, h)?));
        }
        let back = match buf.get(body..body + 8) {
            Some(b) => format::be_u64(b),
            None => self.back(pos)?,
        };
        Ok(self.resolve(h.oid, back, pos)?.map(|r| r.0))
    }

    /// The state a record stands for: its data or the resolved backpointer.
    pub fn record_state(&self, pos: u64, h: &DataHeader) -> SResult<Option<Vec<u8>>> {
        if h.plen > 0 {
            return Ok(Some(self.data(pos, h)?));
        }
        let back = self.back(pos)?;
        Ok(self.resolve(h.oid, back, pos)?.map(|r| r.0))
    }

    /// The transaction header and metadata at `tpos`.
    pub fn txn_meta(&self, tpos: u64) -> SResult<(TxnHeader, TxnMeta)> {
        let b = self.read(tpos, TXN_HEADER_LEN)?;
        let h = TxnHeader::decode(&b)
            .ok_or_else(|| self.corrupted(tpos, "short transaction header"))?;
        let m = self.read(tpos + TXN_HEADER_LEN, h.header_len() - TXN_HEADER_LEN)?;
        let (u, rest) = m.split_at(h.ulen as usize);
        let (d, e) = rest.split_at(h.dlen as usize);
        Ok((
            h,
            TxnMeta {
                user: u.to_vec(),
                description: d.to_vec(),
                extension: e.to_vec(),
            },
        ))
    }

    /// Position of the transaction that ends at `e` (walking backwards).
    pub fn txn_before(&self, e: u64) -> SResult<(u64, TxnHeader)> {
        let tl_pos = e
            .checked_sub(8)
            .filter(|&p| p >= 4)
            .ok_or_else(|| self.corrupted(e, "no transaction ends here"))?;
        let b = self.read(tl_pos, 8)?;
        let tl = format::be_u64(&b);
        let pos = e
            .checked_sub(8)
            .and_then(|x| x.checked_sub(tl))
            .filter(|&p| p >= 4)
            .ok_or_else(|| {
                self.corrupted(
                    e - 8,
                    format!("trailing transaction length {tl} points before the start of the file"),
                )
            })?;
        let hb = self.read(pos, TXN_HEADER_LEN)?;
        let h = TxnHeader::decode(&hb)
            .ok_or_else(|| self.corrupted(pos, "short transaction header"))?;
        if h.tlen != tl {
            return Err(self.corrupted(
                pos,
                format!(
                    "transaction length {} differs from the trailing length {tl}",
                    h.tlen
                ),
            ));
        }
        Ok((pos, h))
    }

    /// The whole transaction record at `pos` (header through trailing length), parsed.
    pub fn txn_at(&self, pos: u64) -> SResult<(format::ParsedTxn, Vec<u8>)> {
        let hb = self.read(pos, TXN_HEADER_LEN)?;
        let h = TxnHeader::decode(&hb)
            .ok_or_else(|| self.corrupted(pos, "short transaction header"))?;
        let total = h
            .tlen
            .checked_add(8)
            .ok_or_else(|| self.corrupted(pos, "transaction length overflows"))?;
        let buf = self.read(pos, total)?;
        let t = format::parse_txn(&buf, pos).map_err(|(off, what)| self.corrupted(off, what))?;
        Ok((t, buf))
    }

    /// Iterator-style record for one parsed record.
    fn iter_record(&self, buf: &[u8], r: &format::ParsedRecord) -> SResult<DataRecord> {
        let h = &r.header;
        if let Some(back) = r.back {
            if back == 0 {
                return Ok(DataRecord {
                    oid: h.oid,
                    tid: h.tid,
                    data: None,
                    data_txn: None,
                });
            }
            let bh = self.header(back, Some(h.oid))?;
            let data = self.resolve(h.oid, back, r.pos)?.map(|x| x.0);
            return Ok(DataRecord {
                oid: h.oid,
                tid: h.tid,
                data,
                data_txn: Some(bh.tid),
            });
        }
        let d = buf
            .get(r.body_off..r.body_off + h.plen as usize)
            .ok_or_else(|| self.corrupted(r.pos, "record data out of range"))?;
        Ok(DataRecord {
            oid: h.oid,
            tid: h.tid,
            data: Some(d.to_vec()),
            data_txn: None,
        })
    }
}

/// Iterator over committed transactions (`iterator(start, stop)`).
pub(crate) struct FsIter {
    reader: Reader,
    pos: u64,
    start: Option<Tid>,
    stop: Option<Tid>,
    done: bool,
}

impl Iterator for FsIter {
    type Item = SResult<TransactionRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.pos.saturating_add(TXN_HEADER_LEN) > self.reader.end {
                return None;
            }
            let r = &self.reader;
            let hb = match r.read(self.pos, TXN_HEADER_LEN) {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let h = TxnHeader::decode(&hb)?;
            if h.status == STATUS_CHECKPOINT || h.end(self.pos).is_none_or(|e| e > r.end) {
                log::warn!(
                    "{}: iteration stops at incomplete transaction at {}",
                    r.path.display(),
                    self.pos
                );
                self.done = true;
                return None;
            }
            let pos = self.pos;
            self.pos = pos + h.tlen + 8;
            if self.stop.is_some_and(|s| h.tid > s) {
                self.done = true;
                return None;
            }
            if self.start.is_some_and(|s| h.tid < s) || h.status == STATUS_UNDONE {
                continue;
            }
            let res = (|| {
                let (t, buf) = r.txn_at(pos)?;
                let records = t
                    .records
                    .iter()
                    .map(|rec| r.iter_record(&buf, rec))
                    .collect::<SResult<Vec<_>>>()?;
                Ok(TransactionRecord {
                    tid: t.header.tid,
                    status: t.header.status,
                    meta: TxnMeta {
                        user: t.user,
                        description: t.description,
                        extension: t.extension,
                    },
                    records,
                })
            })();
            if res.is_err() {
                self.done = true;
            }
            return Some(res);
        }
    }
}

impl FileStorage {
    pub(crate) fn reader(&self) -> Reader {
        let st = self.state_read();
        Reader {
            file: st.file.clone(),
            end: st.end,
            path: self.path.clone(),
        }
    }

    /// Reader plus the committed position of `oid` (POSKeyError if unknown).
    pub(crate) fn lookup(&self, oid: Oid) -> SResult<(Reader, u64)> {
        let st = self.state_read();
        let pos = st
            .index
            .get(oid)
            .ok_or_else(|| StorageError::pos_key(oid))?;
        Ok((
            Reader {
                file: st.file.clone(),
                end: st.end,
                path: self.path.clone(),
            },
            pos,
        ))
    }

    pub(crate) fn load_impl(&self, oid: Oid) -> SResult<(Vec<u8>, Tid)> {
        let (r, pos) = self.lookup(oid)?;
        let (h, buf) = r.header_ahead(pos, oid, READ_AHEAD)?;
        let data = r
            .record_state_ahead(pos, &h, &buf)?
            .ok_or_else(|| StorageError::pos_key(oid))?;
        Ok((data, h.tid))
    }

    pub(crate) fn load_before_impl(&self, oid: Oid, before: Tid) -> SResult<Option<LoadBefore>> {
        let (r, mut pos) = self.lookup(oid)?;
        let mut end = None;
        loop {
            let (h, buf) = r.header_ahead(pos, oid, READ_AHEAD)?;
            if h.tid < before {
                let data = r
                    .record_state_ahead(pos, &h, &buf)?
                    .ok_or_else(|| StorageError::pos_key(oid))?;
                return Ok(Some(LoadBefore {
                    data,
                    start: h.tid,
                    end,
                }));
            }
            end = Some(h.tid);
            if h.prev == 0 {
                return Ok(None);
            }
            if h.prev >= pos {
                return Err(r.corrupted(
                    pos,
                    format!(
                        "previous-record pointer {} does not point before the record",
                        h.prev
                    ),
                ));
            }
            pos = h.prev;
        }
    }

    pub(crate) fn load_serial_impl(&self, oid: Oid, serial: Tid) -> SResult<Vec<u8>> {
        let (r, mut pos) = self.lookup(oid)?;
        let missing = || StorageError::PosKey {
            oid,
            serial: Some(serial),
        };
        loop {
            let h = r.header(pos, Some(oid))?;
            if h.tid == serial {
                return r.record_state(pos, &h)?.ok_or_else(missing);
            }
            if h.tid < serial || h.prev == 0 {
                return Err(missing());
            }
            if h.prev >= pos {
                return Err(r.corrupted(pos, "previous-record pointer does not point backwards"));
            }
            pos = h.prev;
        }
    }

    pub(crate) fn get_tid_impl(&self, oid: Oid) -> SResult<Tid> {
        let (r, pos) = self.lookup(oid)?;
        let h = r.header(pos, Some(oid))?;
        if h.plen == 0 && r.back(pos)? == 0 {
            return Err(StorageError::pos_key(oid));
        }
        Ok(h.tid)
    }

    pub(crate) fn history_impl(&self, oid: Oid, size: usize) -> SResult<Vec<HistoryEntry>> {
        let (r, mut pos) = self.lookup(oid)?;
        let mut out = Vec::new();
        while out.len() < size {
            let h = r.header(pos, Some(oid))?;
            let (_, meta) = r.txn_meta(h.tloc)?;
            out.push(HistoryEntry {
                tid: h.tid,
                time: h.tid.time_time(),
                user_name: meta.user,
                description: meta.description,
                size: h.plen,
                extension: meta.extension,
            });
            if h.prev == 0 {
                break;
            }
            if h.prev >= pos {
                return Err(r.corrupted(pos, "previous-record pointer does not point backwards"));
            }
            pos = h.prev;
        }
        Ok(out)
    }

    pub(crate) fn record_iternext_impl(
        &self,
        start: Option<Oid>,
    ) -> SResult<Option<CurrentRecord>> {
        let (oid, next) = {
            let st = self.state_read();
            let mut it = st.index.iter_from(start.unwrap_or(Oid(0)));
            match it.next() {
                Some((o, _)) => (o, it.next().map(|x| x.0)),
                None => return Ok(None),
            }
        };
        let (data, tid) = self.load_impl(oid)?;
        Ok(Some(CurrentRecord {
            oid,
            tid,
            data,
            next,
        }))
    }

    pub(crate) fn iterator_impl(&self, start: Option<Tid>, stop: Option<Tid>) -> SResult<TxnIter> {
        self.check_open()?;
        let (reader, last_tid) = {
            let st = self.state_read();
            (
                Reader {
                    file: st.file.clone(),
                    end: st.end,
                    path: self.path.clone(),
                },
                st.last_tid,
            )
        };
        let pos = match start {
            Some(s) => start_position(&reader, s, last_tid)?,
            None => 4,
        };
        Ok(Box::new(FsIter {
            reader,
            pos,
            start,
            stop,
            done: false,
        }))
    }

    pub(crate) fn last_invalidations_impl(&self, n: usize) -> SResult<Vec<(Tid, Vec<Oid>)>> {
        let r = self.reader();
        let mut pos = r.end;
        let mut count = n;
        while count > 0 && pos > 4 {
            count -= 1;
            pos = r.txn_before(pos)?.0;
        }
        let it = FsIter {
            reader: r,
            pos,
            start: None,
            stop: None,
            done: false,
        };
        it.map(|t| t.map(|t| (t.tid, t.records.iter().map(|x| x.oid).collect())))
            .collect()
    }
}

/// Where iteration from tid `start` should begin: walk backwards from the end when
/// `start` is nearer in time to the last transaction than to the first (as Python's
/// FileIterator does), else start at the beginning and skip forwards.
fn start_position(r: &Reader, start: Tid, last_tid: Tid) -> SResult<u64> {
    if r.end <= 4 {
        return Ok(4);
    }
    let hb = r.read(4, TXN_HEADER_LEN)?;
    let first = TxnHeader::decode(&hb).map_or(Tid::ZERO, |h| h.tid);
    if start <= first || start.0 - first.0 <= last_tid.0.saturating_sub(start.0) {
        return Ok(4);
    }
    let mut e = r.end;
    while e > 4 {
        let (pos, h) = r.txn_before(e)?;
        if h.tid < start {
            return Ok(e);
        }
        e = pos;
    }
    Ok(4)
}

/// Parse a whole Data.fs image in memory, returning every transaction (used by the
/// fuzz target and robustness tests). Never panics.
pub fn parse_image(buf: &[u8]) -> Result<Vec<format::ParsedTxn>, (u64, String)> {
    if buf.get(..4) != Some(&format::MAGIC[..]) {
        return Err((0, "bad magic".into()));
    }
    let mut pos = 4usize;
    let mut out = Vec::new();
    while pos < buf.len() {
        let h = TxnHeader::decode(&buf[pos..])
            .ok_or((pos as u64, "short transaction header".to_string()))?;
        let end = h
            .end(pos as u64)
            .and_then(|e| usize::try_from(e).ok())
            .filter(|&e| e <= buf.len())
            .ok_or((pos as u64, "transaction runs past end of file".to_string()))?;
        out.push(format::parse_txn(&buf[pos..end], pos as u64)?);
        pos = end;
    }
    Ok(out)
}
