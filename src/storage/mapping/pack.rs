//! MappingStorage pack: FileStorage's pack algorithm (spec filestorage.md §10) run on
//! the in-memory record model, so both engines answer every read identically after
//! a pack — same kept records, same positions, same `p` transactions, same sizes.
//!
//! Invariants: runs with the storage lock held and no transaction in progress;
//! positions are recomputed exactly as the packed Data.fs would have them; tids,
//! last tid and max oid never change; on error nothing changes.

use std::collections::{BTreeMap, HashMap};

use super::{Body, Inner, Rec, Txn, TXN_HEADER};
use crate::storage::refs;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{PackOutcome, SResult, StorageError};

/// The stop tid for pack time `t` (z64 is refused, as Python does).
pub(super) fn stop_tid(t: f64) -> SResult<Tid> {
    if !t.is_finite() {
        return Err(StorageError::Invalid(format!("Invalid pack time {t}")));
    }
    let stop = Tid::from_unix(t);
    if stop == Tid::ZERO {
        return Err(StorageError::Invalid("Invalid pack time".into()));
    }
    Ok(stop)
}

fn header_len(t: &Txn) -> u64 {
    TXN_HEADER
        + t.meta.user.len() as u64
        + t.meta.description.len() as u64
        + t.meta.extension.len() as u64
}

struct Reach {
    reachable: HashMap<Oid, u64>,
    reach_ex: HashMap<Oid, Vec<u64>>,
}

impl Reach {
    fn is_reachable(&self, oid: Oid, pos: u64) -> bool {
        match self.reachable.get(&oid) {
            None => false,
            Some(&p) if p == pos => true,
            Some(_) => self.reach_ex.get(&oid).is_some_and(|l| l.contains(&pos)),
        }
    }
}

fn findrefs(inner: &Inner, pos: u64) -> SResult<Vec<Oid>> {
    let rec = inner.rec(pos)?;
    match inner.resolve(&rec.body)? {
        Some(d) => refs::references(&d)
            .map_err(|e| StorageError::Pack(format!("object {} (record {pos}): {e}", rec.oid))),
        None => Ok(Vec::new()),
    }
}

fn mark(
    inner: &Inner,
    cur: &HashMap<Oid, u64>,
    reachable: &mut HashMap<Oid, u64>,
    roots: Vec<Oid>,
) -> SResult<()> {
    crate::storage::filestorage::pack_gc::mark_reachable(cur, reachable, roots, |pos| {
        findrefs(inner, pos)
    })
}

/// Pack `inner` to `stop`.
pub(super) fn pack(inner: &mut Inner, stop: Tid, gc: bool) -> SResult<PackOutcome> {
    if inner.index.is_empty() {
        return Ok(PackOutcome::Unchanged);
    }
    // Phase 1: current revisions at the pack time.
    let mut cur: HashMap<Oid, u64> = HashMap::new();
    let mut unpacked = false;
    let mut last_status = None;
    let mut split = inner.txns.len();
    let mut packpos = 4u64;
    for (i, t) in inner.txns.iter().enumerate() {
        last_status = Some(t.status);
        if t.tid > stop {
            split = i;
            break;
        }
        if t.status != b'p' {
            unpacked = true;
        }
        for &pos in &t.records {
            let r = inner.rec(pos)?;
            match r.body {
                Body::Gone => {
                    cur.remove(&r.oid);
                }
                _ => {
                    cur.insert(r.oid, pos);
                }
            }
        }
        packpos += t.tlen + 8;
    }
    if !unpacked && last_status == Some(b'p') {
        return Ok(PackOutcome::Unchanged);
    }
    // Phase 2: reachability, then backpointers from after the pack time.
    let mut reach = Reach {
        reachable: HashMap::new(),
        reach_ex: HashMap::new(),
    };
    if gc {
        mark(inner, &cur, &mut reach.reachable, vec![Oid(0)])?;
    } else {
        reach.reachable = cur.clone();
    }
    let mut extra_roots = Vec::new();
    for t in &inner.txns[split..] {
        for &pos in &t.records {
            let r = inner.rec(pos)?;
            let Body::Back(back) = r.body else { continue };
            if back == 0 || back >= packpos {
                continue;
            }
            match reach.reachable.entry(r.oid) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    let l = reach.reach_ex.entry(r.oid).or_default();
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
    }
    if gc {
        for p in extra_roots {
            let refs = findrefs(inner, p)?;
            mark(inner, &cur, &mut reach.reachable, refs)?;
        }
    }
    // Phase 3: packed transactions.
    let mut records: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut index: BTreeMap<Oid, u64> = BTreeMap::new();
    let mut txns: Vec<Txn> = Vec::new();
    let mut size = 4u64;
    for t in &inner.txns[..split] {
        let hl = header_len(t);
        let mut pos = size + hl;
        let mut kept = Vec::new();
        for &old in &t.records {
            let r = inner.rec(old)?;
            if !reach.is_reachable(r.oid, old) {
                continue;
            }
            let body = match inner.resolve(&r.body)? {
                Some(d) => Body::Data(d),
                None => Body::Gone,
            };
            let rec = Rec {
                oid: r.oid,
                tid: r.tid,
                prev: 0,
                body,
            };
            let sz = rec.file_size();
            index.insert(rec.oid, pos);
            records.insert(pos, rec);
            kept.push(pos);
            pos += sz;
        }
        if kept.is_empty() {
            continue;
        }
        txns.push(Txn {
            tid: t.tid,
            status: b'p',
            meta: t.meta.clone(),
            records: kept,
            tlen: pos - size,
        });
        size = pos + 8;
    }
    if size == packpos {
        return Ok(PackOutcome::Unchanged);
    }
    // Phase 4: the rest, positions rewritten, backpointers retargeted.
    for t in &inner.txns[split..] {
        let start = size;
        let mut pos = size + header_len(t);
        let mut kept = Vec::new();
        let mut tindex = Vec::new();
        for &old in &t.records {
            let r = inner.rec(old)?;
            let body = match &r.body {
                Body::Back(back) => {
                    let data = inner.resolve(&r.body)?;
                    let target_tid = inner.rec(*back)?.tid;
                    let i = txns
                        .binary_search_by(|x| x.tid.cmp(&target_tid))
                        .map_err(|_| {
                            StorageError::Pack(format!(
                                "Invalid backpointer transaction id {target_tid:?}"
                            ))
                        })?;
                    let found = txns[i]
                        .records
                        .iter()
                        .map(|p| (p, &records[p]))
                        .find(|(_, x)| x.oid == r.oid);
                    let back_to = match found {
                        Some((&p, x)) => match (&x.body, &data) {
                            (Body::Data(a), Some(b)) if a[..] == b[..] => p,
                            (Body::Data(_), _) => 0,
                            _ => p,
                        },
                        None => 0,
                    };
                    if back_to != 0 {
                        Body::Back(back_to)
                    } else {
                        match data {
                            Some(d) => Body::Data(d),
                            None => Body::Gone,
                        }
                    }
                }
                b => b.clone(),
            };
            let rec = Rec {
                oid: r.oid,
                tid: r.tid,
                prev: index.get(&r.oid).copied().unwrap_or(0),
                body,
            };
            let sz = rec.file_size();
            tindex.push((rec.oid, pos));
            records.insert(pos, rec);
            kept.push(pos);
            pos += sz;
        }
        for (oid, p) in tindex {
            index.insert(oid, p);
        }
        txns.push(Txn {
            tid: t.tid,
            status: t.status,
            meta: t.meta.clone(),
            records: kept,
            tlen: pos - start,
        });
        size = pos + 8;
    }
    let old_size = inner.size;
    inner.records = records;
    inner.index = index;
    inner.txns = txns;
    inner.size = size;
    Ok(PackOutcome::Packed {
        old_size,
        new_size: size,
    })
}
