//! The circular cache simulation of `cache_simul.py` (`CircularCacheSimulation`, spec
//! §6.5–6.6): a ring of blocks like the `.zec` file, with the same counters and the
//! same quirks (copy-forward adds the 43-byte overhead again, evicted objects come back
//! as writes, `24`/`26` loads are always misses).
//!
//! Where Python's simulator dies on an assertion or a `TypeError` (a store that does not
//! fit, a store of a revision already held under the other role, an invalidation going
//! backwards, a trailing restart), this one keeps going with the real cache's behaviour;
//! docs/compatibility.md lists each case. On every trace Python completes, the numbers
//! are identical.
//!
//! Representation: Python keeps a dict offset → block. Here the blocks are kept in
//! address order in two lists, `behind` (from 12 up to the ring pointer) and `ahead`
//! (from the pointer to the end): eviction pops from the front of `ahead`, a new block
//! is pushed on `behind`, and a wrap moves `behind` in front of `ahead`. A block names
//! its entry by slot and generation; freeing an entry bumps the generation, which turns
//! its block into free space wherever it lies (Python's `_remove`). Per-oid state lives
//! in an `OidTable` shared by the two simulations of a run (one lane each), so the
//! state both need for a record sits in one cache line.
//!
//! Invariants: the blocks of `behind` then `ahead` tile `[12, limit)` exactly, `behind`
//! ending at `offset`; each live entry is referenced by exactly one block and by exactly
//! one index slot (its oid's current revision or one element of its non-current list);
//! no two live entries share `(oid, start tid)`; `used` is the sum of the sizes of the
//! blocks holding live entries.

use std::collections::VecDeque;
use std::io::{self, Write};

use super::format::{self, duration, percent, CtimeCache};

/// Size of the `.zec` header: the ring starts here.
pub const HEADER_SIZE: i64 = 12;
/// Bytes of overhead of an allocated block in the `.zec` file.
pub const OVERHEAD: i64 = 43;

const NO_ENTRY: u32 = u32::MAX;

/// One trace record as the simulation sees it.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub ts: u32,
    pub dlen: i64,
    /// Masked code.
    pub code: u8,
    /// Interned oid.
    pub oid: u32,
    pub tid1: u64,
    pub tid2: u64,
}

/// Per-oid state of one simulation.
#[derive(Clone, Copy, Debug)]
struct OidState {
    /// Entry slot of the current revision, or `NO_ENTRY`.
    cur: u32,
    /// 1 + index in `nc_lists` of the non-current list; 0 = none yet.
    nc: u32,
    /// Start tid of the current revision, or of the evicted one.
    start: u64,
    /// With a current revision: its block offset. Without: the data size of the
    /// evicted current revision (Python's `evicted[oid]`), or −1 if there is none.
    /// (An eviction is the only way `current` empties without clearing `evicted`, and
    /// `evicted` is only read while `current` is empty, so one slot serves both.)
    aux: i64,
}

impl Default for OidState {
    fn default() -> Self {
        OidState {
            cur: NO_ENTRY,
            nc: 0,
            start: 0,
            aux: -1,
        }
    }
}

/// The per-oid states of two simulations, interleaved.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
pub struct OidPair([OidState; 2]);

/// Per-oid states, indexed by interned oid; grown by `ensure`.
#[derive(Default)]
pub struct OidTable(Vec<OidPair>);

impl OidTable {
    /// Make room for `oid`.
    pub fn ensure(&mut self, oid: u32) {
        let i = oid as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, OidPair::default());
        }
    }

    /// Read one word of `oid`'s state (to pull its cache line in early).
    pub fn touch(&self, oid: u32) -> u32 {
        self.0.get(oid as usize).map_or(0, |p| p.0[0].cur)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    oid: u32,
    start: u64,
    /// Zero for the current revision.
    end: u64,
    offset: i64,
    /// Size of its block (data + overhead).
    size: i64,
    /// Bumped when the entry is freed: blocks naming an older generation are free.
    gen: u64,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    size: i64,
    /// Entry slot, or `NO_ENTRY` for a free block.
    entry: u32,
    gen: u64,
}

impl Block {
    fn free(size: i64) -> Block {
        Block {
            size,
            entry: NO_ENTRY,
            gen: 0,
        }
    }
}

/// Python's `CircularCacheSimulation`, using lane `lane` of an `OidTable`.
pub struct CircularSim {
    lane: usize,
    limit: i64,
    rearrange: f64,
    offset: i64,
    /// Blocks from 12 up to `offset`, in address order.
    behind: Vec<Block>,
    /// Blocks from `offset` to `limit`, in address order.
    ahead: VecDeque<Block>,
    entries: Vec<Entry>,
    free_entries: Vec<u32>,
    /// Non-current lists sorted by (start, end): (start, end, entry).
    nc_lists: Vec<Vec<(u64, u64, u32)>>,
    used: i64,
    loads: u64,
    hits: u64,
    invals: u64,
    writes: u64,
    evicts: u64,
    total_loads: u64,
    total_hits: u64,
    total_invals: u64,
    total_writes: u64,
    total_evicts: u64,
    /// Set by a restart once the simulation has evicted something.
    pub warm: bool,
    ts0: Option<u32>,
    ts1: Option<u32>,
    epoch: Option<u32>,
    nreports: u64,
}

impl CircularSim {
    /// A simulation of a cache of `limit` bytes (> 12) using lane `lane` (0 or 1).
    pub fn new(limit: i64, rearrange: f64, lane: usize) -> Self {
        let mut ahead = VecDeque::new();
        ahead.push_back(Block::free(limit - HEADER_SIZE));
        CircularSim {
            lane: lane.min(1),
            limit,
            rearrange,
            offset: HEADER_SIZE,
            behind: Vec::new(),
            ahead,
            entries: Vec::new(),
            free_entries: Vec::new(),
            nc_lists: Vec::new(),
            used: 0,
            loads: 0,
            hits: 0,
            invals: 0,
            writes: 0,
            evicts: 0,
            total_loads: 0,
            total_hits: 0,
            total_invals: 0,
            total_writes: 0,
            total_evicts: 0,
            warm: false,
            ts0: None,
            ts1: None,
            epoch: None,
            nreports: 0,
        }
    }

    fn st<'t>(&self, t: &'t mut OidTable, oid: u32) -> &'t mut OidState {
        &mut t.0[oid as usize].0[self.lane]
    }

    /// The oid's non-current list (created empty on first use).
    fn nc_list(&mut self, t: &mut OidTable, oid: u32) -> &mut Vec<(u64, u64, u32)> {
        let lane = self.lane;
        let st = &mut t.0[oid as usize].0[lane];
        if st.nc == 0 {
            self.nc_lists.push(Vec::new());
            st.nc = self.nc_lists.len() as u32;
        }
        &mut self.nc_lists[st.nc as usize - 1]
    }

    fn nc_view(&self, st: &OidState) -> &[(u64, u64, u32)] {
        match st.nc {
            0 => &[],
            n => &self.nc_lists[n as usize - 1],
        }
    }

    /// Feed one record; `t.ensure(ev.oid)` must have been called.
    pub fn event(&mut self, ev: &Event, t: &mut OidTable) {
        if self.ts0.is_none() {
            self.ts0 = Some(ev.ts);
            if self.epoch.is_none() {
                self.epoch = Some(ev.ts);
            }
        }
        self.ts1 = Some(ev.ts);
        let action = ev.code & 0x70;
        if action & 0x20 != 0 {
            self.loads += 1;
            self.total_loads += 1;
            self.load(t, ev.oid, ev.tid1, ev.code);
        } else if action & 0x40 != 0 {
            // Python asserts dlen != 0 here; a zero-length store is simulated as is.
            self.write(t, ev.oid, ev.dlen, ev.tid1, ev.tid2);
        } else if action & 0x10 != 0 {
            self.inval(t, ev.oid, ev.tid1);
        } else {
            self.restart();
        }
    }

    /// Reset the per-run counters (a restart record, or an interval boundary).
    pub fn restart(&mut self) {
        self.loads = 0;
        self.hits = 0;
        self.invals = 0;
        self.writes = 0;
        self.ts0 = None;
        if self.evicts != 0 {
            self.warm = true;
        }
        self.evicts = 0;
    }

    fn hit(&mut self) {
        self.hits += 1;
        self.total_hits += 1;
    }

    /// Whether an object of `size` data bytes can be stored at all (the real cache
    /// skips larger ones; Python's simulator dies on them).
    fn fits(&self, size: i64) -> bool {
        size + OVERHEAD < self.limit - HEADER_SIZE
    }

    fn load(&mut self, t: &mut OidTable, oid: u32, tid: u64, code: u8) {
        let st = *self.st(t, oid);
        if code == 0x20 || code == 0x22 {
            if st.cur != NO_ENTRY {
                self.hit();
                debug_assert_eq!(self.entries[st.cur as usize].offset, st.aux);
                let mut d = self.offset - st.aux;
                if d < 0 {
                    d += self.limit;
                }
                if (d as f64) > self.rearrange * self.limit as f64 {
                    // Copy forward; the block size (overhead included) gets the overhead
                    // added again, exactly like Python.
                    let size = self.entries[st.cur as usize].size;
                    if self.fits(size) {
                        self.free_entry(st.cur);
                        let (idx, at) = self.add(t, oid, size, st.start, 0);
                        let s = self.st(t, oid);
                        s.cur = idx;
                        s.aux = at;
                    }
                }
            } else if st.aux >= 0 {
                self.write(t, oid, st.aux, st.start, 0);
            }
            return;
        }
        if st.cur != NO_ENTRY && st.start == tid {
            self.hit();
            return;
        }
        // Last range starting before tid (Python: bisect with (tid, None)).
        let list = self.nc_view(&st);
        let i = list.partition_point(|&(lo, _, _)| lo < tid);
        if i > 0 && tid <= list[i - 1].1 {
            self.hit();
        }
    }

    fn write(&mut self, t: &mut OidTable, oid: u32, size: i64, start: u64, end: u64) {
        let st = *self.st(t, oid);
        let list = self.nc_view(&st);
        let key_taken =
            (st.cur != NO_ENTRY && st.start == start) || list.iter().any(|n| n.0 == start);
        if end == 0 {
            if st.cur != NO_ENTRY || key_taken || !self.fits(size) {
                return;
            }
            self.writes += 1;
            self.total_writes += 1;
            let (idx, at) = self.add(t, oid, size, start, 0);
            let s = self.st(t, oid);
            s.cur = idx;
            s.start = start;
            s.aux = at;
            return;
        }
        if list.iter().any(|n| n.0 == start && n.1 == end) || key_taken || !self.fits(size) {
            return;
        }
        self.writes += 1;
        self.total_writes += 1;
        let (idx, _) = self.add(t, oid, size, start, end);
        let list = self.nc_list(t, oid);
        let at = list.partition_point(|n| (n.0, n.1) < (start, end));
        list.insert(at, (start, end, idx));
    }

    fn inval(&mut self, t: &mut OidTable, oid: u32, tid: u64) {
        if tid == 0 {
            let st = *self.st(t, oid);
            if st.nc != 0 {
                let list = std::mem::take(&mut self.nc_lists[st.nc as usize - 1]);
                let n = list.len() as u64;
                self.invals += n;
                self.total_invals += n;
                for (_, _, idx) in list {
                    self.free_entry(idx);
                }
            }
        }
        let st = self.st(t, oid);
        let (cur, start) = (st.cur, st.start);
        st.cur = NO_ENTRY;
        st.aux = -1; // forgets `evicted[oid]` too
        if cur == NO_ENTRY {
            return;
        }
        self.invals += 1;
        self.total_invals += 1;
        if tid == 0 || tid <= start {
            // Verification, or (not in real traces) an invalidation that does not move
            // forward, which Python's simulator asserts against: forget the revision.
            self.free_entry(cur);
            return;
        }
        self.entries[cur as usize].end = tid;
        let list = self.nc_list(t, oid);
        let at = list.partition_point(|n| (n.0, n.1) < (start, tid));
        list.insert(at, (start, tid, cur));
    }

    /// Python's `_remove`: the entry's block becomes free; the caller fixes the index.
    fn free_entry(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.gen = e.gen.wrapping_add(1);
        self.used -= e.size;
        self.free_entries.push(idx);
    }

    /// The live entry a block holds, if any.
    fn holder(&self, b: &Block) -> Option<u32> {
        let e = self.entries.get(b.entry as usize)?;
        (e.gen == b.gen).then_some(b.entry)
    }

    /// Store a revision at the ring pointer; returns its entry and offset. The caller
    /// has checked `fits(size)` and indexes the entry.
    fn add(&mut self, t: &mut OidTable, oid: u32, size: i64, start: u64, end: u64) -> (u32, i64) {
        let size = size + OVERHEAD;
        let avail = self.makeroom(t, size + 1);
        let mut e = Entry {
            oid,
            start,
            end,
            offset: self.offset,
            size,
            gen: 0,
        };
        let idx = match self.free_entries.pop() {
            Some(i) => {
                e.gen = self.entries[i as usize].gen;
                self.entries[i as usize] = e;
                i
            }
            None => {
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        self.behind.push(Block {
            size,
            entry: idx,
            gen: e.gen,
        });
        let at = self.offset;
        self.used += size;
        self.offset += size;
        let excess = avail - size;
        if excess != 0 {
            self.ahead.push_front(Block::free(excess));
        }
        (idx, at)
    }

    /// Evict whole blocks from the pointer (wrapping to 12 first if needed) until
    /// `need` contiguous bytes are free; returns the bytes made available.
    fn makeroom(&mut self, t: &mut OidTable, mut need: i64) -> i64 {
        if self.offset + need > self.limit {
            // Wrap: the blocks written since the last wrap come first again.
            let mut ring: VecDeque<Block> = std::mem::take(&mut self.behind).into();
            ring.append(&mut self.ahead);
            self.ahead = ring;
            self.offset = HEADER_SIZE;
        }
        let mut pos = self.offset;
        while need > 0 && pos < self.limit {
            let Some(b) = self.ahead.pop_front() else {
                // Blocks tile the ring (module invariant); running out would be our bug.
                unreachable!("cache simulation: no block at offset {pos}");
            };
            if let Some(idx) = self.holder(&b) {
                self.evicts += 1;
                self.total_evicts += 1;
                let e = self.entries[idx as usize];
                self.free_entry(idx);
                if e.end == 0 {
                    let st = self.st(t, e.oid);
                    st.cur = NO_ENTRY;
                    st.start = e.start;
                    st.aux = b.size - OVERHEAD;
                } else {
                    let list = self.nc_list(t, e.oid);
                    if let Some(i) = list.iter().position(|n| n.2 == idx) {
                        list.remove(i);
                    }
                }
            }
            need -= b.size;
            pos += b.size;
        }
        pos - self.offset
    }

    /// One report line (nothing before the first event).
    pub fn report(&mut self, out: &mut dyn Write, ctime: &mut CtimeCache) -> io::Result<()> {
        let Some(ts1) = self.ts1 else {
            return Ok(());
        };
        self.nreports += 1;
        // After a trailing restart Python dies on ts0 = None; we start the line there.
        let ts0 = self.ts0.unwrap_or(ts1);
        self.line(
            out,
            ctime,
            ts0,
            ts1,
            [self.loads, self.hits, self.invals, self.writes, self.evicts],
        )
    }

    fn line(
        &self,
        out: &mut dyn Write,
        ctime: &mut CtimeCache,
        ts0: u32,
        ts1: u32,
        [loads, hits, invals, writes, evicts]: [u64; 5],
    ) -> io::Result<()> {
        let total = self.limit - HEADER_SIZE;
        let inuse = 100.0 * self.used as f64 / total as f64;
        let hr = if loads < 1 {
            "n/a".to_string()
        } else {
            format!("{:5.1}%", percent(hits, loads))
        };
        let start = format::ctime_minute(ctime.get(i64::from(ts0))).to_string();
        writeln!(
            out,
            "{start:>12} {:>6} {loads:>7} {hits:>7} {invals:>6} {writes:>6} {hr:>7} {evicts:>7} {:>7}",
            duration(i64::from(ts1) - i64::from(ts0)),
            format!("{inuse:.1}")
        )
    }

    /// The dashes and the final line (plus a totals line if `report` ran twice).
    pub fn finish(&mut self, out: &mut dyn Write, ctime: &mut CtimeCache) -> io::Result<()> {
        writeln!(out, "{}", "-".repeat(74))?;
        let earlier = self.nreports;
        self.report(out, ctime)?;
        if earlier >= 2 {
            if let (Some(epoch), Some(ts1)) = (self.epoch, self.ts1) {
                let totals = [
                    self.total_loads,
                    self.total_hits,
                    self.total_invals,
                    self.total_writes,
                    self.total_evicts,
                ];
                self.line(out, ctime, epoch, ts1, totals)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u32, code: u8, oid: u32, dlen: i64, tid1: u64, tid2: u64) -> Event {
        Event {
            ts,
            dlen,
            code,
            oid,
            tid1,
            tid2,
        }
    }

    struct Solo {
        s: CircularSim,
        t: OidTable,
    }

    impl Solo {
        fn new(limit: i64) -> Solo {
            Solo {
                s: CircularSim::new(limit, 0.8, 1),
                t: OidTable::default(),
            }
        }
        fn ev(&mut self, e: Event) {
            self.t.ensure(e.oid);
            self.s.event(&e, &mut self.t);
            self.check();
        }
        fn st(&self, oid: u32) -> OidState {
            self.t.0[oid as usize].0[1]
        }
        fn nc_len(&self, oid: u32) -> usize {
            self.s.nc_view(&self.st(oid)).len()
        }
        fn check(&self) {
            let s = &self.s;
            let mut pos = HEADER_SIZE;
            let mut used = 0;
            let mut n = 0;
            for (i, b) in s.behind.iter().chain(s.ahead.iter()).enumerate() {
                if i == s.behind.len() {
                    assert_eq!(pos, s.offset);
                }
                assert!(b.size > 0);
                if let Some(idx) = s.holder(b) {
                    assert_eq!(s.entries[idx as usize].offset, pos);
                    assert_eq!(s.entries[idx as usize].size, b.size);
                    used += b.size;
                    n += 1;
                }
                pos += b.size;
            }
            assert_eq!(pos, s.limit);
            assert_eq!(used, s.used);
            let indexed: usize = (0..self.t.0.len() as u32)
                .map(|o| usize::from(self.st(o).cur != NO_ENTRY) + self.nc_len(o))
                .sum();
            assert_eq!(indexed, n);
        }
    }

    #[test]
    fn miss_store_hit_evict() {
        let mut s = Solo::new(12 + 3 * 144);
        s.ev(ev(1, 0x20, 0, 0, 0, 0));
        s.ev(ev(1, 0x52, 0, 100, 5, 0));
        s.ev(ev(1, 0x22, 0, 100, 5, 0));
        assert_eq!((s.s.loads, s.s.hits, s.s.writes), (2, 1, 1));
        for oid in 1..5 {
            s.ev(ev(2, 0x52, oid, 100, 5, 0));
        }
        assert!(s.s.evicts > 0);
        // The evicted oid 0 comes back as a write on its next current load.
        let w = s.s.writes;
        s.ev(ev(3, 0x20, 0, 0, 0, 0));
        assert_eq!(s.s.writes, w + 1);
    }

    #[test]
    fn invalidation_keeps_noncurrent_and_verification_drops_all() {
        let mut s = Solo::new(100_000);
        s.ev(ev(1, 0x52, 7, 10, 5, 0));
        s.ev(ev(1, 0x1c, 7, 0, 9, 0));
        assert_eq!(s.nc_len(7), 1);
        s.ev(ev(1, 0x26, 7, 0, 6, 0));
        assert_eq!(s.s.hits, 1, "5 < 6 <= 9 is a non-current hit");
        s.ev(ev(1, 0x52, 7, 10, 9, 0));
        s.ev(ev(1, 0x10, 7, 0, 0, 0));
        assert_eq!(s.s.invals, 3);
        assert!(s.nc_len(7) == 0 && s.st(7).cur == NO_ENTRY);
        assert_eq!(s.s.used, 0);
    }

    #[test]
    fn python_crash_cases_keep_going() {
        let mut s = Solo::new(200);
        // Too large for the cache: not stored, not counted.
        s.ev(ev(1, 0x52, 1, 1000, 5, 0));
        assert_eq!((s.s.writes, s.s.used), (0, 0));
        // Non-current store of the revision held as current: ignored.
        s.ev(ev(1, 0x52, 2, 10, 5, 0));
        s.ev(ev(1, 0x54, 2, 10, 5, 9));
        assert_eq!(s.s.writes, 1);
        // An invalidation going backwards drops the revision.
        s.ev(ev(1, 0x1c, 2, 0, 3, 0));
        assert!(s.st(2).cur == NO_ENTRY && s.nc_len(2) == 0);
        // Trailing restart: report uses the restart time.
        s.ev(ev(2, 0x00, 3, 0, 0, 0));
        let mut out = Vec::new();
        s.s.report(&mut out, &mut CtimeCache::default()).unwrap();
        assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), 1);
    }
}
