//! Every Data.fs in tests/fixtures/filestorage against its JSON sidecar: the byte
//! level parse (`format`), what Python's FileStorage reports (`python_view`),
//! `loadBefore_probe`, recovery of the truncated vectors, the index file, blobs,
//! undoLog and history.

mod fs_common;

use std::fs;
use std::path::{Path, PathBuf};

use fs_common::*;
use serde_json::Value;
use zeo::storage::filestorage::index::Index;
use zeo::storage::filestorage::read::parse_image;
use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::tid::{Oid, Tid};
use zeo::storage::{Storage, StorageError};

const FILES: &[&str] = &[
    "root_only",
    "btree_many",
    "modified_many",
    "undo",
    "pack_source",
    "packed_gc",
    "packed_gc_late",
    "packed_nogc",
    "deleted",
    "xrefs_main",
    "xrefs_other",
    "truncated_data",
    "truncated_checkpoint",
    "truncated_header",
    "blob_bushy",
];

/// Copy a fixture into a fresh temp dir (never open fixtures in place).
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    fs::copy(fixture_dir().join(format!("{name}.fs")), &p).unwrap();
    (d, p)
}

fn ro() -> Options {
    Options {
        read_only: true,
        ..Default::default()
    }
}

fn check_format(name: &str, j: &Value) {
    let bytes = fs::read(fixture_dir().join(format!("{name}.fs"))).unwrap();
    let f = &j["format"];
    assert_eq!(
        f["file_size"].as_u64().unwrap(),
        bytes.len() as u64,
        "{name}"
    );
    let valid_end = f["valid_end"].as_u64().unwrap_or(bytes.len() as u64) as usize;
    let txns = parse_image(&bytes[..valid_end]).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let exp = f["transactions"].as_array().unwrap();
    // The sidecar lists the discarded transaction too for truncated files when complete.
    let exp: Vec<&Value> = exp
        .iter()
        .filter(|t| (t["pos"].as_u64().unwrap() as usize) < valid_end)
        .collect();
    assert_eq!(txns.len(), exp.len(), "{name}: transaction count");
    for (t, e) in txns.iter().zip(exp) {
        let ctx = format!("{name} txn at {}", t.pos);
        assert_eq!(t.pos, e["pos"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            t.header.tid,
            Tid(hex_u64(e["tid"].as_str().unwrap())),
            "{ctx}"
        );
        assert_eq!(t.header.tlen, e["tlen"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            (t.header.status as char).to_string(),
            e["status"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            t.header.ulen as u64,
            e["user_len"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            t.header.dlen as u64,
            e["description_len"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            t.header.elen as u64,
            e["extension_len"].as_u64().unwrap(),
            "{ctx}"
        );
        if let Some(u) = e["user"].as_str() {
            assert_eq!(String::from_utf8_lossy(&t.user), u, "{ctx}");
        }
        if let Some(d) = e["description"].as_str() {
            assert_eq!(String::from_utf8_lossy(&t.description), d, "{ctx}");
        }
        let recs = e["records"].as_array().unwrap();
        assert_eq!(t.records.len(), recs.len(), "{ctx}: record count");
        let tbuf = &bytes[t.pos as usize..];
        for (r, er) in t.records.iter().zip(recs) {
            let ctx = format!("{ctx} record at {}", r.pos);
            assert_eq!(r.pos, er["pos"].as_u64().unwrap(), "{ctx}");
            assert_eq!(
                r.header.oid,
                Oid(hex_u64(er["oid"].as_str().unwrap())),
                "{ctx}"
            );
            assert_eq!(
                r.header.tid,
                Tid(hex_u64(er["tid"].as_str().unwrap())),
                "{ctx}"
            );
            assert_eq!(r.header.prev, er["prev"].as_u64().unwrap(), "{ctx}");
            assert_eq!(r.header.tloc, er["tloc"].as_u64().unwrap(), "{ctx}");
            assert_eq!(r.header.vlen as u64, er["vlen"].as_u64().unwrap(), "{ctx}");
            assert_eq!(r.header.plen, er["plen"].as_u64().unwrap(), "{ctx}");
            assert_eq!(r.back, er["back"].as_u64(), "{ctx}");
            if let Some(sha) = er["data_sha256"].as_str() {
                let d = &tbuf[r.body_off..r.body_off + r.header.plen as usize];
                assert_eq!(sha256(d), sha, "{ctx}");
                if let Some(c) = er["class"].as_str() {
                    if d.starts_with(b"\x80\x03c") {
                        assert_eq!(
                            zeo::storage::filestorage::format::class_name(d).as_deref(),
                            Some(c),
                            "{ctx}"
                        );
                    }
                }
            }
        }
    }
}

fn check_view(name: &str, j: &Value, s: &FileStorage) {
    let v = &j["python_view"];
    assert_eq!(s.size(), v["end_pos"].as_u64().unwrap(), "{name}: getSize");
    let truncated = j.get("discarded_transaction").is_some_and(|d| !d.is_null());
    if !truncated {
        assert_eq!(
            s.last_transaction(),
            Tid(hex_u64(v["last_tid"].as_str().unwrap())),
            "{name}: lastTransaction"
        );
    } else {
        // Python reports the discarded tid; we report the last kept one (spec §5.3).
        let last = j["format"]["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|t| t["pos"].as_u64().unwrap() < s.size())
            .unwrap();
        assert_eq!(
            s.last_transaction(),
            Tid(hex_u64(last["tid"].as_str().unwrap())),
            "{name}"
        );
    }
    let objs = v["objects"].as_object().unwrap();
    assert_eq!(s.len(), objs.len() as u64, "{name}: len");
    let index: std::collections::HashMap<Oid, u64> = s.index_entries().into_iter().collect();
    for (oid_hex, o) in objs {
        let oid = Oid(hex_u64(oid_hex));
        assert_eq!(
            index.get(&oid).copied(),
            o["index_pos"].as_u64(),
            "{name} oid {oid_hex}: index position"
        );
        match s.load(oid) {
            Ok((data, tid)) => {
                assert_eq!(
                    tid,
                    Tid(hex_u64(o["tid"].as_str().unwrap_or_else(|| panic!(
                        "{name} {oid_hex}: expected {o}"
                    )))),
                    "{name} {oid_hex}"
                );
                assert_eq!(
                    sha256(&data),
                    o["data_sha256"].as_str().unwrap(),
                    "{name} {oid_hex}"
                );
                assert_eq!(s.get_tid(oid).unwrap(), tid);
            }
            Err(StorageError::PosKey { .. }) => {
                assert!(
                    o["load_error"].as_str().unwrap().contains("POSKeyError"),
                    "{name} {oid_hex}: {o}"
                );
                assert!(s.get_tid(oid).is_err());
            }
            Err(e) => panic!("{name} {oid_hex}: {e}"),
        }
    }
    if let Some(probes) = j["loadBefore_probe"].as_array() {
        for p in probes {
            let oid = Oid(hex_u64(p["oid"].as_str().unwrap()));
            let before = Tid(hex_u64(p["before"].as_str().unwrap()));
            let got = s.load_before(oid, before);
            let r = &p["result"];
            let ctx = format!("{name} loadBefore({oid}, {before:?})");
            if r.is_null() {
                assert!(matches!(got, Ok(None)), "{ctx}: expected None, got {got:?}");
            } else if r.get("error").is_some() {
                assert!(
                    matches!(got, Err(StorageError::PosKey { .. })),
                    "{ctx}: expected POSKeyError, got {got:?}"
                );
            } else {
                let lb = got
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"))
                    .unwrap_or_else(|| panic!("{ctx}: got None"));
                assert_eq!(
                    sha256(&lb.data),
                    r["data_sha256"].as_str().unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    lb.start,
                    Tid(hex_u64(r["start"].as_str().unwrap())),
                    "{ctx}"
                );
                assert_eq!(lb.end, r["end"].as_str().map(|e| Tid(hex_u64(e))), "{ctx}");
            }
        }
    }
}

/// The storage's iterator agrees with the format section.
fn check_iterator(name: &str, j: &Value, s: &FileStorage) {
    let exp: Vec<&Value> = j["format"]["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["pos"].as_u64().unwrap() < s.size())
        .collect();
    let got: Vec<_> = s
        .iterator(None, None)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(got.len(), exp.len(), "{name}: iterator length");
    for (t, e) in got.iter().zip(&exp) {
        assert_eq!(t.tid, Tid(hex_u64(e["tid"].as_str().unwrap())));
        let recs = e["records"].as_array().unwrap();
        assert_eq!(t.records.len(), recs.len());
        for (r, er) in t.records.iter().zip(recs) {
            assert_eq!(r.oid, Oid(hex_u64(er["oid"].as_str().unwrap())));
            match er["data_sha256"].as_str() {
                Some(sha) => {
                    assert_eq!(sha256(r.data.as_ref().unwrap()), sha);
                    assert_eq!(r.data_txn, None);
                }
                None if er["back"].as_u64() == Some(0) => assert_eq!(r.data, None),
                None => assert!(
                    r.data_txn.is_some(),
                    "{name}: backpointer record needs data_txn"
                ),
            }
        }
    }
    // start/stop bounds are inclusive.
    if exp.len() >= 3 {
        let t1 = Tid(hex_u64(exp[1]["tid"].as_str().unwrap()));
        let t2 = Tid(hex_u64(exp[2]["tid"].as_str().unwrap()));
        let sub: Vec<_> = s
            .iterator(Some(t1), Some(t2))
            .unwrap()
            .map(|t| t.unwrap().tid)
            .collect();
        assert_eq!(sub, vec![t1, t2]);
    }
}

#[test]
fn every_fixture_matches_its_sidecar() {
    for name in FILES {
        let j = load_json(&format!("{name}.json"));
        check_format(name, &j);
        let (_d, p) = copy_fixture(name);
        let before = fs::read(&p).unwrap();
        let s = FileStorage::open(&p, ro()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_view(name, &j, &s);
        check_iterator(name, &j, &s);
        drop(s);
        assert_eq!(
            fs::read(&p).unwrap(),
            before,
            "{name}: read-only open changed the file"
        );
        assert!(
            !Path::new(&format!("{}.index", p.display())).exists(),
            "{name}: read-only open wrote an index"
        );
        // Writable open gives the same view (after recovery for the truncated ones).
        let s = FileStorage::open(&p, Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_view(name, &j, &s);
        s.close().unwrap();
        // Reopen with the index we wrote.
        let s = FileStorage::open(&p, ro()).unwrap();
        check_view(name, &j, &s);
    }
}

#[test]
fn truncated_files_recover_as_python_does() {
    for name in ["truncated_data", "truncated_checkpoint", "truncated_header"] {
        let j = load_json(&format!("{name}.json"));
        let r = &j["python_open_result"];
        let (d, p) = copy_fixture(name);
        let orig = fs::read(&p).unwrap();
        let s = FileStorage::open(&p, ro()).unwrap();
        assert_eq!(s.size(), r["read_only_getSize"].as_u64().unwrap(), "{name}");
        drop(s);
        assert_eq!(
            fs::read(&p).unwrap().len() as u64,
            r["read_only_size_after_open"].as_u64().unwrap()
        );
        let s = FileStorage::open(&p, Options::default()).unwrap();
        assert_eq!(s.size(), r["getSize"].as_u64().unwrap(), "{name}");
        drop(s);
        let after = fs::read(&p).unwrap();
        assert_eq!(
            after.len() as u64,
            r["size_after_open"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            &orig[..after.len()],
            &after[..],
            "{name}: kept bytes changed"
        );
        let tr0 = d.path().join("Data.fs.tr0");
        match r["tr0_size"].as_u64() {
            Some(n) => {
                let side = fs::read(&tr0).unwrap();
                assert_eq!(side.len() as u64, n, "{name}");
                assert_eq!(&orig[after.len()..], &side[..]);
            }
            None => assert!(!tr0.exists(), "{name}: no side file expected"),
        }
        // New tids stay above the discarded one.
        if let Some(dt) = j["discarded_transaction"]["tid"].as_str() {
            let s = FileStorage::open(&p, Options::default()).unwrap();
            let t = s
                .tpc_begin(&Default::default(), None, zeo::storage::TxnStatus::Normal)
                .unwrap();
            assert!(t.tid > Tid(hex_u64(dt)));
            s.tpc_abort(t);
        }
    }
}

#[test]
fn python_index_file_is_read_and_rewritten_byte_for_byte() {
    let j = load_json("btree_many.json");
    let bytes = fs::read(fixture_dir().join("btree_many.fs.index")).unwrap();
    let (ix, pos) = Index::from_file_bytes(&bytes).unwrap();
    assert_eq!(pos, j["index_file"]["pos"].as_u64().unwrap());
    let entries = j["index_file"]["entries"].as_object().unwrap();
    assert_eq!(ix.len(), entries.len() as u64);
    for (k, v) in entries {
        assert_eq!(ix.get(Oid(hex_u64(k))), v.as_u64(), "oid {k}");
    }
    assert_eq!(
        ix.to_file_bytes(pos),
        bytes,
        "our encoding of the same index differs"
    );
    // Our scan builds the same index and writes the same file.
    let (d, p) = copy_fixture("btree_many");
    let s = FileStorage::open(&p, Options::default()).unwrap();
    assert_eq!(s.index_entries(), ix.iter().collect::<Vec<_>>());
    s.close().unwrap();
    assert_eq!(fs::read(d.path().join("Data.fs.index")).unwrap(), bytes);
    // And we accept Python's file: a corrupted data file behind a trusted index
    // shows that the scan started at the index position (nothing before is re-read).
    let (_d2, p2) = copy_fixture("btree_many");
    fs::copy(
        fixture_dir().join("btree_many.fs.index"),
        format!("{}.index", p2.display()),
    )
    .unwrap();
    let mut data = fs::read(&p2).unwrap();
    // The tloc of the first data record (first transaction at 4, 25-byte description,
    // record at 52, tloc at +24): a full scan refuses this file.
    assert_eq!(&data[27..52], b"initial database creation");
    data[83] ^= 0xff;
    fs::write(&p2, &data).unwrap();
    let s = FileStorage::open(&p2, ro()).unwrap();
    assert_eq!(s.len(), entries.len() as u64);
    drop(s);
    fs::remove_file(format!("{}.index", p2.display())).unwrap();
    match FileStorage::open(&p2, ro()) {
        Err(StorageError::Corrupted {
            offset: 52, what, ..
        }) => assert!(what.contains("transaction pointer"), "{what}"),
        other => panic!(
            "without the index the damage must be found, got {:?}",
            other.err()
        ),
    }
}

#[test]
fn blobs_of_the_bushy_fixture_load() {
    let j = load_json("blob_bushy.json");
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    fs::copy(fixture_dir().join("blob_bushy.fs"), &p).unwrap();
    let bd = d.path().join("blobs");
    copy_dir(&fixture_dir().join("blob_bushy.blobdir"), &bd);
    let s = FileStorage::open(
        &p,
        Options {
            blob_dir: Some(bd.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(bd.join("tmp").is_dir());
    let mut n = 0;
    for f in j["blob_files"].as_array().unwrap() {
        let rel = f["path"].as_str().unwrap();
        if !rel.ends_with(".blob") {
            continue;
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let oid = parts[..8].iter().fold(0u64, |a, x| {
            (a << 8) | u64::from_str_radix(&x[2..], 16).unwrap()
        });
        let tid = hex_u64(&parts[8][2..18]);
        let path = s.load_blob(Oid(oid), Tid(tid)).unwrap();
        assert_eq!(path, bd.join(rel));
        assert_eq!(
            sha256(&fs::read(&path).unwrap()),
            f["sha256"].as_str().unwrap()
        );
        // Every blob file belongs to a record of that tid.
        assert!(s.load_serial(Oid(oid), Tid(tid)).is_ok());
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(matches!(
        s.load_blob(Oid(1), Tid(5)),
        Err(StorageError::PosKey { .. })
    ));
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let t = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[test]
fn undo_log_and_history_match_python() {
    let j = load_json("undo.json");
    let (_d, p) = copy_fixture("undo");
    let s = FileStorage::open(&p, ro()).unwrap();
    let log = s.undo_log(0, 100).unwrap();
    let exp = j["undoLog_0_100"].as_array().unwrap();
    assert_eq!(log.len(), exp.len());
    for (g, e) in log.iter().zip(exp) {
        assert_eq!(
            String::from_utf8(g.id.clone()).unwrap(),
            e["id"].as_str().unwrap()
        );
        assert_eq!(g.time, e["time"].as_f64().unwrap());
        assert_eq!(g.size, e["size"].as_u64().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&g.description),
            e["description"].as_str().unwrap()
        );
    }
    // first/last window.
    let w = s.undo_log(2, -3).unwrap();
    assert_eq!(w, log[2..5].to_vec());
    let h = s.history(Oid(1), 10).unwrap();
    let exp = j["history_oid_a_size_10"].as_array().unwrap();
    assert_eq!(h.len(), exp.len());
    for (g, e) in h.iter().zip(exp) {
        assert_eq!(g.tid, Tid(hex_u64(e["tid"].as_str().unwrap())));
        assert_eq!(g.size, e["size"].as_u64().unwrap());
        assert_eq!(g.time, e["time"].as_f64().unwrap());
    }
    assert_eq!(s.history(Oid(1), 2).unwrap().len(), 2);
}

#[test]
fn undo_of_t2_fails_like_python() {
    let j = load_json("undo.json");
    let (_d, p) = copy_fixture("undo");
    let s = FileStorage::open(&p, Options::default()).unwrap();
    let t2 = Tid(hex_u64(j["steps"]["T2"].as_str().unwrap()));
    let id = s
        .undo_log(0, 100)
        .unwrap()
        .into_iter()
        .find(|e| e.tid == t2)
        .unwrap()
        .id;
    let size = s.size();
    let t = s
        .tpc_begin(&Default::default(), None, zeo::storage::TxnStatus::Normal)
        .unwrap();
    match s.undo(&t, &id) {
        Err(StorageError::Undo { failures, .. }) => {
            assert_eq!(failures.len(), 2);
            assert_eq!(failures[0].0, Oid(0));
            assert!(failures[0].1.contains("Some data were modified"));
            assert_eq!(failures[1].0, Oid(1));
            assert!(failures[1].1.contains("Can't undo an add transaction"));
        }
        other => panic!("expected MultipleUndoErrors, got {other:?}"),
    }
    s.tpc_abort(t);
    assert_eq!(s.size(), size);
}

#[test]
fn deleted_object_behaves_like_python() {
    let j = load_json("deleted.json");
    let (_d, p) = copy_fixture("deleted");
    let s = FileStorage::open(&p, ro()).unwrap();
    let oid = Oid(hex_u64(j["oid_d"].as_str().unwrap()));
    let create = Tid(hex_u64(j["create_tid"].as_str().unwrap()));
    let delete = Tid(hex_u64(j["delete_tid"].as_str().unwrap()));
    assert!(matches!(s.load(oid), Err(StorageError::PosKey { .. })));
    assert!(matches!(s.get_tid(oid), Err(StorageError::PosKey { .. })));
    assert!(matches!(
        s.load_before(oid, Tid::MAX),
        Err(StorageError::PosKey { .. })
    ));
    let lb = s.load_before(oid, delete).unwrap().unwrap();
    assert_eq!((lb.start, lb.end), (create, Some(delete)));
    assert_eq!(
        sha256(&s.load_serial(oid, create).unwrap()),
        j["python_behaviour"]["loadBefore_delete_tid"][0]
            .as_str()
            .unwrap()
    );
    assert!(matches!(
        s.load_serial(oid, delete),
        Err(StorageError::PosKey { .. })
    ));
}
