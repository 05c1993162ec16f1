//! One served storage as the ZEO service sees it: the storage, what kind it is (for
//! `get_info` interfaces and the methods it supports), its commit lock, invalidation
//! queue, registered connections (the broadcast list), statistics and blob layout.
//!
//! Invariants: `registered` holds exactly the connections whose `register` succeeded
//! and that are still open; the invalidation queue is appended only at tpc_finish, in
//! commit (tid) order; `stats.connections == registered.len()`.

use super::commit::{CommitLock, InvalidationQueue, Stats};
use super::event_loop::ConnId;
use crate::protocol::reply::StorageInfo;
use crate::protocol::Value;
use crate::storage::blob::BlobDir;
use crate::storage::{Storage, Tid};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Engine kind: decides the interfaces reported and optional methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Mapping,
}

/// A storage with its server-side state.
/// A sealed transaction waiting for the fsync that makes it durable; then its
/// invalidations go out and the committer gets `info` and the tid.
#[derive(Debug)]
pub struct Unacked {
    pub tid: Tid,
    pub conn: ConnId,
    pub msgid: crate::protocol::Value,
    pub invalidated: Vec<crate::storage::Oid>,
}

pub struct Served {
    /// The name clients register.
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pub kind: Kind,
    /// Storage opened read-only (or the whole server is read-only).
    pub read_only: bool,
    /// Garbage-collect when packing.
    pub pack_gc: bool,
    /// Blob directory layout (for upload temp files and shared-dir file names).
    pub blobs: Option<BlobDir>,
    pub lock: CommitLock<ConnId>,
    /// Bumped at every lock grant; timers carry it to recognise a stale timeout.
    pub lock_generation: u64,
    /// Last transaction acknowledged (durable, invalidations sent): what clients
    /// may learn as the storage's current state. Sealed transactions after it are
    /// in the storage but wait for their group fsync.
    pub announced: Tid,
    /// Sealed transactions waiting for an fsync, in tid order.
    pub unacked: std::collections::VecDeque<Unacked>,
    /// An fsync of sealed transactions is running on the serial worker.
    pub syncing: bool,
    /// Vote replies held back because they name a sealed, not yet acknowledged tid
    /// (conflict serials): `(tid, conn, msgid, reply)`, sent once it is announced.
    #[allow(clippy::type_complexity)]
    pub held: Vec<(
        Tid,
        ConnId,
        crate::protocol::Value,
        Result<crate::protocol::Value, crate::protocol::WireError>,
    )>,
    pub invalidations: InvalidationQueue,
    pub registered: BTreeSet<ConnId>,
    pub stats: Stats,
    /// `time.ctime()` of the server start.
    pub start: String,
    /// Unix time the storage started being served (metrics).
    pub started_at: f64,
    /// Latency histograms of loadBefore, vote and tpc_finish (metrics).
    pub latency: super::metrics::Latency,
}

const ZI: &str = "ZODB.interfaces";

impl Served {
    /// Wrap an opened storage; seeds the invalidation queue from its last
    /// transactions (a storage that cannot list them seeds the marker `(last, [])`).
    pub fn new(
        name: String,
        storage: Arc<dyn Storage>,
        kind: Kind,
        read_only: bool,
        pack_gc: bool,
        queue_size: usize,
        start: String,
    ) -> Self {
        let mut invalidations = InvalidationQueue::new(queue_size);
        match storage.last_invalidations(queue_size) {
            Ok(recent) => invalidations.seed(recent),
            Err(e) => {
                log::warn!(target: "ZEO.StorageServer", "cannot seed the invalidation queue of storage {name:?}: {e}");
                let last = storage.last_transaction();
                if last != Tid::ZERO {
                    invalidations.push(last, Vec::new());
                }
            }
        }
        let announced = storage.last_transaction();
        let blobs = storage
            .blob_dir()
            .and_then(|root| BlobDir::open(&root, None, true).ok());
        Served {
            name,
            storage,
            kind,
            read_only,
            pack_gc,
            blobs,
            lock: CommitLock::default(),
            lock_generation: 0,
            announced,
            unacked: Default::default(),
            syncing: false,
            held: Vec::new(),
            invalidations,
            registered: BTreeSet::new(),
            stats: Stats::default(),
            start,
            started_at: now_f64(),
            latency: Default::default(),
        }
    }

    /// The `get_info` dict.
    pub fn info(&self) -> StorageInfo {
        let s = &*self.storage;
        let mut interfaces: Vec<(String, String)> = Vec::new();
        let mut add = |m: &str, n: &str| interfaces.push((m.to_string(), n.to_string()));
        match self.kind {
            Kind::File => {
                if self.blobs.is_some() {
                    add(ZI, "IBlobStorageRestoreable");
                    add(ZI, "IBlobStorage");
                }
                for n in [
                    "IStorageRestoreable",
                    "IStorageIteration",
                    "IStorageUndoable",
                    "IStorageCurrentRecordIteration",
                    "IExternalGC",
                    "IStorage",
                ] {
                    add(ZI, n);
                }
            }
            Kind::Mapping => {
                add(ZI, "IStorage");
                add(ZI, "IStorageIteration");
            }
        }
        add("zope.interface", "Interface");
        StorageInfo {
            length: s.len(),
            size: s.size(),
            name: s.name(),
            supports_undo: self.supports_undo(),
            supports_record_iternext: self.kind == Kind::File,
            interfaces,
        }
    }

    /// Whether undo is offered to clients (FileStorage only, as in Python).
    pub fn supports_undo(&self) -> bool {
        self.kind == Kind::File && self.storage.supports_undo()
    }

    /// `server_status()`, keys in the order Python sends them.
    pub fn status(&self, timeout_configured: bool) -> Vec<(String, Value)> {
        let st = &self.stats;
        let int = |v: u64| Value::Int(v as i128);
        let last = self.announced;
        vec![
            ("connections".into(), int(self.registered.len() as u64)),
            ("loads".into(), int(st.loads)),
            ("stores".into(), int(st.stores)),
            ("commits".into(), int(st.commits)),
            ("aborts".into(), int(st.aborts)),
            ("active_txns".into(), int(st.active_txns)),
            (
                "lock_time".into(),
                Value::opt(self.lock.lock_time.map(Value::Float)),
            ),
            ("conflicts".into(), int(st.conflicts)),
            ("conflicts_resolved".into(), int(st.conflicts_resolved)),
            ("start".into(), Value::str(self.start.clone())),
            ("waiting".into(), int(self.lock.waiting() as u64)),
            (
                "timeout-thread-is-alive".into(),
                if timeout_configured {
                    Value::Bool(true)
                } else {
                    Value::str("stub")
                },
            ),
            (
                "last-transaction".into(),
                Value::str(format!("{:016x}", last.0)),
            ),
        ]
    }
}

/// Python's `time.ctime()` of a moment (local time), e.g. `Sat Nov  1 17:24:20 2026`.
pub fn ctime(t: std::time::SystemTime) -> String {
    crate::logging::local_time("%a %b %e %H:%M:%S %Y", t)
}

/// Seconds since the epoch, as a float.
pub fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
