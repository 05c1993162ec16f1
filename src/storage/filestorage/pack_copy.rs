//! Pack phases 3 and 4 (spec filestorage.md §10.4–10.5, Python's
//! `FileStoragePacker.copyToPacktime` / `copyRest` and `PackCopier`): writing
//! `P.pack`.
//!
//! Invariants: the output is written strictly sequentially through [`PackOut`] (a
//! bounded write buffer; earlier bytes are patched in place only for a transaction's
//! length); `index` always maps each oid to its latest record in the output;
//! `txns` lists `(tid, position)` of every output transaction in file order, so the
//! backpointer search of phase 4 (Python walks the output backwards comparing tids)
//! is a binary search. Bytes written are exactly what Python's packer writes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::format::{DataHeader, ParsedTxn, TxnHeader, DATA_HEADER_LEN, TXN_HEADER_LEN};
use super::index::{Index, MAX_POS};
use super::pack_gc::{fetch_via_back, Reach, TxnScanner};
use super::read::Reader;
use crate::storage::blob::is_blob_record;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{SResult, StorageError};

const FLUSH_AT: usize = 4 << 20;

/// The `P.pack` file being written.
pub(crate) struct PackOut {
    pub path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    pub index: Index,
    txns: Vec<(Tid, u64)>,
}

impl PackOut {
    pub fn create(path: PathBuf, magic: &[u8]) -> SResult<PackOut> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))?;
        Ok(PackOut {
            path,
            file,
            buf: magic.to_vec(),
            base: 0,
            index: Index::new(),
            txns: Vec::new(),
        })
    }

    fn io(&self, what: &str, e: std::io::Error) -> StorageError {
        StorageError::io(format!("{what} {}", self.path.display()), e)
    }

    /// Position of the next byte written.
    pub fn pos(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn write(&mut self, b: &[u8]) -> SResult<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn patch(&mut self, at: u64, b: &[u8]) -> SResult<()> {
        if at >= self.base {
            let o = (at - self.base) as usize;
            self.buf[o..o + b.len()].copy_from_slice(b);
            Ok(())
        } else {
            self.file
                .write_all_at(b, at)
                .map_err(|e| self.io("writing", e))
        }
    }

    pub fn flush(&mut self) -> SResult<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.base)
                .map_err(|e| self.io("writing", e))?;
            self.base += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Flush and fsync; returns the file size.
    pub fn finish(&mut self) -> SResult<u64> {
        self.flush()?;
        self.file.sync_all().map_err(|e| self.io("syncing", e))?;
        Ok(self.base)
    }

    /// Read back `n` bytes of the output at `pos`.
    fn read(&mut self, pos: u64, n: usize) -> SResult<Vec<u8>> {
        if pos + n as u64 > self.base {
            self.flush()?;
        }
        let mut v = vec![0u8; n];
        self.file
            .read_exact_at(&mut v, pos)
            .map_err(|e| self.io("reading back", e))?;
        Ok(v)
    }

    fn write_txn_header(&mut self, t: &ParsedTxn, status: u8) -> SResult<u64> {
        let pos = self.pos();
        if pos > MAX_POS {
            return Err(StorageError::Pack(format!(
                "{} would exceed 2^48 bytes",
                self.path.display()
            )));
        }
        let mut h = t.header;
        h.status = status;
        self.write(&h.encode())?;
        self.write(&t.user)?;
        self.write(&t.description)?;
        self.write(&t.extension)?;
        self.txns.push((h.tid, pos));
        Ok(pos)
    }

    fn write_record(&mut self, h: &DataHeader, data: Option<&[u8]>, back: u64) -> SResult<u64> {
        let pos = self.pos();
        let mut h = *h;
        h.plen = data.map_or(0, |d| d.len() as u64);
        self.write(&h.encode())?;
        match data {
            Some(d) if !d.is_empty() => self.write(d)?,
            _ => self.write(&back.to_be_bytes())?,
        }
        Ok(pos)
    }

    /// `PackCopier._txn_find` + `_data_find`: the output record a backpointer to the
    /// revision of `oid` committed by `tid` should point to (0: write data inline).
    fn find_back(&mut self, tid: Tid, oid: Oid, data: Option<&[u8]>) -> SResult<u64> {
        let tpos = match self.txns.binary_search_by_key(&tid, |x| x.0) {
            Ok(i) => self.txns[i].1,
            Err(_) => {
                return Err(StorageError::Pack(format!(
                    "Invalid backpointer transaction id {tid:?}"
                )))
            }
        };
        let th = TxnHeader::decode(&self.read(tpos, TXN_HEADER_LEN as usize)?)
            .ok_or_else(|| StorageError::Pack("short transaction header in output".into()))?;
        let tend = tpos + th.tlen;
        let mut pos = tpos + th.header_len();
        while pos < tend {
            let h = DataHeader::decode(&self.read(pos, DATA_HEADER_LEN as usize)?)
                .ok_or_else(|| StorageError::Pack("short data header in output".into()))?;
            if h.oid == oid {
                if h.plen == 0 {
                    return Ok(pos);
                }
                let Some(d) = data else { return Ok(0) };
                if h.plen != d.len() as u64 {
                    log::error!("Mismatch between data and backpointer at {pos}");
                    return Ok(0);
                }
                let stored = self.read(pos + DATA_HEADER_LEN, d.len())?;
                return Ok(if stored == d { pos } else { 0 });
            }
            pos += h.record_len().unwrap_or(u64::MAX / 2);
        }
        Ok(0)
    }
}

/// Phase 3: copy the reachable revisions before `reach.packpos` into packed
/// transactions. Returns the output position after the last copied transaction.
/// Unreachable blob records are listed in `removed` (Python's `.removed` lines).
pub(crate) fn copy_to_packtime(
    r: &Reader,
    reach: &Reach,
    out: &mut PackOut,
    mut removed: Option<&mut Vec<u8>>,
) -> SResult<u64> {
    let mut sc = TxnScanner::new(r);
    let mut pos = 4u64;
    let mut new_pos = out.pos();
    while pos < reach.packpos {
        let (t, buf) = sc.txn(pos)?;
        let mut new_tpos = None;
        // Records are handled from a copy of what we need so `sc` can be reused.
        let mut kept: Vec<(DataHeader, Option<Vec<u8>>)> = Vec::new();
        for rec in &t.records {
            let oid = rec.header.oid;
            let inline = (rec.header.plen > 0)
                .then(|| &buf[rec.body_off..rec.body_off + rec.header.plen as usize]);
            if !reach.is_reachable(oid, rec.pos) {
                if let Some(lines) = removed.as_deref_mut() {
                    let data = match inline {
                        Some(d) => Some(d.to_vec()),
                        None => fetch_via_back(r, oid, rec.back.unwrap_or(0), rec.pos)?,
                    };
                    if data.as_deref().is_some_and(is_blob_record) {
                        let rpos = reach.reachable.get(&oid).copied();
                        let is_dup = match rpos {
                            Some(p) if p != 0 => r.header(p, None)?.tid == rec.header.tid,
                            _ => false,
                        };
                        if !is_dup {
                            let mut key = oid.to_bytes().to_vec();
                            if rpos.is_some() {
                                key.extend_from_slice(&rec.header.tid.to_bytes());
                            }
                            for b in key {
                                lines.extend_from_slice(format!("{b:02x}").as_bytes());
                            }
                            lines.push(b'\n');
                        }
                    }
                }
                continue;
            }
            let data = match inline {
                Some(d) => Some(d.to_vec()),
                None => fetch_via_back(r, oid, rec.back.unwrap_or(0), rec.pos)?,
            };
            kept.push((rec.header, data));
        }
        let (tlen_orig, next) = (t.header.tlen, pos + t.header.tlen + 8);
        for (h, data) in kept {
            let tpos = match new_tpos {
                Some(p) => p,
                None => {
                    let p = out.write_txn_header(&t, b'p')?;
                    new_tpos = Some(p);
                    p
                }
            };
            let nh = DataHeader {
                prev: 0,
                tloc: tpos,
                ..h
            };
            let rpos = out.write_record(&nh, data.as_deref(), 0)?;
            out.index.insert(h.oid, rpos);
        }
        let _ = tlen_orig;
        if let Some(tpos) = new_tpos {
            new_pos = out.pos() + 8;
            let tlen = new_pos - tpos - 8;
            out.patch(tpos + 8, &tlen.to_be_bytes())?;
            out.write(&tlen.to_be_bytes())?;
        }
        pos = next;
    }
    Ok(new_pos)
}

/// Phase 4, one transaction (`copyOne`): copy the transaction at `ipos` of `r`
/// unchanged except for positions; returns the input position after it.
pub(crate) fn copy_one(
    r: &Reader,
    sc: &mut TxnScanner<'_>,
    out: &mut PackOut,
    ipos: u64,
) -> SResult<u64> {
    let (t, buf) = sc.txn(ipos)?;
    let t_copy = t.clone();
    let records: Vec<_> = t
        .records
        .iter()
        .map(|rec| {
            let inline = (rec.header.plen > 0)
                .then(|| buf[rec.body_off..rec.body_off + rec.header.plen as usize].to_vec());
            (rec.pos, rec.header, rec.back.unwrap_or(0), inline)
        })
        .collect();
    let pos = out.write_txn_header(&t_copy, t_copy.header.status)?;
    let mut tindex = Vec::with_capacity(records.len());
    for (rpos, h, back, inline) in records {
        let mut prev_txn = None;
        let data = match inline {
            Some(d) => Some(d),
            None => {
                let d = fetch_via_back(r, h.oid, back, rpos)?;
                if back != 0 {
                    prev_txn = Some(r.header(back, Some(h.oid))?.tid);
                }
                d
            }
        };
        let prev_pos = match prev_txn {
            Some(tid) => out.find_back(tid, h.oid, data.as_deref())?,
            None => 0,
        };
        let nh = DataHeader {
            prev: out.index.get(h.oid).unwrap_or(0),
            tloc: pos,
            ..h
        };
        let here = if prev_pos != 0 {
            out.write_record(&nh, None, prev_pos)?
        } else {
            out.write_record(&nh, data.as_deref(), 0)?
        };
        tindex.push((h.oid, here));
    }
    let tlen = out.pos() - pos;
    if tlen != t_copy.header.tlen {
        // Python asserts here (spec §10.5); we pin backpointer targets so this should
        // not happen, and if it does the output stays valid with the new length.
        log::warn!(
            "pack of {}: transaction {:?} changed length while copying ({} -> {tlen}); \
             a backpointer target was not kept, its data was written inline",
            r.path.display(),
            t_copy.header.tid,
            t_copy.header.tlen
        );
        out.patch(pos + 8, &tlen.to_be_bytes())?;
    }
    out.write(&tlen.to_be_bytes())?;
    for (oid, p) in tindex {
        out.index.insert(oid, p);
    }
    Ok(ipos + t_copy.header.tlen + 8)
}

/// Append `lines` to `D/.removed` (created empty at the start of the pack).
pub(crate) fn append_removed(path: &std::path::Path, lines: &[u8]) -> SResult<()> {
    let mut f = File::options()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
    f.write_all(lines)
        .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))
}
