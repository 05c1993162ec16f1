//! `zeo cache-simul`: the equivalent of ZEO's `cache_simul.py` (spec §6): the circular
//! (`.zec`-like) cache simulation, driven per interval and overall, with the same
//! numbers, restarts and interval handling, and the same output byte for byte.
//!
//! Where Python's simulator dies on an assertion or a `TypeError` (a store that does not
//! fit the cache, a non-current store of the revision the simulation holds as current,
//! a trailing restart record, an invalidation that goes back in time), this one keeps
//! going with the behaviour of the real ZEO cache; each case is listed in
//! docs/compatibility.md. On every trace Python completes, the output is identical.
//!
//! Invariants of `CircularSim`: the blocks of `filemap` tile `[12, limit)` exactly;
//! each entry is referenced by exactly one block and by exactly one index slot (the
//! oid's current revision or one element of its non-current list); no two entries
//! share `(oid, start tid)`; `used` is the sum of the sizes of blocks holding entries.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};

use super::argparse::{self, ArgError, Handler, Kind, Opt, Spec};
use super::format::{self, commas, duration, percent, CtimeCache};
use super::hash::{FastMap, OidInterner};
use super::reader::{Item, Realign, Source, TraceReader};
use super::stats::parse_interval;

/// Size of the `.zec` header: the ring starts here.
pub const HEADER_SIZE: i64 = 12;
/// Bytes of overhead of an allocated block in the `.zec` file.
pub const OVERHEAD: i64 = 43;
const MB: f64 = 1_048_576.0;

/// Python's `--help` text for `cache_simul.py` (stdout, exit status 0).
pub const HELP: &str = "usage: cache_simul.py [-h] [--size CACHELIMIT] [--interval INTERVAL]
                      [--rearrange REARRANGE]
                      tracefile

Cache simulation. Note: - The simulation isn't perfect. - The simulation will
be far off if the trace file was created starting with a non-empty cache

positional arguments:
  tracefile             The trace to read; may be gzipped

options:
  -h, --help            show this help message and exit
  --size CACHELIMIT, -s CACHELIMIT
                        cache size in MB (default 20MB)
  --interval INTERVAL, -i INTERVAL
                        summarizing interval in minutes (default 15; max 60)
  --rearrange REARRANGE, -r REARRANGE
                        rearrange factor
";

/// Python's usage lines for `cache_simul.py`.
pub const USAGE: &str = "usage: cache_simul.py [-h] [--size CACHELIMIT] [--interval INTERVAL]
                      [--rearrange REARRANGE]
                      tracefile
";

const OPTS: &[Opt] = &[
    Opt {
        key: "help",
        strings: &["-h", "--help"],
        kind: Kind::Help,
    },
    Opt {
        key: "size",
        strings: &["--size", "-s"],
        kind: Kind::Value,
    },
    Opt {
        key: "interval",
        strings: &["--interval", "-i"],
        kind: Kind::Value,
    },
    Opt {
        key: "rearrange",
        strings: &["--rearrange", "-r"],
        kind: Kind::Value,
    },
];

const SPEC: Spec = Spec {
    opts: OPTS,
    positional: "tracefile",
    exclusive: None,
};

/// Options of a simulation run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cache size in bytes.
    pub cachelimit: i64,
    /// Interval in seconds.
    pub interval: u64,
    /// Copy-forward fraction.
    pub rearrange: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cachelimit: 20 * 1_048_576,
            interval: 15 * 60,
            rearrange: 0.8,
        }
    }
}

/// `int(float(s) * MB)`; `Err` is argparse's message tail.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid <lambda> value: {}", format::py_str_repr(s));
    let f = format::py_float(s).ok_or_else(bad)?;
    let x = (f * MB).trunc();
    if !x.is_finite() {
        return Err(bad());
    }
    // Saturates beyond ±2^63 bytes; no real cache comes near.
    Ok(x as i64)
}

struct ArgsHandler {
    opts: Options,
    input: Option<(Source, Box<dyn Read>)>,
}

impl Handler for ArgsHandler {
    fn flag(&mut self, _key: &str) {}
    fn value(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "size" => self.opts.cachelimit = parse_size(value)?,
            "interval" => self.opts.interval = parse_interval(value)?,
            _ => {
                self.opts.rearrange = format::py_float(value)
                    .ok_or_else(|| format!("invalid float value: {}", format::py_str_repr(value)))?
            }
        }
        Ok(())
    }
    fn positional(&mut self, value: &OsStr) -> Result<(), String> {
        let src = Source::from_arg(value);
        let r = src.open().map_err(|e| argparse::cant_open(value, &e))?;
        self.input = Some((src, r));
        Ok(())
    }
}

/// Run `cache_simul` with `args` (without the program name). Returns the exit status.
pub fn main(args: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<i32> {
    let mut h = ArgsHandler {
        opts: Options::default(),
        input: None,
    };
    let usage_error = |err: &mut dyn Write, msg: &str| -> io::Result<i32> {
        writeln!(err, "{USAGE}cache_simul.py: error: {msg}")?;
        Ok(2)
    };
    match SPEC.parse(args, &mut h) {
        Ok(argparse::Parsed::Ok) => {}
        Ok(argparse::Parsed::Help) => {
            out.write_all(HELP.as_bytes())?;
            return Ok(0);
        }
        Err(ArgError(msg)) => return usage_error(err, &msg),
    }
    if h.opts.cachelimit <= HEADER_SIZE {
        return usage_error(
            err,
            &format!(
                "argument --size/-s: a cache of {} bytes cannot hold anything (the cache file header alone takes {HEADER_SIZE} bytes)",
                h.opts.cachelimit
            ),
        );
    }
    let Some((src, input)) = h.input else {
        unreachable!("tracefile parsed without an input");
    };
    match run(&h.opts, input, out) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(e),
        Err(e) => {
            out.flush()?;
            writeln!(err, "cache_simul: {}: {e}", src.display_name())?;
            Ok(1)
        }
    }
}

/// Simulate on an opened trace, writing Python's output to `out`.
pub fn run(opts: &Options, input: Box<dyn Read>, out: &mut dyn Write) -> io::Result<()> {
    let mut sim = CircularSim::new(opts.cachelimit, opts.rearrange);
    let mut isim = CircularSim::new(opts.cachelimit, opts.rearrange);
    let mut ctime = CtimeCache::default();
    let mut interner = OidInterner::default();
    writeln!(
        out,
        "CircularCacheSimulation, cache size {} bytes",
        commas(i128::from(opts.cachelimit))
    )?;
    writeln!(
        out,
        "{:>12} {:>6} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "START TIME", "DUR.", "LOADS", "HITS", "INVALS", "WRITES", "HITRATE", "EVICTS", "INUSE"
    )?;
    let mut reader = TraceReader::new(input, Realign::Resync);
    let mut last_interval: Option<u64> = None;
    while let Some(item) = reader.next_item()? {
        let Item::Record { rec, .. } = item else {
            continue;
        };
        let this = u64::from(rec.ts) / opts.interval;
        if last_interval != Some(this) {
            if last_interval.is_some() {
                isim.report(out, &mut ctime)?;
                isim.restart();
                if !isim.warm {
                    sim.restart();
                }
            }
            last_interval = Some(this);
        }
        let ev = Event {
            ts: rec.ts,
            dlen: i64::from(rec.dlen()),
            code: rec.code(),
            oid: interner.intern(rec.oid),
            tid1: rec.tid1,
            tid2: rec.tid2,
        };
        sim.event(&ev);
        isim.event(&ev);
    }
    isim.report(out, &mut ctime)?;
    sim.finish(out, &mut ctime)?;
    out.flush()
}

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

#[derive(Clone, Copy, Debug)]
struct Entry {
    oid: u32,
    start: u64,
    /// Zero for the current revision.
    end: u64,
    offset: i64,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    size: i64,
    entry: Option<u32>,
}

#[derive(Default, Debug)]
struct OidState {
    /// Current revision: (start tid, entry).
    current: Option<(u64, u32)>,
    /// Non-current revisions sorted by (start, end): (start, end, entry).
    noncurrent: Vec<(u64, u64, u32)>,
    /// Evicted current revision: (data size, start tid).
    evicted: Option<(i64, u64)>,
}

/// Python's `CircularCacheSimulation`.
pub struct CircularSim {
    limit: i64,
    rearrange: f64,
    offset: i64,
    filemap: FastMap<i64, Block>,
    entries: Vec<Entry>,
    free_entries: Vec<u32>,
    oids: Vec<OidState>,
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
    /// A simulation of a cache of `limit` bytes (> 12).
    pub fn new(limit: i64, rearrange: f64) -> Self {
        let mut filemap = FastMap::default();
        filemap.insert(
            HEADER_SIZE,
            Block {
                size: limit - HEADER_SIZE,
                entry: None,
            },
        );
        CircularSim {
            limit,
            rearrange,
            offset: HEADER_SIZE,
            filemap,
            entries: Vec::new(),
            free_entries: Vec::new(),
            oids: Vec::new(),
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

    fn oid(&mut self, oid: u32) -> &mut OidState {
        let i = oid as usize;
        if i >= self.oids.len() {
            self.oids.resize_with(i + 1, OidState::default);
        }
        &mut self.oids[i]
    }

    /// Feed one record.
    pub fn event(&mut self, ev: &Event) {
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
            self.load(ev.oid, ev.tid1, ev.code);
        } else if action & 0x40 != 0 {
            // Python asserts dlen != 0 here; a zero-length store is simulated as is.
            self.write(ev.oid, ev.dlen, ev.tid1, ev.tid2);
        } else if action & 0x10 != 0 {
            self.inval(ev.oid, ev.tid1);
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

    fn load(&mut self, oid: u32, tid: u64, code: u8) {
        if code == 0x20 || code == 0x22 {
            let st = self.oid(oid);
            if let Some((start, idx)) = st.current {
                self.hit();
                let e = self.entries[idx as usize];
                let mut d = self.offset - e.offset;
                if d < 0 {
                    d += self.limit;
                }
                if (d as f64) > self.rearrange * self.limit as f64 {
                    // Copy forward; the block size (overhead included) gets the overhead
                    // added again, exactly like Python.
                    let size = self.filemap.get(&e.offset).map_or(0, |b| b.size);
                    if self.fits(size) {
                        self.free_block(idx);
                        let new = self.add(oid, size, start, 0);
                        self.oid(oid).current = Some((start, new));
                    }
                }
            } else if let Some((size, start)) = st.evicted {
                self.write(oid, size, start, 0);
            }
            return;
        }
        let st = self.oid(oid);
        if st.current.map(|c| c.0) == Some(tid) {
            self.hit();
            return;
        }
        // Last range starting before tid (Python: bisect with (tid, None)).
        let i = st.noncurrent.partition_point(|&(lo, _, _)| lo < tid);
        if i == 0 {
            return;
        }
        let (_, hi, _) = st.noncurrent[i - 1];
        if tid <= hi {
            self.hit();
        }
    }

    fn write(&mut self, oid: u32, size: i64, start: u64, end: u64) {
        let fits = self.fits(size);
        let st = self.oid(oid);
        let key_taken =
            st.current.is_some_and(|c| c.0 == start) || st.noncurrent.iter().any(|n| n.0 == start);
        if end == 0 {
            if st.current.is_some() || key_taken || !fits {
                return;
            }
            self.writes += 1;
            self.total_writes += 1;
            let idx = self.add(oid, size, start, 0);
            self.oid(oid).current = Some((start, idx));
            return;
        }
        if st.noncurrent.iter().any(|n| n.0 == start && n.1 == end) || key_taken || !fits {
            return;
        }
        self.writes += 1;
        self.total_writes += 1;
        let idx = self.add(oid, size, start, end);
        let st = self.oid(oid);
        let at = st.noncurrent.partition_point(|n| (n.0, n.1) < (start, end));
        st.noncurrent.insert(at, (start, end, idx));
    }

    fn inval(&mut self, oid: u32, tid: u64) {
        if tid == 0 {
            let list = std::mem::take(&mut self.oid(oid).noncurrent);
            let n = list.len() as u64;
            self.invals += n;
            self.total_invals += n;
            for (_, _, idx) in list {
                self.free_block(idx);
            }
        }
        let st = self.oid(oid);
        st.evicted = None;
        let Some((cur, idx)) = st.current.take() else {
            return;
        };
        self.invals += 1;
        self.total_invals += 1;
        if tid == 0 || tid <= cur {
            // Verification, or (not in real traces) an invalidation that does not move
            // forward, which Python's simulator asserts against: forget the revision.
            self.free_block(idx);
            return;
        }
        self.entries[idx as usize].end = tid;
        let st = self.oid(oid);
        let at = st.noncurrent.partition_point(|n| (n.0, n.1) < (cur, tid));
        st.noncurrent.insert(at, (cur, tid, idx));
    }

    /// Python's `_remove`: the entry's block becomes free; the caller fixes the index.
    fn free_block(&mut self, idx: u32) {
        let off = self.entries[idx as usize].offset;
        if let Some(b) = self.filemap.get_mut(&off) {
            b.entry = None;
            self.used -= b.size;
        }
        self.free_entries.push(idx);
    }

    /// Store a revision at the ring pointer; returns its entry. The caller has checked
    /// `fits(size)` and indexes the entry.
    fn add(&mut self, oid: u32, size: i64, start: u64, end: u64) -> u32 {
        let size = size + OVERHEAD;
        let avail = self.makeroom(size + 1);
        let e = Entry {
            oid,
            start,
            end,
            offset: self.offset,
        };
        let idx = match self.free_entries.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        };
        self.filemap.insert(
            self.offset,
            Block {
                size,
                entry: Some(idx),
            },
        );
        self.used += size;
        self.offset += size;
        let excess = avail - size;
        if excess != 0 {
            self.filemap.insert(
                self.offset,
                Block {
                    size: excess,
                    entry: None,
                },
            );
        }
        idx
    }

    /// Evict whole blocks from the pointer (wrapping to 12 first if needed) until
    /// `need` contiguous bytes are free; returns the bytes made available.
    fn makeroom(&mut self, mut need: i64) -> i64 {
        if self.offset + need > self.limit {
            self.offset = HEADER_SIZE;
        }
        let mut pos = self.offset;
        while need > 0 && pos < self.limit {
            let Some(b) = self.filemap.remove(&pos) else {
                // Blocks tile the ring (module invariant); a gap would be our bug.
                unreachable!("cache simulation: no block at offset {pos}");
            };
            if let Some(idx) = b.entry {
                self.evicts += 1;
                self.total_evicts += 1;
                self.used -= b.size;
                let e = self.entries[idx as usize];
                self.free_entries.push(idx);
                let st = self.oid(e.oid);
                if e.end == 0 {
                    st.current = None;
                    st.evicted = Some((b.size - OVERHEAD, e.start));
                } else if let Some(i) = st
                    .noncurrent
                    .iter()
                    .position(|n| n.0 == e.start && n.1 == e.end)
                {
                    st.noncurrent.remove(i);
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

    fn check_tiling(s: &CircularSim) {
        let mut pos = HEADER_SIZE;
        let mut used = 0;
        let mut n = 0;
        while pos < s.limit {
            let b = s.filemap[&pos];
            assert!(b.size > 0);
            if b.entry.is_some() {
                used += b.size;
                n += 1;
            }
            pos += b.size;
        }
        assert_eq!(pos, s.limit);
        assert_eq!(used, s.used);
        let indexed: usize = s
            .oids
            .iter()
            .map(|o| usize::from(o.current.is_some()) + o.noncurrent.len())
            .sum();
        assert_eq!(indexed, n);
    }

    #[test]
    fn miss_store_hit_evict() {
        let mut s = CircularSim::new(12 + 3 * 144, 0.8);
        s.event(&ev(1, 0x20, 0, 0, 0, 0));
        s.event(&ev(1, 0x52, 0, 100, 5, 0));
        s.event(&ev(1, 0x22, 0, 100, 5, 0));
        assert_eq!((s.loads, s.hits, s.writes), (2, 1, 1));
        for oid in 1..5 {
            s.event(&ev(2, 0x52, oid, 100, 5, 0));
            check_tiling(&s);
        }
        assert!(s.evicts > 0);
        // The evicted oid 0 comes back as a write on its next current load.
        let w = s.writes;
        s.event(&ev(3, 0x20, 0, 0, 0, 0));
        assert_eq!(s.writes, w + 1);
        check_tiling(&s);
    }

    #[test]
    fn invalidation_keeps_noncurrent_and_verification_drops_all() {
        let mut s = CircularSim::new(100_000, 0.8);
        s.event(&ev(1, 0x52, 7, 10, 5, 0));
        s.event(&ev(1, 0x1c, 7, 0, 9, 0));
        assert_eq!(s.oids[7].noncurrent.len(), 1);
        s.event(&ev(1, 0x52, 7, 10, 9, 0));
        s.event(&ev(1, 0x10, 7, 0, 0, 0));
        assert_eq!(s.invals, 3);
        assert!(s.oids[7].noncurrent.is_empty() && s.oids[7].current.is_none());
        assert_eq!(s.used, 0);
        check_tiling(&s);
    }

    #[test]
    fn python_crash_cases_keep_going() {
        let mut s = CircularSim::new(200, 0.8);
        // Too large for the cache: not stored, not counted.
        s.event(&ev(1, 0x52, 1, 1000, 5, 0));
        assert_eq!((s.writes, s.used), (0, 0));
        // Non-current store of the revision held as current: ignored.
        s.event(&ev(1, 0x52, 2, 10, 5, 0));
        s.event(&ev(1, 0x54, 2, 10, 5, 9));
        assert_eq!(s.writes, 1);
        // An invalidation going backwards drops the revision.
        s.event(&ev(1, 0x1c, 2, 0, 3, 0));
        assert!(s.oids[2].current.is_none() && s.oids[2].noncurrent.is_empty());
        check_tiling(&s);
        // Trailing restart: report uses the restart time.
        s.event(&ev(2, 0x00, 3, 0, 0, 0));
        let mut out = Vec::new();
        s.report(&mut out, &mut CtimeCache::default()).unwrap();
        assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), 1);
    }

    #[test]
    fn sizes_parse_like_python() {
        assert_eq!(parse_size("0.3"), Ok(314_572));
        assert_eq!(parse_size("20"), Ok(20 * 1_048_576));
        assert!(parse_size("x").is_err());
        assert!(parse_size("inf").is_err());
    }
}
