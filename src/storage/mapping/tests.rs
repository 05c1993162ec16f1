//! Unit tests of MappingStorage: commit, conflicts, MVCC reads, undo, sizes.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A storage whose clock starts at 2024-06-01 12:00:00.25 UTC and ticks 1 s per tid.
fn storage() -> MappingStorage {
    let t = AtomicU64::new(0);
    MappingStorage::new()
        .with_clock(move || 1717243200.25 + t.fetch_add(1, Ordering::SeqCst) as f64)
}

fn meta(desc: &str) -> TxnMeta {
    TxnMeta {
        description: desc.as_bytes().to_vec(),
        ..TxnMeta::default()
    }
}

/// Commit `stores` (oid, old serial, data) in one transaction; returns the tid.
fn commit(s: &MappingStorage, stores: &[(u64, Tid, &[u8])]) -> Tid {
    let t = s.tpc_begin(&meta("c"), None, TxnStatus::Normal).unwrap();
    for (oid, old, data) in stores {
        s.store(&t, Oid(*oid), *old, data).unwrap();
    }
    s.tpc_vote(&t).unwrap();
    s.tpc_finish(t).unwrap()
}

fn undo(s: &MappingStorage, target: Tid) -> SResult<(Tid, Vec<Oid>)> {
    let t = s.tpc_begin(&meta("undo"), None, TxnStatus::Normal)?;
    match s.undo(&t, &tid_to_undo_id(target)) {
        Ok(oids) => {
            s.tpc_vote(&t)?;
            Ok((s.tpc_finish(t)?, oids))
        }
        Err(e) => {
            s.tpc_abort(t);
            Err(e)
        }
    }
}

#[test]
fn first_tid_follows_the_clock_and_sizes_match_filestorage() {
    let s = storage();
    let tid = commit(&s, &[(0, Tid::ZERO, b"root")]);
    assert_eq!(tid, Tid(0x03f8f8b001111111));
    assert_eq!(s.last_transaction(), tid);
    // 4 magic + 23 header + 1 desc + 42 record header + 4 data + 8 trailing length
    assert_eq!(s.size(), 4 + 23 + 1 + 42 + 4 + 8);
    assert_eq!(s.len(), 1);
}

#[test]
fn tids_increase_even_when_the_clock_stands_still() {
    let s = MappingStorage::new().with_clock(|| 1717243200.25);
    let a = commit(&s, &[(0, Tid::ZERO, b"a")]);
    let t = s.tpc_begin(&meta("x"), None, TxnStatus::Normal).unwrap();
    s.tpc_abort(t);
    let b = commit(&s, &[(0, a, b"b")]);
    // The aborted transaction used a + 1; the next one must be above it.
    assert_eq!(b, Tid(a.0 + 2));
}

#[test]
fn conflict_carries_serials_and_class_and_keeps_the_transaction_usable() {
    let s = storage();
    let t1 = commit(&s, &[(1, Tid::ZERO, b"\x80\x03cfoo\nBar\nq\x00.")]);
    let t = s.tpc_begin(&meta("c"), None, TxnStatus::Normal).unwrap();
    let err = s
        .store(&t, Oid(1), Tid(5), b"\x80\x03cfoo\nBar\nq\x00.")
        .unwrap_err();
    match err {
        StorageError::Conflict(c) => {
            assert_eq!(c.oid, Oid(1));
            assert_eq!(c.serials, (t1, Tid(5)));
            assert_eq!(c.class_name.as_deref(), Some("foo.Bar"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    s.store(&t, Oid(1), t1, b"ok").unwrap();
    s.tpc_vote(&t).unwrap();
    let t2 = s.tpc_finish(t).unwrap();
    assert_eq!(s.load(Oid(1)).unwrap(), (b"ok".to_vec(), t2));
}

#[test]
fn new_objects_do_not_check_their_old_serial() {
    let s = storage();
    commit(&s, &[(7, Tid(12345), b"x")]);
    assert_eq!(s.new_oids(2).unwrap(), vec![Oid(8), Oid(9)]);
}

#[test]
fn uncommitted_data_is_invisible_and_abort_forgets_it() {
    let s = storage();
    let t0 = commit(&s, &[(0, Tid::ZERO, b"v0")]);
    let t = s.tpc_begin(&meta("c"), None, TxnStatus::Normal).unwrap();
    s.store(&t, Oid(0), t0, b"v1").unwrap();
    s.tpc_vote(&t).unwrap();
    assert_eq!(s.load(Oid(0)).unwrap().0, b"v0");
    s.tpc_abort(t);
    assert_eq!(s.load(Oid(0)).unwrap(), (b"v0".to_vec(), t0));
}

#[test]
fn stale_handles_are_rejected() {
    let s = storage();
    let t = s.tpc_begin(&meta("c"), None, TxnStatus::Normal).unwrap();
    let stale = TxnHandle {
        tid: t.tid,
        serial: t.serial + 1,
    };
    assert!(matches!(
        s.store(&stale, Oid(0), Tid::ZERO, b"x"),
        Err(StorageError::Transaction(_))
    ));
    assert!(matches!(
        s.tpc_begin(&meta("c"), None, TxnStatus::Normal),
        Err(StorageError::Transaction(_))
    ));
    s.tpc_abort(stale); // no-op
    s.tpc_abort(t);
}

#[test]
fn load_before_walks_revisions() {
    let s = storage();
    let a = commit(&s, &[(0, Tid::ZERO, b"a")]);
    let b = commit(&s, &[(0, a, b"b")]);
    let c = commit(&s, &[(0, b, b"c")]);
    assert_eq!(s.load_before(Oid(0), a).unwrap(), None);
    let lb = s.load_before(Oid(0), b).unwrap().unwrap();
    assert_eq!(
        (lb.data.as_slice(), lb.start, lb.end),
        (&b"a"[..], a, Some(b))
    );
    let lb = s.load_before(Oid(0), Tid::MAX).unwrap().unwrap();
    assert_eq!((lb.data.as_slice(), lb.start, lb.end), (&b"c"[..], c, None));
    assert_eq!(s.load_serial(Oid(0), b).unwrap(), b"b");
    assert!(matches!(
        s.load_serial(Oid(0), Tid(b.0 + 1)),
        Err(StorageError::PosKey { .. })
    ));
    let h = s.history(Oid(0), 10).unwrap();
    assert_eq!(h.iter().map(|e| e.tid).collect::<Vec<_>>(), vec![c, b, a]);
    assert!(matches!(s.load(Oid(3)), Err(StorageError::PosKey { .. })));
}

#[test]
fn undo_follows_filestorage_rules() {
    // The scenario of undo.fs (tests/fixtures/filestorage/README.md).
    let s = storage();
    let t1 = commit(&s, &[(0, Tid::ZERO, b"root0")]);
    let t2 = commit(&s, &[(0, t1, b"root1"), (1, Tid::ZERO, b"a1")]);
    let t3 = commit(&s, &[(1, t2, b"a2")]);
    let (t4, oids) = undo(&s, t3).unwrap();
    assert_eq!(oids, vec![Oid(1)]);
    assert_eq!(s.load(Oid(1)).unwrap(), (b"a1".to_vec(), t4));
    assert_eq!(
        s.history(Oid(1), 1).unwrap()[0].size,
        0,
        "undo writes a backpointer"
    );
    let (t5, _) = undo(&s, t4).unwrap();
    assert_eq!(s.load(Oid(1)).unwrap(), (b"a2".to_vec(), t5));
    let t6 = commit(&s, &[(0, t2, b"root2"), (2, Tid::ZERO, b"b")]);
    let (t7, mut oids) = undo(&s, t6).unwrap();
    oids.sort();
    assert_eq!(oids, vec![Oid(0), Oid(2)]);
    assert_eq!(s.load(Oid(0)).unwrap(), (b"root1".to_vec(), t7));
    assert!(matches!(s.load(Oid(2)), Err(StorageError::PosKey { .. })));
    assert!(matches!(
        s.get_tid(Oid(2)),
        Err(StorageError::PosKey { .. })
    ));
    assert!(matches!(
        s.load_before(Oid(2), Tid::MAX),
        Err(StorageError::PosKey { .. })
    ));
    let lb = s.load_before(Oid(2), t7).unwrap().unwrap();
    assert_eq!(
        (lb.data.as_slice(), lb.start, lb.end),
        (&b"b"[..], t6, Some(t7))
    );
    // T8 changes the root again; undoing T2 now fails for both of its objects.
    commit(&s, &[(0, t7, b"root3")]);
    match undo(&s, t2).unwrap_err() {
        StorageError::Undo { failures, .. } => {
            let mut oids: Vec<_> = failures.iter().map(|(o, _)| *o).collect();
            oids.sort();
            assert_eq!(oids, vec![Oid(0), Oid(1)]);
            assert!(failures
                .iter()
                .any(|(o, m)| *o == Oid(1) && m.contains("add")));
        }
        other => panic!("expected UndoError, got {other:?}"),
    }
    // undoLog: newest first, ids are base64 tids.
    let log = s.undo_log(0, -20).unwrap();
    assert_eq!(log.len(), 8);
    assert_eq!(log[1].tid, t7);
    assert_eq!(undo_id_to_tid(&log[1].id), Some(t7));
    let page = s.undo_log(2, 4).unwrap();
    assert_eq!(page.iter().map(|e| e.tid).collect::<Vec<_>>(), vec![t6, t5]);
}

#[test]
fn delete_and_check_current_serial() {
    let s = storage();
    let a = commit(&s, &[(0, Tid::ZERO, b"r"), (1, Tid::ZERO, b"x")]);
    let t = s.tpc_begin(&meta("d"), None, TxnStatus::Normal).unwrap();
    assert!(matches!(
        s.check_current_serial(&t, Oid(1), Tid(1)),
        Err(StorageError::ReadConflict(_))
    ));
    s.check_current_serial(&t, Oid(1), a).unwrap();
    assert!(matches!(
        s.delete_object(&t, Oid(1), Tid(1)),
        Err(StorageError::Conflict(_))
    ));
    s.delete_object(&t, Oid(1), a).unwrap();
    s.tpc_vote(&t).unwrap();
    let d = s.tpc_finish(t).unwrap();
    assert!(matches!(s.load(Oid(1)), Err(StorageError::PosKey { .. })));
    assert_eq!(s.len(), 2, "deleted objects stay indexed");
    let lb = s.load_before(Oid(1), d).unwrap().unwrap();
    assert_eq!(lb.end, Some(d));
    let txns: Vec<_> = s
        .iterator(None, None)
        .unwrap()
        .collect::<SResult<_>>()
        .unwrap();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[1].records[0].data, None);
}

#[test]
fn restore_uses_backpointers_for_identical_data() {
    let s = storage();
    let t = s
        .tpc_begin(&meta("r"), Some(Tid(0x03f8f8b000000001)), TxnStatus::Packed)
        .unwrap();
    s.restore(&t, Oid(0), Tid(0x03f8f8b000000001), Some(b"d"), None)
        .unwrap();
    s.tpc_vote(&t).unwrap();
    let t1 = s.tpc_finish(t).unwrap();
    let t = s
        .tpc_begin(&meta("r"), Some(Tid(0x03f8f8b000000002)), TxnStatus::Normal)
        .unwrap();
    s.restore(&t, Oid(0), Tid(0x03f8f8b000000002), Some(b"d"), Some(t1))
        .unwrap();
    s.tpc_vote(&t).unwrap();
    s.tpc_finish(t).unwrap();
    let txns: Vec<_> = s
        .iterator(None, None)
        .unwrap()
        .collect::<SResult<_>>()
        .unwrap();
    assert_eq!(txns[0].status, b'p');
    assert_eq!(txns[1].records[0].data_txn, Some(t1));
    assert_eq!(txns[1].records[0].data.as_deref(), Some(&b"d"[..]));
    // The packed transaction stops undoLog.
    assert_eq!(s.undo_log(0, -20).unwrap().len(), 1);
    // Explicit tids must move forward.
    assert!(s
        .tpc_begin(&meta("r"), Some(Tid(0x03f8f8b000000001)), TxnStatus::Normal)
        .is_err());
}

#[test]
fn new_oids_never_hand_out_the_root_oid() {
    let s = storage();
    assert_eq!(s.new_oids(2).unwrap(), vec![Oid(1), Oid(2)]);
    let s = storage();
    commit(&s, &[(0, Tid::ZERO, b"root")]);
    assert_eq!(s.new_oids(1).unwrap(), vec![Oid(1)]);
}
