//! `zeo cache-stats`: the equivalent of ZEO's `cache_stats.py` (spec §5), with the same
//! command line, the same output byte for byte, and the documented improvements where
//! Python crashes (pipe input, traces without data records).
//!
//! Invariants: per-record work is O(1) (hash maps only when `-h`/`-s` need them);
//! nothing is printed out of the order Python prints it; the run-time figure is the
//! only non-deterministic output.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::time::Instant;

use super::argparse::{self, ArgError, Handler, Kind, Opt, Spec};
use super::format::{self, commas, percent, py_bytes_repr, CtimeCache};
use super::hash::{FastMap, OidInterner};
use super::reader::{Item, Realign, Source, TraceReader};
use super::record::{explain, Record};

/// Python's usage line for `cache_stats.py` (argparse, 80 columns).
pub const USAGE: &str = "usage: cache_stats.py [--verbose | --quiet] [--sizes] [--no-stats]
                      [--load-histogram] [--check] [--interval INTERVAL]
                      tracefile
";

/// Python's `--help` text for `cache_stats.py` (printed to stdout, exit status 2).
pub const HELP: &str = "usage: cache_stats.py [--verbose | --quiet] [--sizes] [--no-stats]
                      [--load-histogram] [--check] [--interval INTERVAL]
                      tracefile

Trace file statistics analyzer

positional arguments:
  tracefile             The trace to read; may be gzipped

options:
  --verbose, -v         Be verbose; print each record
  --quiet, -q           Reduce output; don't print summaries
  --sizes, -s           print histogram of object sizes
  --no-stats, -S        don't print statistics
  --load-histogram, -h  print histogram of object load frequencies
  --check, -X           enable heuristic checking for misaligned records: oids
                        > 2**32 will be rejected; this requires the tracefile
                        to be seekable
  --interval INTERVAL, -i INTERVAL
                        summarizing interval in minutes (default 15; max 60)
";

const OPTS: &[Opt] = &[
    Opt {
        key: "verbose",
        strings: &["--verbose", "-v"],
        kind: Kind::Flag,
    },
    Opt {
        key: "quiet",
        strings: &["--quiet", "-q"],
        kind: Kind::Flag,
    },
    Opt {
        key: "sizes",
        strings: &["--sizes", "-s"],
        kind: Kind::Flag,
    },
    Opt {
        key: "no-stats",
        strings: &["--no-stats", "-S"],
        kind: Kind::Flag,
    },
    Opt {
        key: "load-histogram",
        strings: &["--load-histogram", "-h"],
        kind: Kind::Flag,
    },
    Opt {
        key: "check",
        strings: &["--check", "-X"],
        kind: Kind::Flag,
    },
    Opt {
        key: "interval",
        strings: &["--interval", "-i"],
        kind: Kind::Value,
    },
];

const SPEC: Spec = Spec {
    opts: OPTS,
    positional: "tracefile",
    exclusive: Some(("verbose", "quiet")),
};

/// Options of a `cache_stats` run.
#[derive(Clone, Debug)]
pub struct Options {
    pub verbose: bool,
    pub quiet: bool,
    pub sizes: bool,
    pub stats: bool,
    pub histogram: bool,
    /// `-X`: accepted and ignored, as in Python.
    pub check: bool,
    /// Interval in seconds (60..=3600 after clamping; 15 minutes by default).
    pub interval: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verbose: false,
            quiet: false,
            sizes: false,
            stats: true,
            histogram: false,
            check: false,
            interval: 15 * 60,
        }
    }
}

/// `int(60 * float(a))` clamped to 1..=3600 seconds as `add_interval_argument` does;
/// `Err` is argparse's message tail. Infinite values (Python: OverflowError crash) are
/// clamped like any other out-of-range value.
pub fn parse_interval(a: &str) -> Result<u64, String> {
    let bad = || format!("invalid _interval value: {}", format::py_str_repr(a));
    let f = format::py_float(a).ok_or_else(bad)?;
    let x = (60.0 * f).trunc();
    if x.is_nan() {
        return Err(bad());
    }
    Ok(if x <= 0.0 {
        60
    } else if x > 3600.0 {
        3600
    } else {
        x as u64
    })
}

struct ArgsHandler {
    opts: Options,
    input: Option<(Source, Box<dyn Read>)>,
}

impl Handler for ArgsHandler {
    fn flag(&mut self, key: &str) {
        let o = &mut self.opts;
        match key {
            "verbose" => o.verbose = true,
            "quiet" => o.quiet = true,
            "sizes" => o.sizes = true,
            "no-stats" => o.stats = false,
            "load-histogram" => o.histogram = true,
            _ => o.check = true,
        }
    }
    fn value(&mut self, _key: &str, value: &str) -> Result<(), String> {
        self.opts.interval = parse_interval(value)?;
        Ok(())
    }
    fn positional(&mut self, value: &OsStr) -> Result<(), String> {
        let src = Source::from_arg(value);
        let r = src.open().map_err(|e| argparse::cant_open(value, &e))?;
        self.input = Some((src, r));
        Ok(())
    }
}

/// Run `cache_stats` with `args` (without the program name). Returns the exit status.
pub fn main(args: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<i32> {
    if args.iter().any(|a| a == "--help") {
        out.write_all(HELP.as_bytes())?;
        return Ok(2);
    }
    let mut h = ArgsHandler {
        opts: Options::default(),
        input: None,
    };
    match SPEC.parse(args, &mut h) {
        Ok(_) => {}
        Err(ArgError(msg)) => {
            writeln!(err, "{USAGE}cache_stats.py: error: {msg}")?;
            return Ok(2);
        }
    }
    let Some((src, input)) = h.input else {
        // parse() only succeeds once the positional was taken.
        unreachable!("tracefile parsed without an input");
    };
    match run(&h.opts, input, out) {
        Ok(Outcome::Done) => Ok(0),
        Ok(Outcome::NoRecords) => {
            out.flush()?;
            writeln!(err, "No records processed")?;
            Ok(1)
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(e),
        Err(e) => {
            out.flush()?;
            writeln!(err, "cache_stats: {}: {e}", src.display_name())?;
            Ok(1)
        }
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// No record was counted (Python: `No records processed`, exit 1).
    NoRecords,
}

/// Per-size record counts. Each record appends its key `(dlen << 32) | oid id` to a
/// list (no hashing on the hot path); keys are radix-sorted and folded into
/// `(key, count)` runs at the end, or whenever the list grows large, so memory stays
/// bounded by the number of distinct (size, oid) pairs.
#[derive(Default)]
struct SizeTable {
    keys: Vec<u64>,
    runs: Vec<(u64, u64)>,
}

const FOLD_AT: usize = 1 << 23;

impl SizeTable {
    fn add(&mut self, dlen: u32, oid: u32) {
        self.keys.push((u64::from(dlen) << 32) | u64::from(oid));
        if self.keys.len() >= FOLD_AT {
            self.fold();
        }
    }

    /// Sort the pending keys and merge them into `runs`.
    fn fold(&mut self) {
        let mut keys = std::mem::take(&mut self.keys);
        radix_sort(&mut keys);
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        for k in keys {
            match fresh.last_mut() {
                Some(r) if r.0 == k => r.1 += 1,
                _ => fresh.push((k, 1)),
            }
        }
        let old = std::mem::take(&mut self.runs);
        let mut merged = Vec::with_capacity(old.len() + fresh.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < fresh.len() {
            let take_old = j == fresh.len() || (i < old.len() && old[i].0 <= fresh[j].0);
            let take_new = i == old.len() || (j < fresh.len() && fresh[j].0 <= old[i].0);
            let mut r = (0, 0);
            if take_old {
                r = old[i];
                i += 1;
            }
            if take_new {
                r = (fresh[j].0, r.1 + fresh[j].1);
                j += 1;
            }
            merged.push(r);
        }
        self.runs = merged;
    }

    /// `(size, distinct oids, records)` by ascending size.
    fn rows(&mut self) -> Vec<(u32, u64, u64)> {
        self.fold();
        let mut rows: Vec<(u32, u64, u64)> = Vec::new();
        for &(k, n) in &self.runs {
            let size = (k >> 32) as u32;
            match rows.last_mut() {
                Some(r) if r.0 == size => {
                    r.1 += 1;
                    r.2 += n;
                }
                _ => rows.push((size, 1, n)),
            }
        }
        rows
    }
}

/// LSD radix sort of u64 keys: 11-bit digits, all digit histograms from one scan,
/// passes skipped where every key has the same digit.
fn radix_sort(v: &mut Vec<u64>) {
    if v.len() < 256 {
        v.sort_unstable();
        return;
    }
    const PASSES: usize = 6;
    let mut counts = vec![[0usize; 2048]; PASSES];
    for &k in v.iter() {
        for (p, c) in counts.iter_mut().enumerate() {
            c[((k >> (p * 11)) & 2047) as usize] += 1;
        }
    }
    let mut tmp = vec![0u64; v.len()];
    for (pass, count) in counts.iter_mut().enumerate() {
        if count.contains(&v.len()) {
            continue;
        }
        let shift = pass * 11;
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &k in v.iter() {
            let d = ((k >> shift) & 2047) as usize;
            tmp[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(v, &mut tmp);
    }
}

struct State {
    records: u64,
    versions: u64,
    datarecords: u64,
    datasize: u64,
    bycode: [u64; 128],
    byinterval: [u64; 128],
    t0: Option<u32>,
    te: u32,
    h0: Option<u32>,
    he: Option<u32>,
    thisinterval: u64,
    total_loads: u64,
    interner: OidInterner,
    loads_per_oid: Vec<u32>,
    last_ts: u32,
    last_iv: u64,
    bysize: SizeTable,
    bysizew: SizeTable,
    ctime: CtimeCache,
}

/// Run the analysis on an opened trace, writing Python's output to `out`.
pub fn run(opts: &Options, input: Box<dyn Read>, out: &mut dyn Write) -> io::Result<Outcome> {
    let rt0 = Instant::now();
    let realign = if opts.quiet {
        Realign::SkipHead
    } else {
        Realign::Resync
    };
    let mut reader = TraceReader::new(input, realign);
    let mut st = State {
        records: 0,
        versions: 0,
        datarecords: 0,
        datasize: 0,
        bycode: [0; 128],
        byinterval: [0; 128],
        t0: None,
        te: 0,
        h0: None,
        he: None,
        thisinterval: 0,
        total_loads: 0,
        interner: OidInterner::default(),
        loads_per_oid: Vec::new(),
        last_ts: 0,
        last_iv: 0,
        bysize: SizeTable::default(),
        bysizew: SizeTable::default(),
        ctime: CtimeCache::default(),
    };
    out.write_all(b"                   loads    hits  inv(h)  writes hitrate\n")?;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Misaligned { offset } => {
                if !opts.quiet {
                    writeln!(out, "Skipping 8 bytes at offset {offset}")?;
                }
            }
            Item::Record { rec, .. } => st.record(opts, &rec, out)?,
        }
    }
    let end_pos = reader.bytes_read();
    let elapsed = rt0.elapsed().as_secs_f64();
    if !opts.quiet {
        st.dump_interval(out)?;
    }
    if st.records == 0 {
        return Ok(Outcome::NoRecords);
    }
    if opts.stats {
        st.print_stats(out, end_pos, elapsed)?;
    }
    if opts.histogram {
        st.print_histogram(out)?;
    }
    if opts.sizes {
        out.write_all(b"\nHistograms of object sizes\n\n")?;
        dump_by_size(out, &mut st.bysizew, "written", "writes")?;
        dump_by_size(out, &mut st.bysize, "loaded", "loads")?;
    }
    out.flush()?;
    Ok(Outcome::Done)
}

impl State {
    /// A small integer standing for `oid` (distinct oids, distinct slots).
    fn oid_slot(&mut self, oid: &[u8]) -> u32 {
        self.interner.intern(oid)
    }

    fn record(&mut self, opts: &Options, rec: &Record<'_>, out: &mut dyn Write) -> io::Result<()> {
        let ts = rec.ts;
        if ts != self.last_ts {
            self.last_ts = ts;
            self.last_iv = u64::from(ts) / opts.interval;
        }
        let iv = self.last_iv;
        self.records += 1;
        if self.t0.is_none() {
            self.t0 = Some(ts);
            self.thisinterval = iv;
            self.h0 = Some(ts);
            self.he = Some(ts);
        }
        self.te = ts;
        if iv != self.thisinterval {
            if !opts.quiet {
                self.dump_interval(out)?;
            }
            self.byinterval = [0; 128];
            self.thisinterval = iv;
            self.h0 = Some(ts);
        }
        self.he = Some(ts);
        let dlen = rec.dlen();
        if dlen != 0 {
            self.datarecords += 1;
            self.datasize += u64::from(dlen);
        }
        let version = if rec.has_version() {
            self.versions += 1;
            'V'
        } else {
            '-'
        };
        let code = rec.code();
        self.bycode[usize::from(code)] += 1;
        self.byinterval[usize::from(code)] += 1;
        let is_load = code & 0x70 == 0x20;
        if dlen != 0 && opts.sizes {
            if is_load {
                let id = self.oid_slot(rec.oid);
                self.bysize.add(dlen, id);
            } else if code & 0x70 == 0x50 {
                let id = self.oid_slot(rec.oid);
                self.bysizew.add(dlen, id);
            }
        }
        if opts.verbose {
            let t = format::ctime_mid(self.ctime.get(i64::from(ts)));
            let oid = match rec.oid_u64() {
                Some(v) => format!("{v:16x}"),
                None => py_bytes_repr(rec.oid),
            };
            write!(
                out,
                "{t} {code:02x} {oid} {:016x} {:016x} {version}",
                rec.tid1, rec.tid2
            )?;
            if dlen != 0 {
                write!(out, " {dlen}")?;
            }
            out.write_all(b"\n")?;
        }
        if is_load {
            self.total_loads += 1;
            if opts.histogram {
                let id = self.oid_slot(rec.oid) as usize;
                if id >= self.loads_per_oid.len() {
                    self.loads_per_oid.resize(id + 1, 0);
                }
                self.loads_per_oid[id] += 1;
            }
        } else if code == 0 {
            if !opts.quiet {
                self.dump_interval(out)?;
            }
            self.byinterval = [0; 128];
            self.thisinterval = iv;
            self.h0 = Some(ts);
            self.he = Some(ts);
            if !opts.quiet {
                let t = format::ctime_mid(self.ctime.get(i64::from(ts)));
                writeln!(out, "{t} ==================== Restart ====================")?;
            }
        }
        Ok(())
    }

    /// One interval line (`dumpbyinterval`). Before any record, Python formats the
    /// current time; so do we.
    fn dump_interval(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let (mut loads, mut hits, mut invals, mut writes) = (0u64, 0u64, 0u64, 0u64);
        for (code, &n) in self.byinterval.iter().enumerate() {
            let code = code as u8;
            if n == 0 {
                continue;
            }
            if code & 0x20 != 0 {
                loads += n;
                if code == 0x22 || code == 0x26 {
                    hits += n;
                }
            } else if code & 0x40 != 0 {
                writes += n;
            } else if code & 0x10 != 0 && code != 0x10 {
                invals += n;
            }
        }
        let hr = if loads != 0 {
            format!("{:5.1}%", percent(hits, loads))
        } else {
            "n/a".to_string()
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        };
        let h0 = self.h0.map(i64::from).unwrap_or_else(now);
        let he = self.he.map(i64::from).unwrap_or_else(now);
        let a = format::ctime_minute(self.ctime.get(h0)).to_string();
        let b = format::ctime_minutes_only(self.ctime.get(he)).to_string();
        writeln!(
            out,
            "{a}-{b} {loads:>7} {hits:>7} {invals:>7} {writes:>7} {hr:>7}"
        )
    }

    fn print_stats(&mut self, out: &mut dyn Write, end_pos: u64, secs: f64) -> io::Result<()> {
        let t0 = i64::from(self.t0.unwrap_or(0));
        let te = i64::from(self.te);
        writeln!(out)?;
        writeln!(
            out,
            "Read {} trace records ({} bytes) in {secs:.1} seconds",
            commas(i128::from(self.records)),
            commas(i128::from(end_pos))
        )?;
        writeln!(
            out,
            "Versions:   {} records used a version",
            commas(i128::from(self.versions))
        )?;
        writeln!(out, "First time: {}", format::ctime(t0))?;
        writeln!(out, "Last time:  {}", format::ctime(te))?;
        writeln!(out, "Duration:   {} seconds", commas(i128::from(te - t0)))?;
        // Python divides by zero here when no record has data; we print 0.
        let avg = if self.datarecords == 0 {
            0
        } else {
            (self.datasize as f64 / self.datarecords as f64) as u64
        };
        writeln!(
            out,
            "Data recs:  {} ({:.1}%), average size {avg} bytes",
            commas(i128::from(self.datarecords)),
            percent(self.datarecords, self.records)
        )?;
        let (mut loads, mut hits) = (0u64, 0u64);
        for (code, &n) in self.bycode.iter().enumerate() {
            if code & 0x70 == 0x20 {
                loads += n;
                if code == 0x22 || code == 0x26 {
                    hits += n;
                }
            }
        }
        let hr = if loads != 0 {
            percent(hits, loads)
        } else {
            0.0
        };
        writeln!(out, "Hit rate:   {hr:.1}% (load hits / loads)")?;
        writeln!(out)?;
        writeln!(out, "        Count Code Function (action)")?;
        for (code, &n) in self.bycode.iter().enumerate() {
            if n == 0 {
                continue;
            }
            writeln!(
                out,
                "{:>13}  {code:02x}  {}",
                commas(i128::from(n)),
                explain(code as u8).unwrap_or("*** unknown code ***")
            )?;
        }
        Ok(())
    }

    fn print_histogram(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let mut bins: FastMap<u32, u64> = FastMap::default();
        for &n in &self.loads_per_oid {
            if n != 0 {
                *bins.entry(n).or_default() += 1;
            }
        }
        let total: u64 = bins.values().sum();
        let mut rows: Vec<(u32, u64)> = bins.into_iter().collect();
        rows.sort_unstable();
        writeln!(out)?;
        writeln!(out, "Histogram of object load frequency")?;
        let s = commas(i128::from(total));
        writeln!(out, "Unique oids: {s}")?;
        writeln!(out, "Total loads: {}", commas(i128::from(self.total_loads)))?;
        let w = s.len().max("objects".len());
        writeln!(
            out,
            "{:>5} {:>w$} {:>6} {:>6} {:>6}",
            "loads", "objects", "%obj", "%load", "%cum"
        )?;
        let mut cum = 0.0f64;
        for (binsize, count) in rows {
            let obj = 100.0 * count as f64 / total as f64;
            let load = 100.0 * count as f64 * f64::from(binsize) / self.total_loads as f64;
            cum += load;
            writeln!(
                out,
                "{binsize:>5} {:>w$} {obj:5.1}% {load:5.1}% {cum:5.1}%",
                commas(i128::from(count))
            )?;
        }
        Ok(())
    }
}

fn dump_by_size(out: &mut dyn Write, t: &mut SizeTable, how: &str, how2: &str) -> io::Result<()> {
    let rows = t.rows();
    writeln!(out)?;
    writeln!(out, "Unique sizes {how}: {}", commas(rows.len() as i128))?;
    writeln!(out, "{:>10} {:>6} {:>6}", "size", "objs", how2)?;
    for (size, objs, n) in rows {
        writeln!(out, "{:>10} {objs:>6} {n:>6}", commas(i128::from(size)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_table_folds_and_counts() {
        let mut t = SizeTable::default();
        let mut rng = 12345u64;
        let mut expect: std::collections::BTreeMap<u32, (std::collections::BTreeSet<u32>, u64)> =
            Default::default();
        for _ in 0..5000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (dlen, oid) = ((rng % 40) as u32 * 1000, (rng >> 20) as u32 % 300);
            t.add(dlen, oid);
            let e = expect.entry(dlen).or_default();
            e.0.insert(oid);
            e.1 += 1;
            if rng.is_multiple_of(997) {
                t.fold();
            }
        }
        let want: Vec<(u32, u64, u64)> = expect
            .into_iter()
            .map(|(d, (o, n))| (d, o.len() as u64, n))
            .collect();
        assert_eq!(t.rows(), want);
        let mut v: Vec<u64> = (0..1000u64)
            .map(|i| ((i * 7919) % 1013) << 40 | i)
            .collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        radix_sort(&mut v);
        assert_eq!(v, sorted);
    }

    #[test]
    fn intervals_clamp_like_python() {
        assert_eq!(parse_interval("15"), Ok(900));
        assert_eq!(parse_interval("0"), Ok(60));
        assert_eq!(parse_interval("0.25"), Ok(15));
        assert_eq!(parse_interval("1.5"), Ok(90));
        assert_eq!(parse_interval("90"), Ok(3600));
        assert_eq!(parse_interval("-3"), Ok(60));
        assert_eq!(parse_interval("inf"), Ok(3600));
        assert_eq!(
            parse_interval("x"),
            Err("invalid _interval value: 'x'".to_string())
        );
        assert!(parse_interval("nan").is_err());
    }

    fn run_bytes(opts: &Options, data: Vec<u8>) -> (String, Outcome) {
        let mut out = Vec::new();
        let o = run(opts, Box::new(io::Cursor::new(data)), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), o)
    }

    #[test]
    fn empty_trace_reports_no_records() {
        let opts = Options {
            quiet: true,
            ..Options::default()
        };
        let (out, o) = run_bytes(&opts, Vec::new());
        assert_eq!(o, Outcome::NoRecords);
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn no_data_records_prints_zero_average() {
        let mut d = Vec::new();
        d.extend_from_slice(&1_000_000u32.to_be_bytes());
        d.extend_from_slice(&0x20u32.to_be_bytes());
        d.extend_from_slice(&8u16.to_be_bytes());
        d.extend_from_slice(&[0; 24]);
        let (out, o) = run_bytes(&Options::default(), d);
        assert_eq!(o, Outcome::Done);
        assert!(
            out.contains("Data recs:  0 (0.0%), average size 0 bytes\n"),
            "{out}"
        );
        assert!(out.contains("Hit rate:   0.0% (load hits / loads)\n"));
    }
}
