//! Deterministic robustness test for the trace reader and the tools fed by it: thousands
//! of truncated, bit-flipped, spliced and random inputs (xorshift PRNG, fixed seed) go
//! through the record parser, the streaming reader, `cache_stats` (every option) and
//! `cache_simul` (tiny to large caches). The test fails on any panic. The same code
//! paths are the cargo-fuzz target `fuzz/fuzz_targets/cache_trace_reader.rs`.

use std::io::{Cursor, Sink};

use zeo::cache::generate::{generate, GenOptions};
use zeo::cache::reader::{Item, Realign, TraceReader};
use zeo::cache::{record, simul, stats};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn exercise(data: &[u8], knob: u8) -> usize {
    let mut at = 0;
    while at < data.len() {
        match record::parse(&data[at..]) {
            record::Parsed::Record(r) => at += r.len(),
            record::Parsed::ZeroTimestamp => at += record::MISALIGNED_SKIP,
            record::Parsed::NeedMore(n) => {
                assert!(n > data.len() - at);
                break;
            }
        }
    }
    let mut records = 0;
    for realign in [Realign::Resync, Realign::SkipHead] {
        let mut r = TraceReader::new(Cursor::new(data), realign);
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Record { offset, rec } = item {
                assert!(offset + rec.len() as u64 <= data.len() as u64);
                if realign == Realign::Resync {
                    records += 1;
                }
            }
        }
        assert_eq!(r.bytes_read(), data.len() as u64);
    }
    let opts = stats::Options {
        verbose: knob & 1 != 0,
        quiet: knob & 2 != 0,
        sizes: true,
        histogram: true,
        interval: 60 + u64::from(knob % 8) * 300,
        ..stats::Options::default()
    };
    stats::run(
        &opts,
        Box::new(Cursor::new(data.to_vec())),
        &mut Sink::default(),
    )
    .unwrap();
    let sim = simul::Options {
        cachelimit: [13, 60, 100, 500, 5_000, 1 << 20][usize::from(knob) % 6],
        interval: 60,
        rearrange: [0.8, 0.0, -1.0, 2.0][usize::from(knob >> 3) % 4],
    };
    simul::run(
        &sim,
        Box::new(Cursor::new(data.to_vec())),
        &mut Sink::default(),
    )
    .unwrap();
    records
}

#[test]
fn mutated_truncated_and_random_traces_never_panic() {
    let mut base = Vec::new();
    generate(
        &GenOptions {
            records: 400,
            objects: 40,
            restarts: 3,
            garbage: 3,
            noncurrent_ratio: 0.1,
            cache_size: 3_000,
            ..GenOptions::default()
        },
        &mut base,
    )
    .unwrap();
    assert_eq!(exercise(&base, 0), 400);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for round in 0..3000u32 {
        let mut d = match round % 5 {
            // Truncation at any byte.
            0 => base[..rng.below(base.len() + 1)].to_vec(),
            // Bit flips.
            1 => {
                let mut d = base.clone();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(d.len());
                    d[i] ^= 1 << rng.below(8);
                }
                d
            }
            // A window of the trace at a misaligned start.
            2 => {
                let a = rng.below(base.len());
                let b = (a + rng.below(600)).min(base.len());
                base[a..b].to_vec()
            }
            // Splices of zeros and random bytes.
            3 => {
                let mut d = base.clone();
                let at = rng.below(d.len());
                let n = rng.below(64);
                let fill = if rng.below(2) == 0 {
                    0
                } else {
                    rng.next() as u8
                };
                d.splice(at..at, std::iter::repeat_n(fill, n));
                d
            }
            // Pure noise, including huge oid lengths and codes of every kind.
            _ => (0..rng.below(400)).map(|_| rng.next() as u8).collect(),
        };
        if round % 7 == 0 && !d.is_empty() {
            // Every head's oid length maxed out on some inputs.
            let i = rng.below(d.len());
            d[i] = 0xff;
        }
        parsed += exercise(&d, rng.next() as u8);
    }
    assert!(
        parsed > 100_000,
        "the mutations kept most records parseable ({parsed})"
    );
}
