//! `zeo cache-simul`: the equivalent of ZEO's `cache_simul.py` (spec §6): its command
//! line (argparse-compatible, byte-identical help and errors) and its driver, which
//! feeds every record to an overall and a per-interval `CircularSim` and prints one
//! line per interval, the dashes and the final line exactly as Python does.
//!
//! Invariant: the driver restarts the overall simulation at interval boundaries until
//! the interval simulation is warm, as Python does; the final line is therefore not a
//! grand total (spec §6.3).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};

use super::argparse::{self, ArgError, Handler, Kind, Opt, Spec};
use super::circular::{CircularSim, Event, OidTable, HEADER_SIZE};
use super::format::{self, commas, CtimeCache};
use super::hash::OidInterner;
use super::reader::{Item, Realign, Source, TraceReader};
use super::stats::parse_interval;

const MB: f64 = 1_048_576.0;
/// Records per batch of the driver loop.
const BATCH: usize = 32;

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
    let mut sim = CircularSim::new(opts.cachelimit, opts.rearrange, 0);
    let mut isim = CircularSim::new(opts.cachelimit, opts.rearrange, 1);
    let mut table = OidTable::default();
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
    // Records are handled in small batches: touching the per-oid state of a whole
    // batch first lets the CPU fetch those (random) cache lines in parallel.
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    let mut more = true;
    while more {
        batch.clear();
        while batch.len() < BATCH {
            match reader.next_item()? {
                None => {
                    more = false;
                    break;
                }
                Some(Item::Misaligned { .. }) => {}
                Some(Item::Record { rec, .. }) => batch.push(Event {
                    ts: rec.ts,
                    dlen: i64::from(rec.dlen()),
                    code: rec.code(),
                    oid: interner.intern(rec.oid),
                    tid1: rec.tid1,
                    tid2: rec.tid2,
                }),
            }
        }
        for ev in &batch {
            table.ensure(ev.oid);
        }
        let mut touched = 0u32;
        for ev in &batch {
            touched ^= table.touch(ev.oid);
        }
        std::hint::black_box(touched);
        for ev in &batch {
            let this = u64::from(ev.ts) / opts.interval;
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
            sim.event(ev, &mut table);
            isim.event(ev, &mut table);
        }
    }
    isim.report(out, &mut ctime)?;
    sim.finish(out, &mut ctime)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_python() {
        assert_eq!(parse_size("0.3"), Ok(314_572));
        assert_eq!(parse_size("20"), Ok(20 * 1_048_576));
        assert!(parse_size("x").is_err());
        assert!(parse_size("inf").is_err());
    }
}
