//! Unit tests of the commit machinery against MappingStorage.

use super::*;
use crate::storage::mapping::MappingStorage;

fn meta() -> TxnMeta {
    TxnMeta::default()
}

fn commit_one(s: &MappingStorage, oid: u64, serial: Tid, data: &[u8]) -> Tid {
    let mut t = TxnBuffer::new(1u64, meta(), None, TxnStatus::Normal);
    t.push(Op::Store {
        oid: Oid(oid),
        serial,
        data: data.to_vec(),
    });
    match t.vote(s).unwrap() {
        VoteResult::Voted { invalidated, .. } => assert_eq!(invalidated, vec![Oid(oid)]),
        other => panic!("{other:?}"),
    }
    s.tpc_finish(t.handle.take().unwrap()).unwrap()
}

#[test]
fn conflicts_go_back_to_the_client_and_a_resolved_store_wins() {
    let s = MappingStorage::new();
    let t1 = commit_one(&s, 0, Tid::ZERO, b"v1");
    let t2 = commit_one(&s, 0, t1, b"v2");
    let mut t = TxnBuffer::new(7u64, meta(), None, TxnStatus::Normal);
    t.push(Op::Store {
        oid: Oid(0),
        serial: t1,
        data: b"mine".to_vec(),
    });
    t.push(Op::Store {
        oid: Oid(5),
        serial: Tid::ZERO,
        data: b"new".to_vec(),
    });
    match t.vote(&s).unwrap() {
        VoteResult::Conflicts(c) => assert_eq!(
            c,
            vec![Conflict {
                oid: Oid(0),
                serials: (t2, t1),
                data: b"mine".to_vec()
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert!(t.handle.is_none());
    // Nothing was committed; the storage is free for the retry.
    assert_eq!(s.last_transaction(), t2);
    t.push(Op::Store {
        oid: Oid(0),
        serial: t2,
        data: b"resolved".to_vec(),
    });
    match t.vote(&s).unwrap() {
        VoteResult::Voted {
            serials,
            invalidated,
        } => {
            assert!(serials.is_empty());
            assert_eq!(invalidated, vec![Oid(5), Oid(0)]);
        }
        other => panic!("{other:?}"),
    }
    let t3 = s.tpc_finish(t.handle.take().unwrap()).unwrap();
    assert_eq!(s.load(Oid(0)).unwrap(), (b"resolved".to_vec(), t3));
}

#[test]
fn read_conflicts_are_errors_and_abort_the_storage_transaction() {
    let s = MappingStorage::new();
    let t1 = commit_one(&s, 0, Tid::ZERO, b"v1");
    let mut t = TxnBuffer::new(1u64, meta(), None, TxnStatus::Normal);
    t.push(Op::CheckCurrent {
        oid: Oid(0),
        serial: Tid(1),
    });
    assert!(matches!(t.vote(&s), Err(StorageError::ReadConflict(_))));
    // The storage is usable again at once.
    commit_one(&s, 0, t1, b"v2");
}

#[test]
fn undo_lists_oids_in_serials_and_invalidations() {
    let s = MappingStorage::new();
    let t1 = commit_one(&s, 0, Tid::ZERO, b"v1");
    let t2 = commit_one(&s, 0, t1, b"v2");
    let mut t = TxnBuffer::new(1u64, meta(), None, TxnStatus::Normal);
    t.push(Op::Undo {
        undo_id: crate::storage::mapping::tid_to_undo_id(t2),
    });
    match t.vote(&s).unwrap() {
        VoteResult::Voted {
            serials,
            invalidated,
        } => {
            assert_eq!(serials, vec![Oid(0)]);
            assert_eq!(invalidated, vec![Oid(0)]);
        }
        other => panic!("{other:?}"),
    }
    s.tpc_finish(t.handle.take().unwrap()).unwrap();
    assert_eq!(s.load(Oid(0)).unwrap().0, b"v1");
}

#[test]
fn a_later_store_of_an_oid_replaces_the_earlier_one() {
    let mut t = TxnBuffer::new(1u64, meta(), None, TxnStatus::Normal);
    t.push(Op::StoreBlob {
        oid: Oid(1),
        serial: Tid::ZERO,
        data: vec![],
        file: "/tmp/a".into(),
    });
    let dropped = t.push(Op::Store {
        oid: Oid(1),
        serial: Tid::ZERO,
        data: b"x".to_vec(),
    });
    assert_eq!(dropped, Some(PathBuf::from("/tmp/a")));
    assert_eq!(t.ops().len(), 1);
    assert!(t.blob_files().is_empty());
}

#[test]
fn commit_lock_is_fifo_and_rejects_double_votes() {
    let mut l = CommitLock::<u32>::default();
    assert_eq!(l.request(1, 10.0), Ok(true));
    assert_eq!(l.lock_time, Some(10.0));
    assert_eq!(l.request(1, 11.0), Err(LockError::AlreadyLocked));
    assert_eq!(l.request(2, 11.0), Ok(false));
    assert_eq!(l.request(3, 11.0), Ok(false));
    assert_eq!(l.request(2, 11.0), Err(LockError::AlreadyWaiting));
    assert_eq!(l.waiting(), 2);
    // A waiter that disconnects leaves the queue.
    assert!(!l.release(2));
    assert!(l.release(1));
    assert_eq!(l.grant_next(12.0), Some(3));
    assert_eq!(l.holder(), Some(3));
    assert_eq!(l.grant_next(12.0), None);
    assert!(l.release(3));
    assert_eq!(l.lock_time, None);
    // With nobody waiting a new request gets the lock at once.
    assert_eq!(l.request(4, 13.0), Ok(true));
}

#[test]
fn invalidation_queue_answers_from_its_oldest_entry_on() {
    let mut q = InvalidationQueue::new(3);
    assert_eq!(q.since(Tid(1)), None);
    q.seed(vec![
        (Tid(10), vec![Oid(1)]),
        (Tid(20), vec![Oid(2), Oid(1)]),
    ]);
    q.push(Tid(30), vec![Oid(3)]);
    q.push(Tid(40), vec![Oid(4)]);
    assert_eq!(q.len(), 3, "capacity bounds the queue");
    // Oldest kept entry is 20: tids from 20 on can verify quickly.
    assert_eq!(q.since(Tid(10)), None);
    assert_eq!(q.since(Tid(20)), Some((Tid(40), vec![Oid(3), Oid(4)])));
    assert_eq!(q.since(Tid(25)), Some((Tid(40), vec![Oid(3), Oid(4)])));
    assert_eq!(q.since(Tid(40)), Some((Tid(40), vec![])));
    assert_eq!(InvalidationQueue::new(0).since(Tid(1)), None);
}

#[test]
fn invalidations_past_the_queue_come_from_the_storage() {
    let s = MappingStorage::new();
    let t1 = commit_one(&s, 0, Tid::ZERO, b"v1");
    let t2 = commit_one(&s, 3, Tid::ZERO, b"x");
    let t3 = commit_one(&s, 0, t1, b"v2");
    assert_eq!(
        invalidations_from_storage(&s, t1, t3).unwrap(),
        Some((t3, vec![Oid(0), Oid(3)]))
    );
    // Not past the last acknowledged transaction (group commit).
    assert_eq!(
        invalidations_from_storage(&s, t1, t2).unwrap(),
        Some((t2, vec![Oid(3)]))
    );
    assert_eq!(
        invalidations_from_storage(&s, t2, t3).unwrap(),
        Some((t3, vec![Oid(0)]))
    );
    assert_eq!(invalidations_from_storage(&s, t3, t3).unwrap(), None);
}
