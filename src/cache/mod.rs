//! ZEO client-cache traces: the record reader/writer (plain, `.gz`, standard input)
//! and the `cache_stats` / `cache_simul` equivalents (spec cache-trace.md).

use std::fmt;

/// Errors reading or writing a trace.
#[derive(Debug)]
pub enum TraceError {
    Io {
        path: String,
        source: std::io::Error,
    },
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
