//! Property test: random histories (commits of small pickles holding persistent
//! references, conflicting stores, read conflicts, aborts before and after vote,
//! undos, deletes, packs with and without GC, FileStorage reopen with and without its
//! index) run against FileStorage and MappingStorage with identical explicit tids;
//! after every step every load, loadBefore (at every tid and at max), history,
//! undoLog, iterator, len, size and last tid must agree. Fixed seeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::mapping::MappingStorage;
use zeo::storage::tid::{Oid, Tid};
use zeo::storage::{SResult, Storage, StorageError, TxnHandle, TxnMeta, TxnStatus};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// PersistentMapping pickle whose state holds `{'data': {i: ref}}` for each oid.
fn pickle(refs: &[Oid], salt: u64) -> Vec<u8> {
    let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03(".to_vec();
    v.extend_from_slice(b"X\x04\x00\x00\x00salt");
    v.push(b'J');
    v.extend_from_slice(&(salt as u32 as i32).to_le_bytes());
    for (i, oid) in refs.iter().enumerate() {
        v.push(b'K');
        v.push(i as u8);
        v.extend_from_slice(b"C\x08");
        v.extend_from_slice(&oid.to_bytes());
        v.extend_from_slice(b"cpersistent.mapping\nPersistentMapping\n\x86Q");
    }
    v.extend_from_slice(b"us.");
    v
}

fn meta(desc: String) -> TxnMeta {
    TxnMeta {
        user: b"/ prop".to_vec(),
        description: desc.into_bytes(),
        extension: vec![],
    }
}

/// Errors compared by Python class (messages may be phrased differently).
fn kind<T>(r: &SResult<T>) -> Result<&T, String> {
    match r {
        Ok(v) => Ok(v),
        Err(StorageError::Conflict(c)) | Err(StorageError::ReadConflict(c)) => {
            Err(format!("conflict {c:?}"))
        }
        Err(e) => Err(e.python_class().to_string()),
    }
}

struct World {
    dir: PathBuf,
    fs: FileStorage,
    ms: MappingStorage,
    tids: Vec<Tid>,
    clock: f64,
    max_oid: u64,
    packs: usize,
    undos: usize,
}

fn open_fs(dir: &Path) -> FileStorage {
    FileStorage::open(dir.join("Data.fs"), Options::default()).unwrap()
}

impl World {
    fn compare(&self, step: usize) {
        let (f, m) = (&self.fs, &self.ms);
        let ctx = |what: &str| format!("step {step}: {what}");
        assert_eq!(f.len(), m.len(), "{}", ctx("len"));
        assert_eq!(f.size(), m.size(), "{}", ctx("size"));
        assert_eq!(
            f.last_transaction(),
            m.last_transaction(),
            "{}",
            ctx("last tid")
        );
        assert_eq!(
            kind(&f.undo_log(0, 1000)),
            kind(&m.undo_log(0, 1000)),
            "{}",
            ctx("undoLog")
        );
        let fi: Vec<_> = f
            .iterator(None, None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mi: Vec<_> = m
            .iterator(None, None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(fi, mi, "{}", ctx("iterator"));
        let mut probes = self.tids.clone();
        probes.push(Tid(0x7fff_ffff_ffff_ffff));
        for o in 0..=self.max_oid + 1 {
            let oid = Oid(o);
            assert_eq!(
                kind(&f.load(oid)),
                kind(&m.load(oid)),
                "{}",
                ctx(&format!("load {o}"))
            );
            assert_eq!(
                kind(&f.history(oid, 1000)),
                kind(&m.history(oid, 1000)),
                "{}",
                ctx(&format!("history {o}"))
            );
            for &t in &probes {
                assert_eq!(
                    kind(&f.load_before(oid, t)),
                    kind(&m.load_before(oid, t)),
                    "{}",
                    ctx(&format!("loadBefore {o} {t:?}"))
                );
            }
        }
    }

    fn begin(&mut self, desc: String) -> (TxnHandle, TxnHandle) {
        self.clock += 1.0;
        let tid = Tid::from_unix(self.clock);
        let m = meta(desc);
        let a = self.fs.tpc_begin(&m, Some(tid), TxnStatus::Normal).unwrap();
        let b = self.ms.tpc_begin(&m, Some(tid), TxnStatus::Normal).unwrap();
        (a, b)
    }

    fn finish(&mut self, a: TxnHandle, b: TxnHandle, step: usize) {
        assert_eq!(
            kind(&self.fs.tpc_vote(&a)),
            kind(&self.ms.tpc_vote(&b)),
            "step {step}: vote"
        );
        let ta = self.fs.tpc_finish(a).unwrap();
        let tb = self.ms.tpc_finish(b).unwrap();
        assert_eq!(ta, tb);
        self.tids.push(ta);
    }

    fn serial(&self, oid: Oid) -> Tid {
        match self.fs.load(oid) {
            Ok((_, t)) => t,
            Err(_) => self
                .fs
                .history(oid, 1)
                .map(|h| h[0].tid)
                .unwrap_or(Tid::ZERO),
        }
    }

    fn live(&self) -> Vec<Oid> {
        (0..=self.max_oid)
            .map(Oid)
            .filter(|&o| self.fs.load(o).is_ok())
            .collect()
    }

    fn step(&mut self, rng: &mut Rng, step: usize) {
        let roll = rng.below(100);
        if self.tids.is_empty() || roll < 45 {
            // Commit 1-4 objects; maybe a new one; refs to live objects.
            let (a, b) = self.begin(format!("commit {step}"));
            let live = self.live();
            let mut oids = BTreeSet::new();
            if self.tids.is_empty() {
                oids.insert(Oid(0));
            }
            for _ in 0..1 + rng.below(3) {
                if rng.chance(35) || live.is_empty() {
                    self.max_oid += 1;
                    oids.insert(Oid(self.max_oid));
                } else {
                    oids.insert(live[rng.below(live.len() as u64) as usize]);
                }
            }
            let new_oids: Vec<Oid> = oids.iter().copied().collect();
            for &oid in &new_oids {
                let mut refs = Vec::new();
                for _ in 0..rng.below(4) {
                    let pool: Vec<Oid> = live.iter().chain(new_oids.iter()).copied().collect();
                    refs.push(pool[rng.below(pool.len() as u64) as usize]);
                }
                if oid == Oid(0) {
                    // The root keeps most things alive; newly created objects hang off it.
                    refs.extend(new_oids.iter().filter(|&&o| o != Oid(0)));
                }
                let mut serial = self.serial(oid);
                if rng.chance(8) {
                    serial = Tid(serial.0.wrapping_add(1));
                }
                let data = pickle(&refs, rng.next());
                let ra = self.fs.store(&a, oid, serial, &data);
                let rb = self.ms.store(&b, oid, serial, &data);
                assert_eq!(kind(&ra), kind(&rb), "step {step}: store {oid:?}");
            }
            if rng.chance(6) {
                let oid = Oid(rng.below(self.max_oid + 1));
                let s = Tid(self.serial(oid).0 ^ rng.below(2));
                let ra = self.fs.check_current_serial(&a, oid, s);
                let rb = self.ms.check_current_serial(&b, oid, s);
                assert_eq!(kind(&ra), kind(&rb), "step {step}: checkCurrentSerial");
            }
            match rng.below(100) {
                0..=5 => {
                    self.fs.tpc_abort(a);
                    self.ms.tpc_abort(b);
                }
                6..=11 => {
                    assert_eq!(kind(&self.fs.tpc_vote(&a)), kind(&self.ms.tpc_vote(&b)));
                    self.fs.tpc_abort(a);
                    self.ms.tpc_abort(b);
                }
                _ => self.finish(a, b, step),
            }
        } else if roll < 55 {
            let live: Vec<Oid> = self.live().into_iter().filter(|&o| o != Oid(0)).collect();
            if live.is_empty() {
                return;
            }
            let oid = live[rng.below(live.len() as u64) as usize];
            let serial = self.serial(oid);
            let (a, b) = self.begin(format!("delete {step}"));
            let ra = self.fs.delete_object(&a, oid, serial);
            let rb = self.ms.delete_object(&b, oid, serial);
            assert_eq!(kind(&ra), kind(&rb), "step {step}: delete");
            self.finish(a, b, step);
        } else if roll < 72 {
            let log = self.fs.undo_log(0, 20).unwrap();
            assert_eq!(
                log,
                self.ms.undo_log(0, 20).unwrap(),
                "step {step}: undoLog"
            );
            if log.is_empty() {
                return;
            }
            let id = log[rng.below(log.len() as u64) as usize].id.clone();
            let (a, b) = self.begin(format!("undo {step}"));
            let ra = self.fs.undo(&a, &id).map(|mut v| {
                v.sort();
                v
            });
            let rb = self.ms.undo(&b, &id).map(|mut v| {
                v.sort();
                v
            });
            assert_eq!(kind(&ra), kind(&rb), "step {step}: undo");
            if ra.is_ok() && rng.chance(85) {
                self.undos += 1;
                self.finish(a, b, step);
            } else {
                self.fs.tpc_abort(a);
                self.ms.tpc_abort(b);
            }
        } else if roll < 88 {
            // Mostly recent pack times, so packs keep finding something to free.
            let n = self.tids.len() as u64;
            let i = n - 1 - rng.below(n.min(12));
            let t = self.tids[i as usize].time_time() + 0.5;
            let gc = rng.chance(60);
            let ra = self.fs.pack(t, gc);
            let rb = self.ms.pack(t, gc);
            assert_eq!(kind(&ra), kind(&rb), "step {step}: pack at {t} gc={gc}");
            if matches!(ra, Ok(zeo::storage::PackOutcome::Packed { .. })) {
                self.packs += 1;
            }
        } else {
            self.fs.close().unwrap();
            if rng.chance(50) {
                let _ = std::fs::remove_file(self.dir.join("Data.fs.index"));
            }
            self.fs = open_fs(&self.dir);
        }
    }
}

fn run(seed: u64, steps: usize) -> (usize, usize) {
    let d = tempfile::tempdir().unwrap();
    let mut w = World {
        dir: d.path().to_path_buf(),
        fs: open_fs(d.path()),
        ms: MappingStorage::new(),
        tids: Vec::new(),
        clock: 1717243200.25,
        max_oid: 0,
        packs: 0,
        undos: 0,
    };
    let mut rng = Rng(seed);
    for step in 0..steps {
        w.step(&mut rng, step);
        w.compare(step);
    }
    (w.packs, w.undos)
}

#[test]
fn filestorage_and_mappingstorage_agree() {
    let mut packs = 0;
    let mut undos = 0;
    for seed in [
        0x9e3779b97f4a7c15u64,
        0x1234_5678_9abc_def1,
        0xdead_beef_cafe_f00d,
        42,
    ] {
        let (p, u) = run(seed, 90);
        packs += p;
        undos += u;
    }
    assert!(packs >= 12, "only {packs} packs changed anything");
    assert!(undos >= 12, "only {undos} undos committed");
}
