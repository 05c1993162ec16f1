//! The reference scanner against every data record of the FileStorage fixtures:
//! `references` must equal the sidecar's `refs` (exactly ZODB's `referencesf`:
//! strong refs, pickle order, duplicates kept), `scan_references` its `pids` (every
//! persistent id with its form), and `pickle_class_name` its `class`.
//!
//! Records are read from the .fs files by a minimal test-only reader (spec
//! filestorage.md §2: 23-byte transaction headers, 42-byte data record headers).

use serde_json::Value as J;
use std::path::PathBuf;
use zeo::storage::refs::{pickle_class_name, references, scan_references};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filestorage")
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |a, &c| (a << 8) | c as u64)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

/// (record position, oid, data) for every record with data, walking forward
/// from offset 4 while whole transactions fit in the file.
fn data_records(fs: &[u8]) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    assert_eq!(&fs[..4], b"FS30");
    let mut out = Vec::new();
    let mut pos = 4usize;
    while pos + 23 <= fs.len() {
        let tlen = be(&fs[pos + 8..pos + 16]) as usize;
        if pos + tlen + 8 > fs.len() {
            break;
        }
        if fs[pos + 16] == b'c' {
            break; // an unfinished (checkpoint) transaction is not part of the data
        }
        let (ul, dl, el) = (
            be(&fs[pos + 17..pos + 19]) as usize,
            be(&fs[pos + 19..pos + 21]) as usize,
            be(&fs[pos + 21..pos + 23]) as usize,
        );
        let mut r = pos + 23 + ul + dl + el;
        let end = pos + tlen;
        while r < end {
            let oid = fs[r..r + 8].to_vec();
            let plen = be(&fs[r + 34..r + 42]) as usize;
            if plen > 0 {
                out.push((r as u64, oid, fs[r + 42..r + 42 + plen].to_vec()));
                r += 42 + plen;
            } else {
                r += 50;
            }
        }
        assert_eq!(r, end, "records must fill the transaction at {pos}");
        pos += tlen + 8;
    }
    out
}

#[test]
fn every_fixture_record_matches_its_sidecar() {
    let mut checked = 0;
    let mut pids_seen = std::collections::BTreeSet::new();
    let mut names: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        let j: J =
            serde_json::from_str(&std::fs::read_to_string(dir().join(&name)).unwrap()).unwrap();
        let fs = std::fs::read(dir().join(j["file"].as_str().unwrap())).unwrap();
        let recs = data_records(&fs);
        let mut expected = std::collections::HashMap::new();
        for t in j["format"]["transactions"].as_array().unwrap() {
            for r in t["records"].as_array().unwrap() {
                if r["plen"].as_u64().unwrap() > 0 {
                    expected.insert(r["pos"].as_u64().unwrap(), r.clone());
                }
            }
        }
        assert_eq!(recs.len(), expected.len(), "{name}: record count");
        for (pos, oid, data) in recs {
            let want = &expected[&pos];
            let ctx = format!("{name} record at {pos}");
            assert_eq!(hex(&oid), want["oid"].as_str().unwrap(), "{ctx}");
            let refs: Vec<String> = references(&data)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"))
                .iter()
                .map(|o| hex(&o.to_bytes()))
                .collect();
            let want_refs: Vec<String> = want["refs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            assert_eq!(refs, want_refs, "{ctx}: refs");
            let pids = scan_references(&data).unwrap();
            let want_pids = want["pids"].as_array().unwrap();
            assert_eq!(pids.len(), want_pids.len(), "{ctx}: pids");
            for (p, w) in pids.iter().zip(want_pids) {
                assert_eq!(p.form.name(), w["form"].as_str().unwrap(), "{ctx}");
                assert_eq!(hex(&p.oid), w["oid"].as_str().unwrap(), "{ctx}");
                assert_eq!(
                    p.class.as_deref(),
                    w.get("class").and_then(J::as_str),
                    "{ctx}"
                );
                assert_eq!(
                    p.database.as_deref(),
                    w.get("database").and_then(J::as_str),
                    "{ctx}"
                );
                assert_eq!(p.pickle as u64, w["pickle"].as_u64().unwrap(), "{ctx}");
                pids_seen.insert(p.form.name());
            }
            assert_eq!(
                pickle_class_name(&data).as_deref(),
                want["class"].as_str(),
                "{ctx}: class"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 398, "every data record of every fixture");
    assert_eq!(
        pids_seen.into_iter().collect::<Vec<_>>(),
        [
            "legacy_weak",
            "multi_db",
            "multi_db_class",
            "oid",
            "oid_class",
            "weak"
        ]
    );
}

/// Deterministic robustness: mutated and truncated fixture records never panic.
#[test]
fn robustness_refs_scanner() {
    let mut seeds = Vec::new();
    for f in ["btree_many.fs", "xrefs_main.fs", "undo.fs", "blob_bushy.fs"] {
        let fs = std::fs::read(dir().join(f)).unwrap();
        seeds.extend(data_records(&fs).into_iter().map(|(_, _, d)| d));
    }
    let mut x = 0x853c49e6748fea9bu64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let s = &seeds[(next() % seeds.len() as u64) as usize];
        let mut d = s.clone();
        match i % 4 {
            0 => d.truncate((next() % (d.len() as u64 + 1)) as usize),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let j = (next() % d.len() as u64) as usize;
                    d[j] = next() as u8;
                }
            }
            2 => {
                let j = (next() % (d.len() as u64 + 1)) as usize;
                let extra: Vec<u8> = (0..1 + next() % 16).map(|_| next() as u8).collect();
                d.splice(j..j, extra);
            }
            _ => d = (0..next() % 80).map(|_| next() as u8).collect(),
        }
        let _ = references(&d);
        let _ = scan_references(&d);
        let _ = pickle_class_name(&d);
    }
    // Every truncation of a record with references fails cleanly.
    let rich = seeds.iter().max_by_key(|s| s.len()).unwrap();
    for cut in 0..rich.len() - 1 {
        let _ = references(&rich[..cut]);
    }
}
