//! Synthetic trace generator (`zeo trace --generate`): writes traces shaped like those
//! of a ZEO 5/6 client (spec §3.1) for sizing experiments and tests.
//!
//! The model: `objects` objects with log-normal pickle sizes, read with a Zipf(`zipf`)
//! popularity; a FIFO byte-bounded model of the client's own cache decides whether a
//! read is a hit (`22`) or a miss (`20 24 20 24 52`); a fraction of operations are
//! commits by this client (`1c`/`10` then `52`) or by others (`1c`/`10` only); a few
//! reads happen at an old snapshot (`24 24 54` or a `26` hit); client restarts write a
//! `00` record, sometimes followed by verification invalidations without a tid
//! (`1e`/`10`); optional runs of zero bytes imitate what a crash leaves behind.
//!
//! Invariants (so that Python's `cache_simul` can run on every generated trace): tids
//! strictly increase; an invalidation is written before any record that reveals the
//! newer revision; a restart is never the last record and shares its timestamp with
//! the record after it; every store has a data length of at least 1 byte; `24`/`26`
//! records carry a zero `tid1`. The same options and seed give the same bytes.

use std::collections::VecDeque;
use std::io::{self, Write};

use super::record::MAX_DLEN;
use super::writer::TraceWriter;

/// Generator parameters.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Records to write (exactly; a miss sequence may be cut at the end).
    pub records: u64,
    /// Number of distinct objects.
    pub objects: u32,
    /// Median pickle size in bytes.
    pub size_median: f64,
    /// Log-normal sigma of the sizes.
    pub size_sigma: f64,
    /// Largest pickle size (at most 2^23 − 1).
    pub size_max: u32,
    /// Zipf exponent of object popularity (0 = uniform).
    pub zipf: f64,
    /// Fraction of operations that are commits by this client.
    pub write_ratio: f64,
    /// Fraction of operations that are invalidations from other clients' commits.
    pub inval_ratio: f64,
    /// Fraction of reads made at an old snapshot (non-current loads).
    pub noncurrent_ratio: f64,
    /// Client restarts after the first start (each writes a `00` record).
    pub restarts: u32,
    /// Size of the modelled client cache in bytes.
    pub cache_size: u64,
    /// Timestamp of the first record.
    pub start: u32,
    /// Records per second of trace time.
    pub rate: f64,
    /// Runs of zero bytes to insert (crash leftovers; readers skip them 8 at a time).
    pub garbage: u32,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            records: 100_000,
            objects: 10_000,
            size_median: 400.0,
            size_sigma: 1.0,
            size_max: 30_000,
            zipf: 1.0,
            write_ratio: 0.03,
            inval_ratio: 0.05,
            noncurrent_ratio: 0.005,
            restarts: 0,
            cache_size: 20 * 1024 * 1024,
            start: 1_772_952_090,
            rate: 20.0,
            garbage: 0,
            seed: 1,
        }
    }
}

impl GenOptions {
    /// Check the parameters; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.objects == 0 {
            return Err("--objects must be at least 1".into());
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a positive number of records per second".into());
        }
        if self.size_max == 0 || self.size_max > MAX_DLEN {
            return Err(format!("--size-max must be between 1 and {MAX_DLEN}"));
        }
        if !(self.size_median >= 1.0 && self.size_median.is_finite()) {
            return Err("--size-median must be at least 1".into());
        }
        if !(self.size_sigma >= 0.0 && self.size_sigma.is_finite()) {
            return Err("--size-sigma must be zero or positive".into());
        }
        if !(self.zipf >= 0.0 && self.zipf.is_finite()) {
            return Err("--zipf must be zero or positive".into());
        }
        for (name, v) in [
            ("--write-ratio", self.write_ratio),
            ("--inval-ratio", self.inval_ratio),
            ("--noncurrent-ratio", self.noncurrent_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if self.write_ratio + self.inval_ratio > 1.0 {
            return Err("--write-ratio plus --inval-ratio must not exceed 1".into());
        }
        if self.start == 0 {
            return Err("--start must not be 0 (a zero timestamp marks garbage)".into());
        }
        Ok(())
    }
}

/// splitmix64: small, fast, good enough for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

struct Model<'a, W: Write> {
    o: &'a GenOptions,
    w: TraceWriter<W>,
    rng: Rng,
    cdf: Vec<f64>,
    /// Per object: current tid, previous tid (0 = none), data size.
    tid: Vec<u64>,
    prev: Vec<u64>,
    size: Vec<u32>,
    /// The modelled client cache: object → cached tid; FIFO of (object, tid).
    cached: Vec<u64>,
    fifo: VecDeque<(u32, u64)>,
    cached_bytes: u64,
    last_tid: u64,
    written: u64,
    /// Non-restart records written (drives the clock).
    clock: u64,
    restarts_at: Vec<u64>,
    garbage_at: Vec<u64>,
}

const OVERHEAD: u64 = 43;

/// Write a synthetic trace to `out`; returns the number of bytes written.
pub fn generate<W: Write>(o: &GenOptions, out: W) -> io::Result<u64> {
    o.validate()
        .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    let mut rng = Rng::new(o.seed);
    let n = o.objects as usize;
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for rank in 0..n {
        acc += 1.0 / ((rank + 1) as f64).powf(o.zipf);
        cdf.push(acc);
    }
    let base_tid = 0x040d_2b3b_0000_0000u64;
    let mut size = Vec::with_capacity(n);
    for _ in 0..n {
        size.push(sample_size(o, &mut rng));
    }
    let last = o.records.saturating_sub(2).max(1);
    let mut restarts_at: Vec<u64> = (1..=u64::from(o.restarts))
        .map(|k| (k * o.records / (u64::from(o.restarts) + 1)).clamp(1, last))
        .collect();
    restarts_at.dedup();
    let mut garbage_at: Vec<u64> = (0..o.garbage)
        .map(|_| 1 + rng.below(o.records.saturating_sub(1).max(1)))
        .collect();
    garbage_at.sort_unstable();
    let mut m = Model {
        o,
        w: TraceWriter::new(out),
        rng,
        cdf,
        tid: vec![base_tid; n],
        prev: vec![0; n],
        size,
        cached: vec![0; n],
        fifo: VecDeque::new(),
        cached_bytes: 0,
        last_tid: base_tid,
        written: 0,
        clock: 0,
        restarts_at,
        garbage_at,
    };
    m.run()?;
    let bytes = m.w.bytes_written();
    m.w.finish()?;
    Ok(bytes)
}

fn sample_size(o: &GenOptions, rng: &mut Rng) -> u32 {
    let v = (o.size_median.ln() + o.size_sigma * rng.normal()).exp();
    (v.round().clamp(1.0, f64::from(o.size_max))) as u32
}

impl<W: Write> Model<'_, W> {
    fn full(&self) -> bool {
        self.written >= self.o.records
    }

    fn ts(&self) -> u32 {
        let secs = (self.clock as f64 / self.o.rate) as u64;
        u32::try_from(u64::from(self.o.start) + secs).unwrap_or(u32::MAX)
    }

    /// Write one record unless the trace is complete.
    fn rec(&mut self, code: u8, obj: u32, tid1: u64, tid2: u64, dlen: u32) -> io::Result<()> {
        if self.full() {
            return Ok(());
        }
        while self.garbage_at.first().is_some_and(|&g| g <= self.written) {
            self.garbage_at.remove(0);
            let k = 1 + self.rng.below(3) as usize;
            self.w.raw(&vec![0u8; 8 * k])?;
        }
        let ts = self.ts();
        self.w
            .record(ts, code, u64::from(obj) + 1, tid1, tid2, u64::from(dlen))?;
        self.written += 1;
        self.clock += 1;
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        // Same timestamp as the record that follows: the clock does not move.
        self.w.restart(self.ts())?;
        self.written += 1;
        Ok(())
    }

    fn pick(&mut self) -> u32 {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let u = self.rng.unit() * total;
        let i = self.cdf.partition_point(|&c| c <= u);
        i.min(self.cdf.len() - 1) as u32
    }

    fn new_tid(&mut self) -> u64 {
        self.last_tid += 1 + self.rng.below(1 << 20);
        self.last_tid
    }

    fn uncache(&mut self, obj: u32) {
        let i = obj as usize;
        if self.cached[i] != 0 {
            self.cached[i] = 0;
            self.cached_bytes -= OVERHEAD + u64::from(self.size[i]);
        }
    }

    fn cache(&mut self, obj: u32) {
        let i = obj as usize;
        self.uncache(obj);
        let need = OVERHEAD + u64::from(self.size[i]);
        if need >= self.o.cache_size {
            return;
        }
        while self.cached_bytes + need > self.o.cache_size {
            let Some((o, t)) = self.fifo.pop_front() else {
                break;
            };
            if self.cached[o as usize] == t {
                self.uncache(o);
            }
        }
        self.cached[i] = self.tid[i];
        self.cached_bytes += need;
        self.fifo.push_back((obj, self.tid[i]));
    }

    /// A new revision of `obj` committed by someone: invalidate, maybe store (own commit).
    fn commit(&mut self, obj: u32, own: bool) -> io::Result<()> {
        let i = obj as usize;
        let tid = self.new_tid();
        let code = if self.cached[i] != 0 { 0x1c } else { 0x10 };
        self.rec(code, obj, tid, 0, 0)?;
        self.uncache(obj);
        self.prev[i] = self.tid[i];
        self.tid[i] = tid;
        self.size[i] = sample_size(self.o, &mut self.rng);
        if own {
            self.rec(0x52, obj, tid, 0, self.size[i])?;
            self.cache(obj);
        }
        Ok(())
    }

    fn load(&mut self, obj: u32) -> io::Result<()> {
        let i = obj as usize;
        if self.prev[i] != 0 && self.rng.unit() < self.o.noncurrent_ratio {
            // A read at an old snapshot: the previous revision.
            if self.rng.below(2) == 0 {
                self.rec(0x26, obj, 0, self.prev[i], 0)?;
            } else {
                let before = self.tid[i];
                self.rec(0x24, obj, 0, before, 0)?;
                self.rec(0x24, obj, 0, before, 0)?;
                let size = sample_size(self.o, &mut self.rng);
                self.rec(0x54, obj, self.prev[i], self.tid[i], size)?;
            }
            return Ok(());
        }
        if self.cached[i] == self.tid[i] {
            return self.rec(0x22, obj, self.tid[i], 0, self.size[i]);
        }
        let before = self.last_tid + 1;
        for _ in 0..2 {
            self.rec(0x20, obj, 0, 0, 0)?;
            self.rec(0x24, obj, 0, before, 0)?;
        }
        self.rec(0x52, obj, self.tid[i], 0, self.size[i])?;
        self.cache(obj);
        Ok(())
    }

    fn verification(&mut self) -> io::Result<()> {
        let k = self.rng.below(4);
        for _ in 0..k {
            let obj = self.pick();
            let code = if self.cached[obj as usize] != 0 {
                0x1e
            } else {
                0x10
            };
            self.rec(code, obj, 0, 0, 0)?;
            self.uncache(obj);
        }
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        self.restart()?;
        while !self.full() {
            if self.restarts_at.first().is_some_and(|&r| r <= self.written)
                && self.written + 2 <= self.o.records
            {
                self.restarts_at.remove(0);
                self.restart()?;
                self.verification()?;
                continue;
            }
            let obj = self.pick();
            let u = self.rng.unit();
            if u < self.o.write_ratio {
                self.commit(obj, true)?;
            } else if u < self.o.write_ratio + self.o.inval_ratio {
                self.commit(obj, false)?;
            } else if u < self.o.write_ratio + self.o.inval_ratio + 0.001 {
                // A conflict: the client invalidates without a tid.
                let code = if self.cached[obj as usize] != 0 {
                    0x1e
                } else {
                    0x10
                };
                self.rec(code, obj, 0, 0, 0)?;
                self.uncache(obj);
            } else {
                self.load(obj)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::{Item, Realign, TraceReader};
    use super::*;

    #[allow(clippy::type_complexity)]
    fn read_all(b: &[u8]) -> (Vec<(u32, u8, u64, u64, u32)>, u64) {
        let mut r = TraceReader::new(b, Realign::Resync);
        let mut v = Vec::new();
        let mut skipped = 0;
        while let Some(item) = r.next_item().unwrap() {
            match item {
                Item::Record { rec, .. } => {
                    v.push((rec.ts, rec.code(), rec.tid1, rec.tid2, rec.dlen()))
                }
                Item::Misaligned { .. } => skipped += 1,
            }
        }
        (v, skipped)
    }

    #[test]
    fn exact_record_count_and_shapes() {
        let o = GenOptions {
            records: 5000,
            objects: 200,
            restarts: 3,
            garbage: 4,
            cache_size: 50_000,
            noncurrent_ratio: 0.05,
            ..GenOptions::default()
        };
        let mut out = Vec::new();
        generate(&o, &mut out).unwrap();
        let (recs, skipped) = read_all(&out);
        assert_eq!(recs.len(), 5000);
        assert!(skipped >= 4);
        assert_eq!(recs[0].1, 0x00);
        assert_eq!(recs.iter().filter(|r| r.1 == 0).count(), 4);
        assert_ne!(recs.last().unwrap().1, 0x00);
        for w in recs.windows(2) {
            assert!(w[0].0 <= w[1].0, "time goes forward");
            if w[0].1 == 0 {
                assert_eq!(w[0].0, w[1].0, "restart shares its timestamp");
            }
        }
        for code in [0x10, 0x1c, 0x20, 0x22, 0x24, 0x52, 0x54] {
            assert!(recs.iter().any(|r| r.1 == code), "no {code:#x} record");
        }
        assert!(recs.iter().filter(|r| r.1 & 0x40 != 0).all(|r| r.4 >= 1));
        assert!(recs
            .iter()
            .filter(|r| r.1 == 0x24 || r.1 == 0x26)
            .all(|r| r.2 == 0));
        // Same seed, same bytes.
        let mut again = Vec::new();
        generate(&o, &mut again).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn rejects_bad_parameters() {
        let o = GenOptions {
            size_max: MAX_DLEN + 1,
            ..GenOptions::default()
        };
        assert!(o.validate().is_err());
        let o = GenOptions {
            rate: 0.0,
            ..GenOptions::default()
        };
        assert!(generate(&o, Vec::new()).is_err());
    }
}
