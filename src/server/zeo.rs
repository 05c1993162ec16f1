//! The ZEO service: per-connection protocol state (handshake, encoding adopted from
//! the client's letter, registration, read-only flag, open transaction, iterators,
//! blob upload) and the dispatch of every method of spec zeo-protocol.md §7 to the
//! served storages. Commit flow lives in `txn.rs`, read-side methods in `reads.rs`.
//!
//! Invariants: before a successful `register` only `register` is callable and
//! anything else closes the connection; after it, `register` closes it; a failing
//! one-way call closes the connection (no reply channel); a message with id -1 is a
//! heartbeat and ignored; every close, whoever initiated it, runs the clean-up of
//! [`ZeoService::on_close`] (abort, lock release, broadcast-list removal); replies
//! and server calls are queued in the order they must reach each client.

use super::commit::TxnBuffer;
use super::connection::CloseReason;
use super::event_loop::{ConnId, Outbox, Service, Signal};
use super::served::Served;
use crate::protocol::handshake::{parse_client_handshake, ruok_json, ClientHandshake};
use crate::protocol::message::Call;
use crate::protocol::reply::{encode_reply, encode_server_call, Reply, ReplyValue, ServerCall};
use crate::protocol::{decode_request, Encoding, Incoming, Request, Value, WireError};
use crate::storage::{DataRecord, Oid, PackOutcome, SResult, TransactionRecord, TxnIter};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

/// Server-wide settings of the service.
#[derive(Clone, Debug)]
pub struct Options {
    /// Letter of the greeting (`Z5`/`M5`); clients may answer with the other one.
    pub greeting: Encoding,
    /// Server-wide read-only mode.
    pub read_only: bool,
    /// Seconds; `getInvalidations` may read the storage for tids younger than this.
    pub invalidation_age: Option<f64>,
    /// Seconds a committer may hold the commit lock.
    pub transaction_timeout: Option<f64>,
    /// Blob bytes a `sendBlob` stream queues before waiting for the connection's
    /// output to drain (must stay well below the connection's output limit).
    pub blob_batch: usize,
}

/// Results of worker jobs.
pub enum Completion {
    /// A pack finished; `msgid` is set when the client waits for the reply.
    Pack {
        storage: usize,
        conn: ConnId,
        msgid: Option<Value>,
        result: SResult<PackOutcome>,
    },
    /// The group fsync of a storage's sealed transactions up to `upto` ended;
    /// the loop acknowledges them (or fails them) in tid order.
    Synced {
        storage: usize,
        upto: crate::storage::Tid,
        result: SResult<()>,
        /// Time the fsync took (for the finish histogram).
        took: std::time::Duration,
    },
    /// An undoLog/undoInfo answer computed off the loop.
    Reply {
        conn: ConnId,
        msgid: Value,
        result: Result<Value, WireError>,
    },
}

/// An open iterator of a connection.
pub(crate) enum Iter {
    Txn {
        it: TxnIter,
        last: Option<TransactionRecord>,
    },
    Records(std::vec::IntoIter<DataRecord>),
}

/// An in-progress `storeBlobStart`..`storeBlobEnd` upload.
pub(crate) struct Upload {
    pub file: File,
    pub path: PathBuf,
}

/// A `sendBlob` answer being streamed (flow-controlled by output drain).
pub(crate) struct BlobStream {
    pub file: File,
    pub oid: crate::storage::Oid,
    pub serial: crate::storage::Tid,
    pub msgid: Value,
    pub started: bool,
}

/// One client connection.
pub(crate) struct Conn {
    pub peer: String,
    /// `None` until the client's handshake message arrived.
    pub enc: Option<Encoding>,
    /// Index of the registered storage.
    pub storage: Option<usize>,
    pub read_only: bool,
    pub label: Option<String>,
    pub txn: Option<TxnBuffer<Value>>,
    /// After a successful vote: the oids to broadcast at tpc_finish.
    pub voted: Option<Vec<Oid>>,
    /// A vote waiting in the commit-lock queue: its msgid.
    pub pending_vote: Option<Value>,
    pub iters: HashMap<i64, Iter>,
    pub next_iid: i64,
    pub upload: Option<Upload>,
    /// `sendBlob` answers in progress, oldest first.
    pub blob_streams: std::collections::VecDeque<BlobStream>,
}

/// What handling a call produced.
pub(crate) enum Outcome {
    Reply(Value),
    Error(WireError),
    /// The reply comes later (queued vote, worker job) or was already sent.
    Later,
    /// Close the connection (protocol violation).
    Close(String),
}

impl From<ReplyValue> for Outcome {
    fn from(v: ReplyValue) -> Self {
        Outcome::Reply(v.to_value())
    }
}

/// The ZEO server logic driven by the event loop.
pub struct ZeoService {
    pub(crate) storages: Vec<Served>,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) opts: Options,
    /// Timer key -> (storage, lock holder, lock generation) for transaction timeouts.
    pub(crate) timeouts: HashMap<u64, (usize, ConnId, u64)>,
    pub(crate) next_timer: u64,
    /// Counter for unique blob upload file names.
    pub(crate) upload_seq: u64,
    stopping: bool,
}

pub(crate) const LOG: &str = "ZEO.StorageServer";

impl ZeoService {
    pub fn new(storages: Vec<Served>, opts: Options) -> Self {
        ZeoService {
            storages,
            conns: HashMap::new(),
            opts,
            timeouts: HashMap::new(),
            next_timer: 1,
            upload_seq: 0,
            stopping: false,
        }
    }

    /// The served storages (for status reports and tests).
    pub fn storages(&self) -> &[Served] {
        &self.storages
    }

    /// Queue a reply to a two-way call.
    pub(crate) fn send_reply(
        &mut self,
        out: &mut Outbox<Completion>,
        id: ConnId,
        msgid: Value,
        result: Result<Value, WireError>,
    ) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let Some(enc) = c.enc else { return };
        if let Err(e) = &result {
            if e.is_expected() {
                log::debug!(target: LOG, "({}) {e}", c.peer);
            } else {
                log::error!(target: LOG, "({}) error reply: {e}", c.peer);
            }
        }
        match encode_reply(enc, &Reply { msgid, result }) {
            Ok(bytes) => out.send(id, bytes),
            Err(e) => {
                log::error!(target: LOG, "({}) cannot encode a reply: {e}", c.peer);
                out.close(id, format!("cannot encode a reply: {e}"));
            }
        }
    }

    /// Queue a one-way server call.
    pub(crate) fn send_call(&self, out: &mut Outbox<Completion>, id: ConnId, call: &ServerCall) {
        let Some(enc) = self.conns.get(&id).and_then(|c| c.enc) else {
            return;
        };
        match encode_server_call(enc, call) {
            Ok(bytes) => out.send(id, bytes),
            Err(e) => out.close(id, format!("cannot encode {}: {e}", call.method())),
        }
    }

    fn handshake(&mut self, id: ConnId, msg: &[u8], out: &mut Outbox<Completion>) {
        match parse_client_handshake(msg) {
            ClientHandshake::Ruok => {
                let statuses: Vec<(String, Value)> = self
                    .storages
                    .iter()
                    .map(|s| {
                        let st =
                            ReplyValue::Status(s.status(self.opts.transaction_timeout.is_some()));
                        (s.name.clone(), st.to_value())
                    })
                    .collect();
                out.send(id, ruok_json(&statuses));
                out.close_after_flush(id);
            }
            ClientHandshake::Accept(enc) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.enc = Some(enc);
                }
            }
            ClientHandshake::Reject(why) => {
                let peer = self.peer(id);
                log::error!(target: "ZEO.asyncio.server", "({peer}) bad handshake: {why}");
                out.close(id, format!("bad handshake: {why}"));
            }
        }
    }

    pub(crate) fn peer(&self, id: ConnId) -> String {
        self.conns
            .get(&id)
            .map(|c| c.peer.clone())
            .unwrap_or_default()
    }

    fn register(&mut self, id: ConnId, name: &str, read_only: bool) -> Outcome {
        let Some(idx) = self.storages.iter().position(|s| s.name == name) else {
            return Outcome::Error(WireError::value_error(format!("unknown storage: {name}")));
        };
        let served = &mut self.storages[idx];
        let server_ro = self.opts.read_only || served.read_only;
        if !read_only && server_ro {
            return Outcome::Error(WireError::read_only());
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return Outcome::Later;
        };
        c.storage = Some(idx);
        c.read_only = read_only || server_ro;
        served.registered.insert(id);
        served.stats.connections = served.registered.len() as u64;
        log::info!(target: LOG, "({}) registered storage {name:?}{}", c.peer,
            if c.read_only { " read-only" } else { "" });
        Outcome::Reply(ReplyValue::Tid(served.announced).to_value())
    }

    fn handle_call(&mut self, id: ConnId, call: Call, out: &mut Outbox<Completion>) {
        let Call {
            msgid,
            oneway,
            request,
        } = call;
        let registered = self.conns.get(&id).and_then(|c| c.storage);
        let method = request.method();
        let oneway_method = request.is_oneway();
        let outcome = match (&request, registered) {
            (Request::Register { storage, read_only }, None) => {
                let (s, r) = (storage.clone(), *read_only);
                self.register(id, &s, r)
            }
            (Request::Register { .. }, Some(_)) => {
                Outcome::Close("register called on a registered connection".into())
            }
            (_, None) => Outcome::Close(format!("{method} called before register")),
            (_, Some(sidx)) => self.dispatch(id, sidx, &msgid, request, out),
        };
        match outcome {
            // A one-way method called two-way gets `None`, as from Python.
            Outcome::Later if !oneway && oneway_method => {
                self.send_reply(out, id, msgid, Ok(Value::None))
            }
            Outcome::Later => {}
            Outcome::Close(why) => {
                log::error!(target: LOG, "({}) closing the connection: {why}", self.peer(id));
                out.close(id, why);
            }
            Outcome::Reply(v) if !oneway => self.send_reply(out, id, msgid, Ok(v)),
            Outcome::Error(e) if !oneway => self.send_reply(out, id, msgid, Err(e)),
            Outcome::Reply(_) => {}
            Outcome::Error(e) => {
                log::error!(target: LOG, "({}) one-way call {method} failed: {e}; closing the connection", self.peer(id));
                out.close(id, format!("{method} failed: {e}"));
            }
        }
    }

    fn dispatch(
        &mut self,
        id: ConnId,
        sidx: usize,
        msgid: &Value,
        request: Request,
        out: &mut Outbox<Completion>,
    ) -> Outcome {
        use Request as R;
        match request {
            R::Register { .. } => Outcome::Close("register called twice".into()),
            R::TpcBegin {
                txn,
                user,
                description,
                extension,
                tid,
                status,
            } => self.tpc_begin(id, sidx, txn, user, description, &extension, tid, status),
            R::StoreA {
                oid,
                serial,
                data,
                txn,
            } => self.store(
                id,
                sidx,
                &txn,
                super::commit::Op::Store { oid, serial, data },
            ),
            R::CheckCurrentSerial { oid, serial, txn } => self.store(
                id,
                sidx,
                &txn,
                super::commit::Op::CheckCurrent { oid, serial },
            ),
            R::RestoreA {
                oid,
                serial,
                data,
                prev_txn,
                txn,
            } => self.store(
                id,
                sidx,
                &txn,
                super::commit::Op::Restore {
                    oid,
                    serial,
                    data,
                    prev_txn,
                },
            ),
            R::DeleteObject { oid, serial, txn } => {
                self.store(id, sidx, &txn, super::commit::Op::Delete { oid, serial })
            }
            R::UndoA { undo_id, txn } => {
                self.store(id, sidx, &txn, super::commit::Op::Undo { undo_id })
            }
            R::StoreBlobStart => self.blob_start(id, sidx),
            R::StoreBlobChunk { chunk } => self.blob_chunk(id, &chunk),
            R::StoreBlobEnd {
                oid,
                serial,
                data,
                txn,
            } => self.blob_end(id, sidx, oid, serial, data, &txn),
            R::StoreBlobShared {
                oid,
                serial,
                data,
                filename,
                txn,
            } => self.blob_shared(id, sidx, oid, serial, data, &filename, &txn),
            R::Vote { txn } => self.vote(id, sidx, msgid.clone(), &txn, out),
            R::TpcFinish { txn } => self.tpc_finish(id, sidx, msgid.clone(), &txn, out),
            R::TpcAbort { txn } => self.tpc_abort(id, &txn, out),
            R::SendBlob { oid, serial } => self.send_blob(id, sidx, oid, serial, msgid, out),
            other => self.read_call(id, sidx, msgid, other, out),
        }
    }

    /// Abort every open transaction and close the storages (shutdown).
    fn shutdown(&mut self, out: &mut Outbox<Completion>) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if self.conns.get(&id).is_some_and(|c| c.txn.is_some()) {
                self.abort_txn(id, out);
            }
            if let Some(c) = self.conns.get_mut(&id) {
                if let Some(u) = c.upload.take() {
                    let _ = std::fs::remove_file(&u.path);
                }
            }
        }
        for s in &self.storages {
            if let Err(e) = s.storage.close() {
                log::error!(target: "ZEO.runzeo", "closing storage {:?}: {e}", s.name);
            }
        }
    }
}

impl Service for ZeoService {
    type Completion = Completion;

    fn on_connect(&mut self, conn: ConnId, peer: &str, out: &mut Outbox<Completion>) {
        if self.stopping {
            out.close(conn, "server is shutting down");
            return;
        }
        log::info!(target: "ZEO.asyncio.server", "new connection {peer}");
        self.conns.insert(
            conn,
            Conn {
                peer: peer.to_string(),
                enc: None,
                storage: None,
                read_only: false,
                label: None,
                txn: None,
                voted: None,
                pending_vote: None,
                iters: HashMap::new(),
                next_iid: 0,
                upload: None,
                blob_streams: Default::default(),
            },
        );
        out.send(conn, self.opts.greeting.greeting());
    }

    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<Completion>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(enc) = c.enc else {
            self.handshake(conn, &msg, out);
            return;
        };
        match decode_request(enc, &msg) {
            Err(e) => {
                log::error!(target: LOG, "({}) cannot decode a message: {e}; closing the connection", c.peer);
                out.close(conn, format!("undecodable message: {e}"));
            }
            Ok(Incoming::Heartbeat) => {}
            Ok(Incoming::BadCall {
                msgid,
                oneway,
                method,
                error,
            }) => {
                if oneway || c.storage.is_none() {
                    log::error!(target: LOG, "({}) bad call of {method}: {error}; closing the connection", c.peer);
                    out.close(conn, format!("bad call of {method}: {error}"));
                } else {
                    self.send_reply(
                        out,
                        conn,
                        msgid,
                        Err(WireError::type_error(error.to_string())),
                    );
                }
            }
            Ok(Incoming::Call(call)) => self.handle_call(conn, call, out),
        }
    }

    fn on_close(&mut self, conn: ConnId, why: &CloseReason, out: &mut Outbox<Completion>) {
        if self.conns.get(&conn).is_some_and(|c| c.txn.is_some()) {
            self.abort_txn(conn, out);
        }
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(u) = c.upload {
            let _ = std::fs::remove_file(&u.path);
        }
        if let Some(sidx) = c.storage {
            let s = &mut self.storages[sidx];
            s.registered.remove(&conn);
            s.stats.connections = s.registered.len() as u64;
            // A queued voter that vanished must not stay in the queue.
            s.lock.release(conn);
        }
        let label = c.label.map(|l| format!(" [{l}]")).unwrap_or_default();
        log::info!(target: LOG, "({}){label} disconnected: {why}", c.peer);
    }

    fn on_timer(&mut self, key: u64, out: &mut Outbox<Completion>) {
        self.transaction_timeout(key, out);
    }

    fn on_completion(&mut self, done: Completion, out: &mut Outbox<Completion>) {
        match done {
            Completion::Reply {
                conn,
                msgid,
                result,
            } => self.send_reply(out, conn, msgid, result),
            Completion::Pack {
                storage,
                conn,
                msgid,
                result,
            } => self.pack_done(storage, conn, msgid, result, out),
            Completion::Synced {
                storage,
                upto,
                result,
                took,
            } => self.synced(storage, upto, result, took, out),
        }
    }

    fn on_drained(&mut self, conn: ConnId, out: &mut Outbox<Completion>) {
        self.pump_blobs(conn, out);
    }

    fn report(&mut self, what: super::event_loop::Endpoint) -> String {
        match what {
            super::event_loop::Endpoint::Monitor => super::monitor::monitor_report(&self.storages),
            super::event_loop::Endpoint::Metrics => super::monitor::metrics_report(&self.storages),
        }
    }

    fn on_signal(&mut self, sig: Signal, out: &mut Outbox<Completion>) {
        match sig {
            Signal::User2 => {
                crate::logging::reopen();
                log::info!(target: "ZEO.runzeo", "log files reopened");
            }
            Signal::Terminate | Signal::Interrupt | Signal::Hangup => {
                if self.stopping {
                    return;
                }
                self.stopping = true;
                let (name, status) = match sig {
                    Signal::Terminate => ("SIGTERM", 0),
                    Signal::Interrupt => ("SIGINT", 0),
                    _ => ("SIGHUP", 1),
                };
                log::info!(target: "ZEO.runzeo", "{name} received, shutting down");
                super::notify::notify("STOPPING=1");
                self.shutdown(out);
                out.stop(status);
            }
        }
    }
}
