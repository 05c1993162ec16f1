//! FileStorage figures for docs/benchmarks.md (not a test).
//!
//! `fs_bench gen PATH N`   write N objects (1000 per transaction, ~100-byte pickles)
//! `fs_bench open PATH`    open read-only, print time, index heap bytes and VmRSS
//! `fs_bench load PATH`    time load_before of every object from the page cache

use std::time::Instant;

use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::tid::{Oid, Tid};
use zeo::storage::{Storage, TxnMeta, TxnStatus};

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pickle(i: u64) -> Vec<u8> {
    let v = format!("value-{i:012}-padding-padding-padding");
    let mut p = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03X\x01\x00\x00\x00kq\x04X".to_vec();
    p.extend_from_slice(&(v.len() as u32).to_le_bytes());
    p.extend_from_slice(v.as_bytes());
    p.extend_from_slice(b"q\x05ss.");
    p
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[2];
    match args[1].as_str() {
        "gen" => {
            let n: u64 = args[3].parse().unwrap();
            let s = FileStorage::open(
                path,
                Options {
                    create: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let t0 = Instant::now();
            let mut oid = 0;
            while oid < n {
                let t = s
                    .tpc_begin(&TxnMeta::default(), None, TxnStatus::Normal)
                    .unwrap();
                for _ in 0..1000.min(n - oid) {
                    s.store(&t, Oid(oid), Tid::ZERO, &pickle(oid)).unwrap();
                    oid += 1;
                }
                s.tpc_vote(&t).unwrap();
                s.tpc_finish(t).unwrap();
            }
            s.close().unwrap();
            println!(
                "wrote {n} objects, {} bytes, in {:.2?}",
                std::fs::metadata(path).unwrap().len(),
                t0.elapsed()
            );
        }
        "open" => {
            let before = rss_kb();
            let t0 = Instant::now();
            let s = FileStorage::open(
                path,
                Options {
                    read_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let el = t0.elapsed();
            println!(
                "open: {:.3?}, {} objects, index heap {:.1} MB, RSS {:.1} MB (before open {:.1} MB)",
                el,
                s.len(),
                s.index_heap_bytes() as f64 / 1e6,
                rss_kb() as f64 / 1024.0,
                before as f64 / 1024.0
            );
        }
        "load" => {
            let s = FileStorage::open(
                path,
                Options {
                    read_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let n = s.len();
            let t0 = Instant::now();
            for i in 0..n {
                s.load_before(Oid(i), Tid::MAX).unwrap().unwrap();
            }
            println!(
                "load_before: {:.2} us per call over {n} objects",
                t0.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
        _ => panic!("usage: fs_bench gen|open|load PATH [N]"),
    }
}
