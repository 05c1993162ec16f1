//! FileStorage commit path, undo and blobs: semantics of spec filestorage.md §7–§9,
//! §12 checked through the `Storage` trait.

mod fs_common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use fs_common::*;
use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::tid::{Oid, Tid};
use zeo::storage::{Storage, StorageError, TxnMeta, TxnStatus};

fn meta(desc: &str) -> TxnMeta {
    TxnMeta {
        user: b"/ tester".to_vec(),
        description: desc.as_bytes().to_vec(),
        extension: vec![],
    }
}

fn open(p: &Path) -> FileStorage {
    FileStorage::open(p, Options::default()).unwrap()
}

/// Commit one transaction storing `(oid, old_serial, data)`.
fn commit(s: &FileStorage, stores: &[(u64, Tid, Vec<u8>)]) -> Tid {
    let t = s.tpc_begin(&meta("c"), None, TxnStatus::Normal).unwrap();
    for (oid, old, data) in stores {
        s.store(&t, Oid(*oid), *old, data).unwrap();
    }
    s.tpc_vote(&t).unwrap();
    s.tpc_finish(t).unwrap()
}

#[test]
fn store_load_revisions_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    let s = open(&p);
    assert_eq!(s.last_transaction(), Tid::ZERO);
    assert_eq!(s.size(), 4);
    assert_eq!(s.new_oids(2).unwrap(), vec![Oid(1), Oid(2)]);
    let t1 = commit(
        &s,
        &[
            (0, Tid::ZERO, mapping_pickle("a")),
            (1, Tid::ZERO, mapping_pickle("b")),
        ],
    );
    let t2 = commit(&s, &[(1, t1, mapping_pickle("b2"))]);
    let t3 = commit(&s, &[(1, t2, mapping_pickle("b3"))]);
    assert!(t1 < t2 && t2 < t3);
    assert_eq!(s.load(Oid(1)).unwrap(), (mapping_pickle("b3"), t3));
    assert_eq!(s.load_serial(Oid(1), t2).unwrap(), mapping_pickle("b2"));
    let lb = s.load_before(Oid(1), t3).unwrap().unwrap();
    assert_eq!(
        (lb.data, lb.start, lb.end),
        (mapping_pickle("b2"), t2, Some(t3))
    );
    assert_eq!(s.load_before(Oid(1), t1).unwrap(), None);
    assert_eq!(
        s.history(Oid(1), 10)
            .unwrap()
            .iter()
            .map(|h| h.tid)
            .collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    assert_eq!(
        s.last_invalidations(2).unwrap(),
        vec![(t2, vec![Oid(1)]), (t3, vec![Oid(1)])]
    );
    let r = s.record_iternext(None).unwrap().unwrap();
    assert_eq!((r.oid, r.tid, r.next), (Oid(0), t1, Some(Oid(1))));
    assert_eq!(s.record_iternext(Some(Oid(1))).unwrap().unwrap().next, None);
    assert_eq!(s.record_iternext(Some(Oid(2))).unwrap(), None);
    // Iteration from a start tid, found from either end of the file.
    for (start, want) in [
        (t1, vec![t1, t2, t3]),
        (t2, vec![t2, t3]),
        (t3, vec![t3]),
        (Tid(t3.0 + 1), vec![]),
    ] {
        let got: Vec<Tid> = s
            .iterator(Some(start), None)
            .unwrap()
            .map(|t| t.unwrap().tid)
            .collect();
        assert_eq!(got, want);
    }
    let size = s.size();
    assert_eq!(fs::metadata(&p).unwrap().len(), size);
    s.close().unwrap();
    // Read-only time travel: the view stops before the first tid >= stop.
    let tt = FileStorage::open(
        &p,
        Options {
            read_only: true,
            stop: Some(t3),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(tt.last_transaction(), t2);
    assert_eq!(tt.load(Oid(1)).unwrap(), (mapping_pickle("b2"), t2));
    drop(tt);
    let s = open(&p);
    assert_eq!(s.last_transaction(), t3);
    assert_eq!(s.size(), size);
    assert_eq!(s.load(Oid(1)).unwrap().1, t3);
    // New oids continue above the max oid in the file.
    assert_eq!(s.new_oids(1).unwrap(), vec![Oid(2)]);
    // Status bytes are ' ' after finish.
    for t in s.iterator(None, None).unwrap() {
        assert_eq!(t.unwrap().status, b' ');
    }
}

#[test]
fn conflicts_keep_the_transaction_usable() {
    let d = tempfile::tempdir().unwrap();
    let s = open(&d.path().join("Data.fs"));
    let t1 = commit(&s, &[(0, Tid::ZERO, mapping_pickle("a"))]);
    let t2 = commit(&s, &[(0, t1, mapping_pickle("b"))]);
    let t = s.tpc_begin(&meta("x"), None, TxnStatus::Normal).unwrap();
    match s.store(&t, Oid(0), t1, &mapping_pickle("c")) {
        Err(StorageError::Conflict(c)) => {
            assert_eq!(c.oid, Oid(0));
            assert_eq!(c.serials, (t2, t1));
            assert_eq!(
                c.class_name.as_deref(),
                Some("persistent.mapping.PersistentMapping")
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match s.check_current_serial(&t, Oid(0), t1) {
        Err(StorageError::ReadConflict(c)) => assert_eq!(c.serials, (t2, t1)),
        other => panic!("expected a read conflict, got {other:?}"),
    }
    s.check_current_serial(&t, Oid(0), t2).unwrap();
    assert!(matches!(
        s.check_current_serial(&t, Oid(9), t2),
        Err(StorageError::PosKey { .. })
    ));
    // A never-seen oid does not check old_serial (Python behaviour).
    s.store(&t, Oid(5), Tid(12345), &mapping_pickle("new"))
        .unwrap();
    s.store(&t, Oid(0), t2, &mapping_pickle("c")).unwrap();
    s.tpc_vote(&t).unwrap();
    let t3 = s.tpc_finish(t).unwrap();
    assert_eq!(s.load(Oid(0)).unwrap(), (mapping_pickle("c"), t3));
    assert_eq!(s.load(Oid(5)).unwrap().1, t3);
}

#[test]
fn abort_after_vote_truncates_and_tids_stay_increasing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    let s = open(&p);
    let t1 = commit(&s, &[(0, Tid::ZERO, mapping_pickle("a"))]);
    let size = s.size();
    let t = s
        .tpc_begin(&meta("aborted"), None, TxnStatus::Normal)
        .unwrap();
    let aborted_tid = t.tid;
    s.store(&t, Oid(0), t1, &mapping_pickle("b")).unwrap();
    s.tpc_vote(&t).unwrap();
    assert!(fs::metadata(&p).unwrap().len() > size);
    // Not visible before finish.
    assert_eq!(s.load(Oid(0)).unwrap().1, t1);
    s.tpc_abort(t);
    assert_eq!(fs::metadata(&p).unwrap().len(), size);
    assert_eq!(s.load(Oid(0)).unwrap().1, t1);
    let t2 = commit(&s, &[(0, t1, mapping_pickle("c"))]);
    assert!(t2 > aborted_tid, "tid must be above the last begun tid");
    // Explicit tids must be above the last committed tid.
    assert!(matches!(
        s.tpc_begin(&meta("old"), Some(t1), TxnStatus::Normal),
        Err(StorageError::Invalid(_))
    ));
    // Stale handles are rejected; a stale abort is a no-op.
    let t = s.tpc_begin(&meta("x"), None, TxnStatus::Normal).unwrap();
    let fake = zeo::storage::TxnHandle {
        tid: t.tid,
        serial: t.serial + 100,
    };
    assert!(matches!(
        s.store(&fake, Oid(0), t2, b"x"),
        Err(StorageError::Transaction(_))
    ));
    s.tpc_abort(fake);
    s.tpc_vote(&t).unwrap();
    s.tpc_finish(t).unwrap();
    // Empty transactions are legal.
    assert_eq!(
        s.iterator(None, None)
            .unwrap()
            .last()
            .unwrap()
            .unwrap()
            .records
            .len(),
        0
    );
    // Metadata limits.
    let long = TxnMeta {
        user: vec![b'u'; 70_000],
        ..Default::default()
    };
    assert!(matches!(
        s.tpc_begin(&long, None, TxnStatus::Normal),
        Err(StorageError::Invalid(_))
    ));
}

#[test]
fn delete_restore_and_read_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    let s = open(&p);
    let t1 = commit(
        &s,
        &[
            (0, Tid::ZERO, mapping_pickle("a")),
            (1, Tid::ZERO, mapping_pickle("b")),
        ],
    );
    let t = s.tpc_begin(&meta("del"), None, TxnStatus::Normal).unwrap();
    assert!(matches!(
        s.delete_object(&t, Oid(7), t1),
        Err(StorageError::PosKey { .. })
    ));
    assert!(matches!(
        s.delete_object(&t, Oid(1), Tid(3)),
        Err(StorageError::Conflict(_))
    ));
    s.delete_object(&t, Oid(1), t1).unwrap();
    s.tpc_vote(&t).unwrap();
    let t2 = s.tpc_finish(t).unwrap();
    assert!(matches!(s.load(Oid(1)), Err(StorageError::PosKey { .. })));
    assert_eq!(s.load_before(Oid(1), t2).unwrap().unwrap().end, Some(t2));
    assert_eq!(s.len(), 2);
    // restore: explicit serial, backpointer to identical data in prev_txn.
    let t3tid = Tid(t2.0 + 1000);
    let t = s
        .tpc_begin(&meta("restore"), Some(t3tid), TxnStatus::Normal)
        .unwrap();
    s.restore(&t, Oid(1), t3tid, Some(&mapping_pickle("b")), Some(t1))
        .unwrap();
    s.restore(&t, Oid(2), t3tid, Some(&mapping_pickle("z")), None)
        .unwrap();
    assert!(matches!(
        s.restore(&t, Oid(3), t3tid, None, Some(Tid(99))),
        Err(StorageError::Undo { .. })
    ));
    s.tpc_vote(&t).unwrap();
    assert_eq!(s.tpc_finish(t).unwrap(), t3tid);
    assert_eq!(s.load(Oid(1)).unwrap(), (mapping_pickle("b"), t3tid));
    let last = s
        .iterator(Some(t3tid), None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        last.records[0].data_txn,
        Some(t1),
        "restore wrote a backpointer"
    );
    s.close().unwrap();
    // A second writer is locked out while one is open.
    let s = open(&p);
    match FileStorage::open(&p, Options::default()) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected a lock error, got {:?}", other.err()),
    }
    // Read-only opens coexist and refuse writes.
    let r = FileStorage::open(
        &p,
        Options {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        r.tpc_begin(&meta("x"), None, TxnStatus::Normal),
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(r.new_oids(1), Err(StorageError::ReadOnly)));
    assert!(matches!(r.pack(0.0, true), Err(StorageError::ReadOnly)));
    drop(s);
    let _again = open(&p);
}

#[test]
fn undo_writes_backpointers() {
    let d = tempfile::tempdir().unwrap();
    let s = open(&d.path().join("Data.fs"));
    let t1 = commit(&s, &[(0, Tid::ZERO, mapping_pickle("root"))]);
    let t2 = commit(
        &s,
        &[
            (0, t1, mapping_pickle("root2")),
            (1, Tid::ZERO, mapping_pickle("a1")),
        ],
    );
    let t3 = commit(&s, &[(1, t2, mapping_pickle("a2"))]);
    let log = s.undo_log(0, -20).unwrap();
    assert_eq!(
        log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    // Undo T3: a back to a1.
    let t = s
        .tpc_begin(&meta("undo t3"), None, TxnStatus::Normal)
        .unwrap();
    assert_eq!(s.undo(&t, &log[0].id).unwrap(), vec![Oid(1)]);
    s.tpc_vote(&t).unwrap();
    let t4 = s.tpc_finish(t).unwrap();
    assert_eq!(s.load(Oid(1)).unwrap(), (mapping_pickle("a1"), t4));
    let rec = s.iterator(Some(t4), None).unwrap().next().unwrap().unwrap();
    assert_eq!(rec.records[0].data_txn, Some(t2));
    // Undo T2 now fails: root changed? no — root was not changed later, but a was.
    let t = s
        .tpc_begin(&meta("undo t2"), None, TxnStatus::Normal)
        .unwrap();
    let before = s.size();
    // a's current data (a1 via backpointer) equals the data T2 wrote: plain undo.
    let oids = s.undo(&t, &log[1].id).unwrap();
    assert_eq!(oids, vec![Oid(0), Oid(1)]);
    s.tpc_vote(&t).unwrap();
    let t5 = s.tpc_finish(t).unwrap();
    assert!(s.size() > before);
    assert!(
        matches!(s.load(Oid(1)), Err(StorageError::PosKey { .. })),
        "creation undone"
    );
    assert_eq!(s.load(Oid(0)).unwrap(), (mapping_pickle("root"), t5));
    // Undoing a transaction whose object changed since fails.
    let t6 = commit(&s, &[(0, t5, mapping_pickle("root3"))]);
    let _ = t6;
    let id_t1 = s
        .undo_log(0, 100)
        .unwrap()
        .into_iter()
        .find(|e| e.tid == t1)
        .unwrap()
        .id;
    let t = s
        .tpc_begin(&meta("bad undo"), None, TxnStatus::Normal)
        .unwrap();
    match s.undo(&t, &id_t1) {
        Err(StorageError::Undo { failures, .. }) => assert_eq!(failures[0].0, Oid(0)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.undo(&t, b"!!!!"),
        Err(StorageError::Undo { .. })
    ));
    s.tpc_abort(t);
}

#[test]
fn blobs_store_abort_and_undo() {
    let d = tempfile::tempdir().unwrap();
    let bd = d.path().join("blobs");
    let s = FileStorage::open(
        d.path().join("Data.fs"),
        Options {
            blob_dir: Some(bd.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let tmp = bd.join("tmp");
    let mk = |name: &str, content: &[u8]| {
        let p = tmp.join(name);
        fs::write(&p, content).unwrap();
        p
    };
    let t = s.tpc_begin(&meta("b1"), None, TxnStatus::Normal).unwrap();
    s.store(&t, Oid(0), Tid::ZERO, &mapping_pickle("root"))
        .unwrap();
    s.store_blob(&t, Oid(1), Tid::ZERO, &blob_pickle(), &mk("a", b"v1"))
        .unwrap();
    s.tpc_vote(&t).unwrap();
    let t1 = s.tpc_finish(t).unwrap();
    let p1 = s.load_blob(Oid(1), t1).unwrap();
    assert_eq!(fs::read(&p1).unwrap(), b"v1");
    assert!(p1.ends_with(format!(
        "0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/{}.blob",
        t1
    )));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&p1).unwrap().permissions().mode() & 0o222, 0);
    // Aborted blob stores leave nothing behind.
    let t = s
        .tpc_begin(&meta("aborted"), None, TxnStatus::Normal)
        .unwrap();
    let atid = t.tid;
    s.store_blob(&t, Oid(1), t1, &blob_pickle(), &mk("b", b"zz"))
        .unwrap();
    assert!(s.load_blob(Oid(1), atid).is_ok());
    s.tpc_abort(t);
    assert!(s.load_blob(Oid(1), atid).is_err());
    let t = s.tpc_begin(&meta("b2"), None, TxnStatus::Normal).unwrap();
    s.store_blob(&t, Oid(1), t1, &blob_pickle(), &mk("c", b"v2"))
        .unwrap();
    s.tpc_vote(&t).unwrap();
    let t2 = s.tpc_finish(t).unwrap();
    // Undo t2: the v1 file is copied under the undo tid.
    let id = s.undo_log(0, 1).unwrap()[0].id.clone();
    let t = s.tpc_begin(&meta("undo"), None, TxnStatus::Normal).unwrap();
    s.undo(&t, &id).unwrap();
    s.tpc_vote(&t).unwrap();
    let t3 = s.tpc_finish(t).unwrap();
    assert_eq!(s.load(Oid(1)).unwrap().1, t3);
    assert_eq!(fs::read(s.load_blob(Oid(1), t3).unwrap()).unwrap(), b"v1");
    assert_eq!(fs::read(s.load_blob(Oid(1), t2).unwrap()).unwrap(), b"v2");
    assert_eq!(s.blob_dir(), Some(bd));
}

#[test]
fn readers_run_while_a_transaction_is_in_progress() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&d.path().join("Data.fs")));
    let t1 = commit(&s, &[(0, Tid::ZERO, mapping_pickle("a"))]);
    let t = s.tpc_begin(&meta("slow"), None, TxnStatus::Normal).unwrap();
    s.store(&t, Oid(0), t1, &mapping_pickle("b")).unwrap();
    s.tpc_vote(&t).unwrap();
    let s2 = s.clone();
    let h = std::thread::spawn(move || s2.load(Oid(0)).unwrap().1);
    assert_eq!(h.join().unwrap(), t1);
    // A second tpc_begin waits for the first transaction to end.
    let s3 = s.clone();
    let waiter = std::thread::spawn(move || {
        let t = s3
            .tpc_begin(&meta("next"), None, TxnStatus::Normal)
            .unwrap();
        let tid = t.tid;
        s3.tpc_abort(t);
        tid
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t2 = s.tpc_finish(t).unwrap();
    assert!(waiter.join().unwrap() > t2);
}

/// Group commit: `tpc_seal` publishes at once (the next transaction sees it), and
/// one `sync_committed` makes several sealed transactions durable; a copy of the
/// file taken after the sync opens with all of them, and close syncs too.
#[test]
fn seal_then_one_sync_for_several() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("Data.fs");
    let s = open(&p);
    let mut last = Tid::ZERO;
    let mut tids = Vec::new();
    for i in 0..3 {
        let t = s.tpc_begin(&meta("g"), None, TxnStatus::Normal).unwrap();
        // Each stores over the previous one: its conflict check sees the sealed one.
        s.store(&t, Oid(0), last, &mapping_pickle(&format!("v{i}")))
            .unwrap();
        s.tpc_vote(&t).unwrap();
        last = s.tpc_seal(t).unwrap();
        assert_eq!(s.last_transaction(), last);
        tids.push(last);
    }
    s.sync_committed().unwrap();
    let copy = d.path().join("copy.fs");
    fs::copy(&p, &copy).unwrap();
    let c = open(&copy);
    assert_eq!(c.load(Oid(0)).unwrap(), (mapping_pickle("v2"), tids[2]));
    assert_eq!(c.history(Oid(0), 10).unwrap().len(), 3);
    c.close().unwrap();
    // A sealed transaction not yet synced is saved by close.
    let t = s.tpc_begin(&meta("h"), None, TxnStatus::Normal).unwrap();
    s.store(&t, Oid(0), last, &mapping_pickle("v3")).unwrap();
    s.tpc_vote(&t).unwrap();
    let t4 = s.tpc_seal(t).unwrap();
    s.close().unwrap();
    let s = open(&p);
    assert_eq!(s.load(Oid(0)).unwrap(), (mapping_pickle("v3"), t4));
}

/// A stale or unvoted handle is refused by `tpc_seal`.
#[test]
fn seal_needs_the_voted_transaction() {
    let d = tempfile::tempdir().unwrap();
    let s = open(&d.path().join("Data.fs"));
    let t = s.tpc_begin(&meta("u"), None, TxnStatus::Normal).unwrap();
    s.store(&t, Oid(0), Tid::ZERO, &mapping_pickle("a"))
        .unwrap();
    let t2 = zeo::storage::TxnHandle {
        tid: t.tid,
        serial: t.serial,
    };
    assert!(matches!(s.tpc_seal(t2), Err(StorageError::Transaction(_))));
    s.tpc_abort(t);
}
