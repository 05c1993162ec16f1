//! Fuzz the cache trace reader and everything fed by it: the pure record parser, the
//! streaming reader in both realignment modes, `cache_stats` with every output option
//! and `cache_simul` with a small cache. Any panic is a bug.
//!
//! Run: `cargo +nightly fuzz run cache_trace_reader` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Sink};
use zeo::cache::reader::{Realign, TraceReader};
use zeo::cache::{record, simul, stats};

fuzz_target!(|data: &[u8]| {
    // Pure parser at every offset.
    let mut at = 0;
    while at < data.len() {
        match record::parse(&data[at..]) {
            record::Parsed::Record(r) => at += r.len(),
            record::Parsed::ZeroTimestamp => at += record::MISALIGNED_SKIP,
            record::Parsed::NeedMore(_) => break,
        }
    }
    for realign in [Realign::Resync, Realign::SkipHead] {
        let mut r = TraceReader::new(Cursor::new(data), realign);
        while let Ok(Some(_)) = r.next_item() {}
        assert!(r.bytes_read() <= data.len() as u64);
    }
    let first = data.first().copied().unwrap_or(0);
    let opts = stats::Options {
        verbose: first & 1 != 0,
        quiet: first & 2 != 0,
        sizes: true,
        histogram: true,
        interval: 60 + u64::from(first) * 10,
        ..stats::Options::default()
    };
    let _ = stats::run(
        &opts,
        Box::new(Cursor::new(data.to_vec())),
        &mut Sink::default(),
    );
    let sim = simul::Options {
        cachelimit: 13 + i64::from(first) * 64,
        interval: 60,
        rearrange: 0.5,
    };
    let _ = simul::run(
        &sim,
        Box::new(Cursor::new(data.to_vec())),
        &mut Sink::default(),
    );
});
