//! Storage benchmark driver (not a timed test; run by scripts/bench-storage.sh, which
//! runs the same measurements with Python ZODB and records both in
//! docs/benchmarks.md).
//!
//! Subcommands (cargo appends `--bench`, which is ignored):
//! - `gen PATH OBJECTS PAD`: a Data.fs with a root → 1000-ish containers → leaves
//!   tree, each leaf a PersistentMapping pickle padded to about PAD bytes, 1000
//!   objects per transaction;
//! - `gen-garbage PATH OBJECTS PAD`: like `gen`, then every leaf rewritten once, so
//!   half the file is old revisions (garbage for a pack to now);
//! - `open PATH`: open read-only, print seconds, objects and resident memory;
//! - `pack PATH`: pack with GC to now, print seconds and sizes;
//! - `loadbefore PATH N`: N random `loadBefore(oid, max)` calls, print µs per call.

use std::path::Path;
use std::time::Instant;

use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::tid::{Oid, Tid};
use zeo::storage::{Storage, TxnMeta, TxnStatus};

fn pickle(refs: &[u64], pad: usize) -> Vec<u8> {
    let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03(".to_vec();
    v.extend_from_slice(b"X\x03\x00\x00\x00pad");
    v.push(b'B');
    v.extend_from_slice(&(pad as u32).to_le_bytes());
    v.extend(std::iter::repeat_n(b'x', pad));
    for (i, oid) in refs.iter().enumerate() {
        v.push(b'J');
        v.extend_from_slice(&(i as i32).to_le_bytes());
        v.extend_from_slice(b"C\x08");
        v.extend_from_slice(&oid.to_be_bytes());
        v.extend_from_slice(b"cpersistent.mapping\nPersistentMapping\n\x86Q");
    }
    v.extend_from_slice(b"us.");
    v
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|x| x.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

fn meta() -> TxnMeta {
    TxnMeta {
        user: b"/ bench".to_vec(),
        description: b"bench".to_vec(),
        extension: vec![],
    }
}

fn generate(path: &Path, objects: u64, pad: usize, rewrite: bool) {
    let _ = std::fs::remove_file(path);
    let mut idx = path.as_os_str().to_os_string();
    idx.push(".index");
    let _ = std::fs::remove_file(&idx);
    let s = FileStorage::open(path, Options::default()).unwrap();
    let per = 1000u64;
    let containers = objects.div_ceil(per);
    // oids: 0 root, 1..=containers, then leaves.
    let leaf0 = containers + 1;
    let mut serial = vec![Tid::ZERO; (leaf0 + objects) as usize];
    let t = s.tpc_begin(&meta(), None, TxnStatus::Normal).unwrap();
    let root_refs: Vec<u64> = (1..=containers).collect();
    s.store(&t, Oid(0), Tid::ZERO, &pickle(&root_refs, 0))
        .unwrap();
    for c in 1..=containers {
        let first = leaf0 + (c - 1) * per;
        let refs: Vec<u64> = (first..(first + per).min(leaf0 + objects)).collect();
        s.store(&t, Oid(c), Tid::ZERO, &pickle(&refs, 0)).unwrap();
    }
    s.tpc_vote(&t).unwrap();
    let tid = s.tpc_finish(t).unwrap();
    for o in 0..leaf0 {
        serial[o as usize] = tid;
    }
    let rounds = if rewrite { 2 } else { 1 };
    for _ in 0..rounds {
        let mut o = leaf0;
        while o < leaf0 + objects {
            let t = s.tpc_begin(&meta(), None, TxnStatus::Normal).unwrap();
            let end = (o + per).min(leaf0 + objects);
            for x in o..end {
                s.store(&t, Oid(x), serial[x as usize], &pickle(&[], pad))
                    .unwrap();
            }
            s.tpc_vote(&t).unwrap();
            let tid = s.tpc_finish(t).unwrap();
            for x in o..end {
                serial[x as usize] = tid;
            }
            o = end;
        }
    }
    s.close().unwrap();
    println!(
        "generated {} ({} bytes, {} objects)",
        path.display(),
        std::fs::metadata(path).unwrap().len(),
        leaf0 + objects
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match a.as_slice() {
        ["gen", p, n, pad] => generate(
            Path::new(p),
            n.parse().unwrap(),
            pad.parse().unwrap(),
            false,
        ),
        ["gen-garbage", p, n, pad] => {
            generate(Path::new(p), n.parse().unwrap(), pad.parse().unwrap(), true)
        }
        ["open", p] => {
            let before = rss_kb();
            let t0 = Instant::now();
            let s = FileStorage::open(
                p,
                Options {
                    read_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let dt = t0.elapsed().as_secs_f64();
            println!(
                "open {dt:.3} s, {} objects, RSS {:.1} MB (before open {:.1} MB), index heap {:.1} MB",
                s.len(),
                rss_kb() as f64 / 1024.0,
                before as f64 / 1024.0,
                s.index_heap_bytes() as f64 / 1048576.0
            );
        }
        ["pack", p] => {
            let s = FileStorage::open(p, Options::default()).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let t0 = Instant::now();
            let out = s.pack(now, true).unwrap();
            println!(
                "pack {:.3} s: {out:?}, peak RSS {:.1} MB",
                t0.elapsed().as_secs_f64(),
                peak_rss_kb() as f64 / 1024.0
            );
        }
        ["loadbefore", p, n] => {
            let s = FileStorage::open(
                p,
                Options {
                    read_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let n: u64 = n.parse().unwrap();
            let max = s.len();
            let mut x = 0x9e3779b97f4a7c15u64;
            let oids: Vec<Oid> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Oid(x % max)
                })
                .collect();
            // Warm the page cache.
            for &o in oids.iter().take(1000) {
                let _ = s.load_before(o, Tid(0x7fff_ffff_ffff_ffff));
            }
            let t0 = Instant::now();
            for &o in &oids {
                std::hint::black_box(s.load_before(o, Tid(0x7fff_ffff_ffff_ffff)).unwrap());
            }
            println!(
                "loadBefore {:.2} us per call ({n} calls)",
                t0.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
        _ => {
            eprintln!("usage: storage (gen|gen-garbage) PATH OBJECTS PAD | open PATH | pack PATH | loadbefore PATH N");
            std::process::exit(2);
        }
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|x| x.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}
