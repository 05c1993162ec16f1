//! ZEO client-cache traces (spec cache-trace.md): the record layout and a pure record
//! parser (`record`), a streaming reader for plain, `.gz` and standard-input traces
//! (`reader`), a writer and a synthetic-trace generator (`writer`, `generate`), the
//! `cache_stats` and `cache_simul` equivalents (`stats`, `simul` with its engine
//! `circular`), the per-record dumper
//! (`dump`) and the Python-compatible formatting and argument-parsing helpers
//! (`format`, `argparse`).
//!
//! Invariants: nothing here panics on input bytes; every byte count and offset printed
//! is a position in the *uncompressed* stream; output of `stats` and `simul` is
//! byte-identical to ZEO 6.2's scripts except for the documented improvements
//! (docs/compatibility.md, "Cache trace tools").

pub mod argparse;
pub mod circular;
pub mod dump;
pub mod format;
pub mod generate;
pub mod hash;
pub mod reader;
pub mod record;
pub mod simul;
pub mod stats;
pub mod writer;

use std::fmt;

/// Errors reading or writing a trace.
#[derive(Debug)]
pub enum TraceError {
    /// An I/O error on a named trace file (or `-` for standard input).
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Bytes that cannot be a trace (e.g. a corrupt `.gz` stream, or a record the
    /// writer refuses to encode).
    Format {
        path: String,
        offset: u64,
        what: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, source } => write!(f, "{path}: {source}"),
            TraceError::Format { path, offset, what } => {
                write!(f, "{path}: at byte {offset}: {what}")
            }
        }
    }
}

impl std::error::Error for TraceError {}

/// Run a tool body with buffered standard output and standard error; returns its exit
/// status. A closed output pipe (`zeo cache-stats -v t | head`) ends the run quietly
/// with status 0; any other output error is reported.
pub fn run_with_stdio(
    f: impl FnOnce(&mut dyn std::io::Write, &mut dyn std::io::Write) -> std::io::Result<i32>,
) -> crate::Result<i32> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut err = std::io::stderr().lock();
    let result = f(&mut out, &mut err).and_then(|code| out.flush().map(|_| code));
    match result {
        Ok(code) => Ok(code),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(crate::Error::io("writing the output", e)),
    }
}
