//! `zeo trace`: clap arguments, wired to `cache::dump` (print/filter/follow) and
//! `cache::generate` (`--generate`).

use std::ffi::OsString;
use std::time::Duration;

use crate::cache::dump::{self, DumpOptions, LineFormat};
use crate::cache::generate::{self, GenOptions};
use crate::cache::reader::Source;
use crate::Error;

/// Arguments of `zeo trace`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Print, filter or follow a ZEO cache trace, or generate a synthetic one",
    after_help = "Each record prints as: DATE TIME CODE OID TID1 TID2 V|- DLEN  EVENT \
                  (--format stats: exactly the record lines of cache-stats -v)."
)]
pub struct Args {
    /// Trace to read: a file, a .gz file (by suffix), or - for standard input
    #[arg(required_unless_present = "generate")]
    pub tracefile: Option<OsString>,

    /// Show times in UTC instead of local time (TZ)
    #[arg(long)]
    pub utc: bool,

    /// Line format: `line`, or `stats` for exactly the cache-stats -v record lines
    #[arg(long, value_enum, default_value = "line")]
    pub format: Format,

    /// Prefix each line with the record's byte offset and raw code byte; list
    /// misaligned (zero-timestamp) heads
    #[arg(long)]
    pub offsets: bool,

    /// Only records of this oid (hex, e.g. 0x1a); repeat for several
    #[arg(long = "oid", value_name = "OID")]
    pub oids: Vec<String>,

    /// Only records with this event code (hex, after masking, e.g. 22); repeat for several
    #[arg(long = "code", value_name = "CODE")]
    pub codes: Vec<String>,

    /// Only records at or after TIME (epoch seconds or YYYY-MM-DD[THH:MM[:SS]], local
    /// time unless --utc)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only records at or before TIME (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Keep reading as the trace grows (plain files; stop with Ctrl-C)
    #[arg(short, long)]
    pub follow: bool,

    /// Write a synthetic trace to this file instead of reading one (.gz compresses)
    #[arg(long, value_name = "OUT", conflicts_with_all = ["tracefile", "follow"])]
    pub generate: Option<OsString>,

    #[command(flatten)]
    pub gen: Box<GenArgs>,
}

/// Line formats of `zeo trace`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Line,
    Stats,
}

/// Parameters of `--generate`.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Generator (with --generate)")]
pub struct GenArgs {
    /// Number of records to write
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Number of distinct objects
    #[arg(long, default_value_t = 10_000)]
    pub objects: u32,
    /// Median object (pickle) size in bytes; sizes are log-normal
    #[arg(long, default_value_t = 400.0)]
    pub size_median: f64,
    /// Log-normal sigma of object sizes
    #[arg(long, default_value_t = 1.0)]
    pub size_sigma: f64,
    /// Largest object size in bytes
    #[arg(long, default_value_t = 30_000)]
    pub size_max: u32,
    /// Zipf exponent of object popularity (0 = uniform)
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Fraction of operations that are this client's commits
    #[arg(long, default_value_t = 0.03)]
    pub write_ratio: f64,
    /// Fraction of operations that are invalidations from other clients
    #[arg(long, default_value_t = 0.05)]
    pub inval_ratio: f64,
    /// Fraction of reads at an old snapshot (non-current loads)
    #[arg(long, default_value_t = 0.005)]
    pub noncurrent_ratio: f64,
    /// Client restarts after the first start
    #[arg(long, default_value_t = 0)]
    pub restarts: u32,
    /// Size of the modelled client cache, in MB
    #[arg(long, default_value_t = 20.0)]
    pub cache_size: f64,
    /// Timestamp (epoch seconds) of the first record
    #[arg(long, default_value_t = 1_772_952_090)]
    pub start: u32,
    /// Records per second of trace time
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Runs of zero bytes to insert, as a crash leaves behind
    #[arg(long, default_value_t = 0)]
    pub garbage: u32,
    /// Seed of the pseudo-random generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: Args) -> crate::Result<i32> {
    if let Some(out) = &args.generate {
        return run_generate(out, &args.gen);
    }
    let Some(tracefile) = &args.tracefile else {
        return Err(Error::Usage(
            "a trace file (or --generate) is required".into(),
        ));
    };
    let src = Source::from_arg(tracefile);
    if args.follow && matches!(src, Source::Gzip(_)) {
        return Err(Error::Usage(
            "--follow needs a plain trace file; a .gz file cannot grow in place".into(),
        ));
    }
    let parse_time = |s: &Option<String>| {
        s.as_deref()
            .map(|t| dump::parse_time(t, args.utc))
            .transpose()
            .map_err(Error::Usage)
    };
    let o = DumpOptions {
        utc: args.utc,
        format: match args.format {
            Format::Line => LineFormat::Line,
            Format::Stats => LineFormat::Stats,
        },
        offsets: args.offsets,
        oids: args
            .oids
            .iter()
            .map(|s| dump::parse_oid(s))
            .collect::<Result<_, _>>()
            .map_err(Error::Usage)?,
        codes: args
            .codes
            .iter()
            .map(|s| dump::parse_code(s))
            .collect::<Result<_, _>>()
            .map_err(Error::Usage)?,
        since: parse_time(&args.since)?,
        until: parse_time(&args.until)?,
        follow: args.follow,
        poll: Duration::from_millis(200),
    };
    let mut result = Ok(());
    let code = crate::cache::run_with_stdio(|out, err| {
        result = dump::dump(&src, &o, out, err);
        Ok(0)
    })?;
    match result {
        // The reader of our output went away (`zeo trace t | head`): a quiet end.
        Err(crate::cache::TraceError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        Err(e) => Err(e.into()),
        Ok(()) => Ok(code),
    }
}

fn run_generate(out: &OsString, g: &GenArgs) -> crate::Result<i32> {
    let o = GenOptions {
        records: g.records,
        objects: g.objects,
        size_median: g.size_median,
        size_sigma: g.size_sigma,
        size_max: g.size_max,
        zipf: g.zipf,
        write_ratio: g.write_ratio,
        inval_ratio: g.inval_ratio,
        noncurrent_ratio: g.noncurrent_ratio,
        restarts: g.restarts,
        cache_size: (g.cache_size * 1_048_576.0).max(0.0) as u64,
        start: g.start,
        rate: g.rate,
        garbage: g.garbage,
        seed: g.seed,
    };
    o.validate().map_err(Error::Usage)?;
    let name = out.to_string_lossy().into_owned();
    let io_err = |e| Error::io(format!("writing {name}"), e);
    let file = std::fs::File::create(out).map_err(io_err)?;
    if let Source::Gzip(_) = Source::from_arg(out) {
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut gz = std::io::BufWriter::new(gz);
        generate::generate(&o, &mut gz).map_err(io_err)?;
        let gz = gz.into_inner().map_err(|e| io_err(e.into_error()))?;
        gz.finish().map_err(io_err)?;
    } else {
        generate::generate(&o, std::io::BufWriter::new(file)).map_err(io_err)?;
    }
    Ok(0)
}
