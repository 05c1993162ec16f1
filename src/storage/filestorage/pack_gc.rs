//! Pack phases 1 and 2 (spec filestorage.md §10.2–10.3, Python's `fspack.GC`):
//! what was current at the pack time, and which revisions before the pack time stay.
//!
//! Invariants: the input is read sequentially through [`TxnScanner`] (bounded
//! buffer, never the whole file); memory is proportional to the number of objects
//! current at the pack time, not to the file size. Reachability follows only strong
//! same-database references found by [`crate::storage::refs::references`]. Unlike
//! Python, the no-GC mode also pins revisions that backpointers after the pack time
//! point to, so the copy of those transactions keeps its length (Python fails with
//! AssertionError there, §10.5); when Python succeeds the output is identical.

use std::collections::HashMap;

use super::format::{self, ParsedTxn, TxnHeader, TXN_HEADER_LEN};
use super::read::Reader;
use crate::storage::refs;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{SResult, StorageError};

const CHUNK: usize = 1 << 20;

/// Sequential reader of whole transactions with a bounded read-ahead buffer.
pub(crate) struct TxnScanner<'a> {
    r: &'a Reader,
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl<'a> TxnScanner<'a> {
    pub fn new(r: &'a Reader) -> Self {
        TxnScanner {
            r,
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    fn corrupted(&self, offset: u64, what: impl Into<String>) -> StorageError {
        StorageError::Corrupted {
            path: self.r.path.clone(),
            offset,
            what: what.into(),
        }
    }

    /// `n` bytes at `pos`; they must lie below the reader's end.
    fn get(&mut self, pos: u64, n: u64) -> SResult<&[u8]> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= self.r.end)
            .ok_or_else(|| {
                self.corrupted(
                    pos,
                    format!(
                        "{n} bytes at {pos} run past the end of data ({})",
                        self.r.end
                    ),
                )
            })?;
        if !(pos >= self.start && end <= self.start + self.len as u64) {
            let want = (self.r.end - pos).min(n.max(CHUNK as u64)) as usize;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            self.r
                .file
                .read_exact_at(&mut self.buf[..want], pos)
                .map_err(|e| {
                    StorageError::io(format!("reading {} at {pos}", self.r.path.display()), e)
                })?;
            self.start = pos;
            self.len = want;
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off..off + n as usize])
    }

    /// The fixed transaction header at `pos`.
    pub fn header(&mut self, pos: u64) -> SResult<TxnHeader> {
        let b = self.get(pos, TXN_HEADER_LEN)?;
        TxnHeader::decode(b).ok_or_else(|| self.corrupted(pos, "short transaction header"))
    }

    /// The whole transaction at `pos`, parsed and checked, with its raw bytes.
    pub fn txn(&mut self, pos: u64) -> SResult<(ParsedTxn, &[u8])> {
        let h = self.header(pos)?;
        let total = h
            .tlen
            .checked_add(8)
            .ok_or_else(|| self.corrupted(pos, "transaction length overflows"))?;
        let path = self.r.path.clone();
        let buf = self.get(pos, total)?;
        let t = format::parse_txn(buf, pos).map_err(|(offset, what)| StorageError::Corrupted {
            path,
            offset,
            what,
        })?;
        Ok((t, buf))
    }
}

/// Python's `checkTxn`: increasing tids, no checkpoint, known status, sane length.
pub(crate) fn check_txn(r: &Reader, h: &TxnHeader, pos: u64, ltid: Tid) -> SResult<()> {
    let bad = |what: String| StorageError::Corrupted {
        path: r.path.clone(),
        offset: pos,
        what,
    };
    if h.tid <= ltid {
        return Err(bad(format!(
            "time-stamp reduction: {:?} <= {:?}",
            h.tid, ltid
        )));
    }
    match h.status {
        b'c' => Err(bad("transaction with checkpoint flag set".into())),
        b' ' | b'p' | b'u' => Ok(()),
        s => Err(bad(format!("invalid transaction status: {:?}", s as char))),
    }
}

/// Data for a backpointer `back` of a record of `oid` at `from` (0 → `None`).
pub(crate) fn fetch_via_back(
    r: &Reader,
    oid: Oid,
    back: u64,
    from: u64,
) -> SResult<Option<Vec<u8>>> {
    Ok(r.resolve(oid, back, from)?.map(|x| x.0))
}

/// Result of phases 1–2.
pub(crate) struct Reach {
    /// Position of the first transaction after the pack time (or the end).
    pub packpos: u64,
    /// oid → its reachable revision before `packpos`.
    pub reachable: HashMap<Oid, u64>,
    /// Extra reachable revisions (backpointer targets from after the pack time).
    pub reach_ex: HashMap<Oid, Vec<u64>>,
    /// Tid of the last transaction read before `packpos`.
    ltid: Tid,
}

impl Reach {
    pub fn is_reachable(&self, oid: Oid, pos: u64) -> bool {
        match self.reachable.get(&oid) {
            None => false,
            Some(&p) if p == pos => true,
            Some(_) => self.reach_ex.get(&oid).is_some_and(|l| l.contains(&pos)),
        }
    }
}

/// Phases 1 and 2 over `[4, r.end)`. `Ok(None)`: the pack is redundant.
pub(crate) fn find_reachable(r: &Reader, stop: Tid, gc: bool) -> SResult<Option<Reach>> {
    let Some((mut reach, cur)) = build_pack_index(r, stop)? else {
        return Ok(None);
    };
    if gc {
        reach_at_packtime(r, &cur, &mut reach.reachable, vec![Oid(0)])?;
        from_future(r, &mut reach, Some(&cur))?;
    } else {
        reach.reachable = cur;
        from_future(r, &mut reach, None)?;
    }
    Ok(Some(reach))
}

/// Phase 1 (`buildPackIndex`): returns the reach skeleton and `oid2curpos`.
fn build_pack_index(r: &Reader, stop: Tid) -> SResult<Option<(Reach, HashMap<Oid, u64>)>> {
    let mut sc = TxnScanner::new(r);
    let mut cur: HashMap<Oid, u64> = HashMap::new();
    let mut pos = 4u64;
    let mut unpacked = false;
    let mut ltid = Tid::ZERO;
    let mut last_status = None;
    while pos < r.end {
        let h = sc.header(pos)?;
        if h.tid > stop {
            last_status = Some(h.status);
            break;
        }
        check_txn(r, &h, pos, ltid)?;
        ltid = h.tid;
        last_status = Some(h.status);
        if h.status != b'p' {
            unpacked = true;
        }
        let (t, _) = sc.txn(pos)?;
        for rec in &t.records {
            if rec.header.plen > 0 || rec.back.unwrap_or(0) != 0 {
                cur.insert(rec.header.oid, rec.pos);
            } else {
                cur.remove(&rec.header.oid);
            }
        }
        pos += t.header.tlen + 8;
    }
    if !unpacked && last_status == Some(b'p') {
        log::info!(
            "{}: the database has already been packed to a later time or no changes have \
             been made since the last pack",
            r.path.display()
        );
        return Ok(None);
    }
    let reach = Reach {
        packpos: pos,
        reachable: HashMap::new(),
        reach_ex: HashMap::new(),
        ltid,
    };
    Ok(Some((reach, cur)))
}

/// Strong references of the revision at `pos` (following backpointers).
fn findrefs(r: &Reader, pos: u64) -> SResult<Vec<Oid>> {
    let h = r.header(pos, None)?;
    match r.record_state(pos, &h)? {
        Some(data) => refs::references(&data).map_err(|e| {
            StorageError::Pack(format!(
                "object {} (record at {pos} of {}): {e}",
                h.oid,
                r.path.display()
            ))
        }),
        None => Ok(Vec::new()),
    }
}

/// Depth-first marking from `roots` over the revisions current at the pack time.
fn reach_at_packtime(
    r: &Reader,
    cur: &HashMap<Oid, u64>,
    reachable: &mut HashMap<Oid, u64>,
    roots: Vec<Oid>,
) -> SResult<()> {
    mark_reachable(cur, reachable, roots, |pos| findrefs(r, pos))
}

/// Depth-first marking shared by both engines' packs: every oid reachable from `roots`
/// through `refs_at(position)` gets its position in `cur` (the revisions current at
/// the pack time). A reference to an oid missing from `cur` fails the pack as
/// Python's KeyError does (an empty `cur` without the root is a pack before creation).
pub(crate) fn mark_reachable(
    cur: &HashMap<Oid, u64>,
    reachable: &mut HashMap<Oid, u64>,
    roots: Vec<Oid>,
    mut refs_at: impl FnMut(u64) -> SResult<Vec<Oid>>,
) -> SResult<()> {
    let mut todo = roots;
    while let Some(oid) = todo.pop() {
        if reachable.contains_key(&oid) {
            continue;
        }
        let Some(&pos) = cur.get(&oid) else {
            if oid == Oid(0) && cur.is_empty() {
                continue;
            }
            return Err(StorageError::Pack(format!(
                "KeyError: object {oid} is referenced but does not exist at the pack time \
                 (deleted or created later)"
            )));
        };
        reachable.insert(oid, pos);
        for o in refs_at(pos)? {
            if !reachable.contains_key(&o) {
                todo.push(o);
            }
        }
    }
    Ok(())
}

/// `findReachableFromFuture`: backpointers after the pack time pin their targets.
/// With `cur` (GC mode) the references of extra revisions are followed.
fn from_future(r: &Reader, reach: &mut Reach, cur: Option<&HashMap<Oid, u64>>) -> SResult<()> {
    let mut sc = TxnScanner::new(r);
    let mut extra_roots = Vec::new();
    let mut pos = reach.packpos;
    let mut ltid = reach.ltid;
    while pos < r.end {
        let h = sc.header(pos)?;
        check_txn(r, &h, pos, ltid)?;
        ltid = h.tid;
        let (t, _) = sc.txn(pos)?;
        for rec in &t.records {
            let back = rec.back.unwrap_or(0);
            if back == 0 || back >= reach.packpos {
                continue;
            }
            let oid = rec.header.oid;
            match reach.reachable.entry(oid) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    let l = reach.reach_ex.entry(oid).or_default();
                    if !l.contains(&back) {
                        l.push(back);
                        extra_roots.push(back);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(back);
                }
            }
        }
        pos += t.header.tlen + 8;
    }
    if let Some(cur) = cur {
        for p in extra_roots {
            let refs = findrefs(r, p)?;
            reach_at_packtime(r, cur, &mut reach.reachable, refs)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_with_extra_revisions() {
        let mut r = Reach {
            packpos: 100,
            reachable: HashMap::new(),
            reach_ex: HashMap::new(),
            ltid: Tid::ZERO,
        };
        r.reachable.insert(Oid(1), 10);
        r.reach_ex.insert(Oid(1), vec![5]);
        assert!(r.is_reachable(Oid(1), 10));
        assert!(r.is_reachable(Oid(1), 5));
        assert!(!r.is_reachable(Oid(1), 7));
        assert!(!r.is_reachable(Oid(2), 10));
    }
}
