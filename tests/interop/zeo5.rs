//! A real ZEO 5.x client (ZEO 5.4.1 with ZODB 5.8.1, the pinned `.venv-zeo5` that
//! scripts/setup-venv-zeo5.sh creates) against the real `zeo serve` binary: commits and
//! reads, two clients seeing each other's invalidations, client-side BTree conflict
//! resolution, undo, pack, blobs uploaded to and downloaded from the server, iterator
//! and history, reconnection after a server restart, each in both the pickle (`Z5`)
//! and msgpack (`M5`) encodings (every ZEO.DB a script opens is checked to have
//! agreed on the expected one); and what ZEO 5 puts on the wire: protocol-3 pickles
//! (the protocol-1 pickles of ZEO ≤ 5.1 on Python 2 are refused with a clear log line).

use crate::common::{python_output_with, python_zeo5, run_python_with};
use crate::server_support::ZeoServer;

const FS: &str = "<filestorage 1>\n  path Data.fs\n  blob-dir blobs\n</filestorage>";

/// Run `code` with the ZEO 5 virtualenv's python; panics on failure; returns stdout.
fn zeo5(code: &str, args: &[&str]) -> String {
    run_python_with(&python_zeo5(), code, args)
}

/// Run a client script (after [`PRELUDE`]) with `args`; every ZEO.DB it opens must
/// have agreed on the encoding `msgpack` selects.
fn client(msgpack: bool, body: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push(if msgpack { "M5" } else { "Z5" });
    zeo5(&format!("{PRELUDE}\n{body}"), &all)
}

/// The `<zeo>` lines that select the encoding.
fn encoding(msgpack: bool) -> &'static str {
    if msgpack {
        "  msgpack true"
    } else {
        "  msgpack false"
    }
}

/// Prepended to every client script: checks that this really is ZEO 5; takes the
/// expected protocol (`Z5`/`M5`) off the end of sys.argv and checks every ZEO.DB
/// against it; records the first bytes of every message the client encodes (`SENT`),
/// so a test can say which pickle protocol ZEO 5 puts on the wire.
const PRELUDE: &str = r#"
import sys, time, transaction
from importlib.metadata import version
import ZEO, ZEO.asyncio.client as _client
assert version('ZEO').startswith('5.'), (version('ZEO'), ZEO.__file__)
EXPECT = sys.argv.pop().encode()
_DB = ZEO.DB
def _checked_db(*a, **k):
    db = _DB(*a, **k)
    pv = db.storage._server.client.protocol_version
    assert pv == EXPECT, (pv, EXPECT)
    return db
ZEO.DB = _checked_db
SENT = set()
_encoder = _client.encoder
def _recording_encoder(protocol, *a, **k):
    enc = _encoder(protocol, *a, **k)
    def encode(*args):
        out = enc(*args)
        SENT.add(out[:2] if protocol[:1] == b'Z' else protocol[:1])
        return out
    return encode
_client.encoder = _recording_encoder
def wait_for(cond, what):
    deadline = time.time() + 10
    while not cond():
        assert time.time() < deadline, what
        time.sleep(0.05)
"#;

/// Commit and read, invalidations both ways between two clients, history, iterator,
/// undo through DB.undo, server_status; returns what the client put on the wire.
fn basic_session(msgpack: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ZeoServer::start(dir.path(), encoding(msgpack), FS);
    let out = client(
        msgpack,
        r#"
from persistent.mapping import PersistentMapping
addr = ('127.0.0.1', int(sys.argv[1]))
db1 = ZEO.DB(addr, server_sync=True); db2 = ZEO.DB(addr, server_sync=True)
tm1 = transaction.TransactionManager(); tm2 = transaction.TransactionManager()
c1 = db1.open(tm1); c2 = db2.open(tm2)
r1 = c1.root()
r1['a'] = PersistentMapping(v=1)
tm1.get().note(u'first')
tm1.get().setUser(u'alice')
tm1.commit()
tm2.begin()
assert c2.root()['a']['v'] == 1
r1['a']['v'] = 2
tm1.commit()
def seen2():
    tm2.begin(); return c2.root()['a']['v'] == 2
wait_for(seen2, 'no invalidation 1 -> 2')
c2.root()['a']['v'] = 3
tm2.commit()
def seen1():
    tm1.begin(); return r1['a']['v'] == 3
wait_for(seen1, 'no invalidation 2 -> 1')
oid = r1['a']._p_oid
h = db1.history(oid, 10)
assert len(h) == 3, h
assert [x['size'] > 0 for x in h] == [True] * 3, h
assert h[-1]['description'] == 'first' and h[-1]['user_name'] == '/ alice', h
txns = list(db1.storage.iterator())
assert len(txns) == 4, txns
assert txns[1].description == b'first' and txns[1].user == b'/ alice', vars(txns[1])
assert txns[0].description == b'initial database creation'
# records of a transaction come from the server while its iterator is at it; once the
# transaction iterator is exhausted the server forgets it (KeyError, as ZEO's own)
try:
    list(txns[1])
    print('records of an exhausted iterator?!')
except KeyError:
    pass
recs = [(r.oid, r.tid) for t in db1.storage.iterator() for r in t]
assert (oid, txns[1].tid) in recs and (oid, txns[3].tid) in recs, recs
assert len(recs) == 5, recs
# a bounded iterator
assert [t.tid for t in db1.storage.iterator(txns[1].tid, txns[2].tid)] == [txns[1].tid, txns[2].tid]
log = db1.undoLog(0, 10)
assert len(log) == 4, log
assert log[-1]['description'] == 'initial database creation', log
db1.undo(log[0]['id'], tm1.get())
tm1.commit()
tm1.begin()
assert r1['a']['v'] == 2, r1['a']['v']
wait_for(lambda: (tm2.begin(), c2.root()['a']['v'] == 2)[1], 'no invalidation after undo')
st = db1.storage.server_status()
assert st['connections'] == 2, st
assert st['commits'] == 5, st
db1.close(); db2.close()
print(' '.join(sorted(repr(s) for s in SENT)))
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(server.stop(), Some(0));
    // The Data.fs written for the ZEO 5 client opens in ZODB 5's FileStorage.
    let check = zeo5(
        r#"
import sys
from ZODB.FileStorage import FileStorage
from ZODB.DB import DB
fs = FileStorage(sys.argv[1], read_only=True)
db = DB(fs)
print(db.open().root()['a']['v'], len(list(fs.iterator())))
db.close()
"#,
        &[dir.path().join("Data.fs").to_str().unwrap()],
    );
    assert_eq!(check.trim(), "2 5");
    out.trim().to_string()
}

/// In pickle mode every message ZEO 5 sends (calls, async calls, heartbeats) is a
/// protocol-3 pickle, which our decoder accepts.
#[test]
fn zeo5_commit_invalidate_undo_iterate_pickle() {
    assert_eq!(basic_session(false), r"b'\x80\x03'");
}

/// ZEO 5 follows the server's `M5` greeting (msgpack since ZEO 5.1).
#[test]
fn zeo5_commit_invalidate_undo_iterate_msgpack() {
    assert_eq!(basic_session(true), "b'M'");
}

/// Two clients insert into the same OOBTree bucket concurrently: the second vote
/// returns the conflict, ZEO 5 resolves it in the client and stores again.
fn btree_conflict_resolved_client_side(msgpack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), encoding(msgpack), FS);
    let out = client(
        msgpack,
        r#"
from BTrees.OOBTree import OOBTree
addr = ('127.0.0.1', int(sys.argv[1]))
db1 = ZEO.DB(addr, server_sync=True); db2 = ZEO.DB(addr, server_sync=True)
resolved = []
orig = db2.storage.tryToResolveConflict
def counting(*a, **k):
    resolved.append(a[0])
    return orig(*a, **k)
db2.storage.tryToResolveConflict = counting
tm1 = transaction.TransactionManager(); tm2 = transaction.TransactionManager()
c1 = db1.open(tm1); c2 = db2.open(tm2)
t = OOBTree()
for k in ('b', 'd', 'f'): t[k] = k
c1.root()['t'] = t
tm1.commit()
tm2.begin()
t2 = c2.root()['t']
t1 = c1.root()['t']
t1['a'] = 1
t2['z'] = 2
tm1.commit()
tm2.commit()  # conflicts at vote, resolved by the client, committed
assert resolved == [t2._p_oid], resolved
tm1.begin(); tm2.begin()
print(sorted(c1.root()['t'].keys()), sorted(c2.root()['t'].keys()))
db1.close(); db2.close()
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(
        out.trim(),
        "['a', 'b', 'd', 'f', 'z'] ['a', 'b', 'd', 'f', 'z']"
    );
}

#[test]
fn zeo5_btree_conflict_resolved_client_side_pickle() {
    btree_conflict_resolved_client_side(false);
}

#[test]
fn zeo5_btree_conflict_resolved_client_side_msgpack() {
    btree_conflict_resolved_client_side(true);
}

/// Pack through ZEO 5's ClientStorage.pack: old revisions go (history of one), an
/// object no longer reachable is garbage-collected, the undo log empties, and the pack
/// keeps the newest data; Data.fs.old is left, as FileStorage leaves it.
fn pack(msgpack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), encoding(msgpack), FS);
    let out = client(
        msgpack,
        r#"
from persistent.mapping import PersistentMapping
from ZODB.POSException import POSKeyError
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr)
c = db.open(); r = c.root()
r['keep'] = PersistentMapping(v=0)
r['drop'] = PersistentMapping(v=0)
transaction.commit()
drop = r['drop']._p_oid
keep = r['keep']._p_oid
for i in range(1, 4):
    r['keep']['v'] = i
    transaction.commit()
del r['drop']
transaction.commit()
assert len(db.history(keep, 10)) == 4
n_undo = len(db.undoLog(0, 100))
time.sleep(0.01)
db.pack()
transaction.begin()
assert len(db.history(keep, 10)) == 1, db.history(keep, 10)
# packing at "now" leaves no undoable transaction (as FileStorage itself does)
assert n_undo == 6 and len(db.undoLog(0, 100)) == 0, db.undoLog(0, 100)
db.close()
# a fresh client (no cache) finds the garbage-collected object gone
db = ZEO.DB(addr)
try:
    db.storage.load(drop)
    print('drop survived the pack?!')
except POSKeyError:
    pass
print(db.open().root()['keep']['v'], len(db.history(keep, 10)))
db.close()
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(out.trim(), "3 1");
    assert!(dir.path().join("Data.fs.old").exists());
}

#[test]
fn zeo5_pack_pickle() {
    pack(false);
}

#[test]
fn zeo5_pack_msgpack() {
    pack(true);
}

/// Blobs: uploaded by a ZEO 5 client (storeBlob chunks), downloaded by a fresh client
/// with an empty blob cache (sendBlob), a changed blob's old revision through a
/// historical connection, and an empty blob.
fn blobs_upload_and_download(msgpack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), encoding(msgpack), FS);
    let out = client(
        msgpack,
        r#"
import os, hashlib
from ZODB.blob import Blob
addr = ('127.0.0.1', int(sys.argv[1])); tmp = sys.argv[2]
big = os.urandom(1 << 20) * 5
blobs = (('small', b'x' * 100), ('big', big), ('empty', b''))
db = ZEO.DB(addr, blob_dir=os.path.join(tmp, 'c1'))
c = db.open(); r = c.root()
for name, data in blobs:
    b = Blob()
    with b.open('w') as f: f.write(data)
    r[name] = b
transaction.commit()
first = db.lastTransaction()
with r['small'].open('w') as f: f.write(b'second')
transaction.commit()
db.close()
db = ZEO.DB(addr, blob_dir=os.path.join(tmp, 'c2'))
r = db.open().root()
assert r['small'].open().read() == b'second'
for name, data in blobs[1:]:
    got = r[name].open().read()
    assert hashlib.sha1(got).digest() == hashlib.sha1(data).digest(), name
old = db.open(at=first).root()
assert old['small'].open().read() == b'x' * 100
db.close()
print('ok')
"#,
        &[&server.port.to_string(), dir.path().to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "upload temp files left: {left:?}");
}

#[test]
fn zeo5_blobs_upload_and_download_pickle() {
    blobs_upload_and_download(false);
}

#[test]
fn zeo5_blobs_upload_and_download_msgpack() {
    blobs_upload_and_download(true);
}

/// A ZEO 5 client connected across a server restart reconnects by itself and commits;
/// a second client sees that commit; a client with a persistent cache that was closed
/// across the restart keeps its cache (quick verification from the invalidation
/// queue seeded from Data.fs).
fn reconnect_after_server_restart(msgpack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("  invalidation-queue-size 100\n{}", encoding(msgpack));
    let mut server = ZeoServer::start(dir.path(), &extra, FS);
    let port = server.port.to_string();
    let tmp = dir.path().to_str().unwrap().to_string();
    client(
        msgpack,
        r#"
from persistent.mapping import PersistentMapping
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr, client='a', var=sys.argv[2])
c = db.open(); r = c.root()
for i in range(20): r[i] = PersistentMapping(v=i)
transaction.commit()
db.close()
"#,
        &[&port, &tmp],
    );
    // A live client: started before the restart, it must reconnect and commit.
    let ready = dir.path().join("ready");
    let go = dir.path().join("go");
    let live = std::process::Command::new(python_zeo5())
        .arg("-c")
        .arg(format!(
            "{PRELUDE}\n{}",
            r#"
import os
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr, wait_timeout=30)
c = db.open(); r = c.root()
r[1]['v'] = 100
transaction.commit()
first = db.storage._server.client.protocol
open(sys.argv[2], 'w').close()
wait_for(lambda: os.path.exists(sys.argv[3]), 'no go')
# a call made while disconnected raises ClientDisconnected (ZEO 5 does not queue it);
# wait for the new connection, as an application retrying would
def reconnected():
    p = db.storage._server.client.protocol
    return p is not None and p is not first and db.storage.is_connected()
wait_for(reconnected, 'no reconnection')
r[1]['v'] = 101
transaction.commit()
print(db.storage.is_connected(), r[1]['v'])
db.close()
"#,
        ))
        .args([
            port.as_str(),
            ready.to_str().unwrap(),
            go.to_str().unwrap(),
            if msgpack { "M5" } else { "Z5" },
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "live client not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.stop(), Some(0));
    std::fs::write(&go, "").unwrap();
    server.spawn();
    let live = live.wait_with_output().unwrap();
    assert!(
        live.status.success(),
        "live client failed:\n{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), "True 101");
    let out = client(
        msgpack,
        r#"
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr, client='a', var=sys.argv[2])
n = len(db.storage._cache)
r = db.open().root()
assert r[1]['v'] == 101, r[1]['v']
assert r[2]['v'] == 2
print('kept' if n > 5 else 'dropped')
db.close()
"#,
        &[&port, &tmp],
    );
    assert_eq!(out.trim(), "kept");
}

#[test]
fn zeo5_reconnect_after_server_restart_pickle() {
    reconnect_after_server_restart(false);
}

#[test]
fn zeo5_reconnect_after_server_restart_msgpack() {
    reconnect_after_server_restart(true);
}

/// ZEO 5.0 and 5.1 on Python 2 pickled their messages with protocol 1 (ZEO 5.2 moved
/// to protocol 3 everywhere). We only decode protocol 2 and 3: such a message is
/// refused, the connection closed, and the server log says why in words a user can
/// act on. Here a raw client (the ZEO 5 venv's zodbpickle) sends a protocol-1 register
/// after a correct handshake.
#[test]
fn protocol_1_pickles_are_refused_with_a_clear_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "", FS);
    let out = python_output_with(
        &python_zeo5(),
        r#"
import socket, struct, sys
from zodbpickle.pickle import dumps
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
def read_msg():
    h = b''
    while len(h) < 4:
        chunk = s.recv(4 - len(h))
        if not chunk: return None
        h += chunk
    n = struct.unpack('>I', h)[0]
    body = b''
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk: return None
        body += chunk
    return body
def send(b): s.sendall(struct.pack('>I', len(b)) + b)
print(read_msg())
send(b'Z5')
msg = dumps((1, False, 'register', ('1', False)), 1)
assert msg[:1] != b'\x80'
send(msg)
print(read_msg())
"#,
        &[&server.port.to_string()],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b'Z5'\nNone");
    let log = server.log_text();
    assert!(
        log.contains(
            "cannot decode a message: malformed message at byte 0: pickle: missing PROTO header (ZEO sends protocol 3 pickles); closing the connection"
        ),
        "{log}"
    );
}

/// ZEO 5.4.1's own test classes (the groups `make test` runs for ZEO 6.2, see
/// tests/interop/conformance.rs) with ZEO 5's ClientStorage against `zeo serve`,
/// through the same launcher substitution. `--check` holds them to the same list of
/// expected failures in docs/compatibility.md: ZEO 5 finds nothing ZEO 6.2 does not.
#[test]
fn zeo5_upstream_conformance_against_zeo_serve() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python_zeo5())
        .arg(repo.join("tests/conformance/run_conformance.py"))
        .args(["--server", "zeo", "--quick", "--check", "--jobs", "1"])
        .args(["--test-timeout", "30", "--group-timeout", "200"])
        .arg("--zeo-bin")
        .arg(crate::common::zeo_bin())
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "ZEO 5 conformance run failed ({}):\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().rev().find(|l| l.starts_with("conformance:"));
    let passed: usize = last
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 80,
        "too few ZEO 5 conformance tests passed: {last:?}"
    );
}

/// New oids on a fresh MappingStorage start at 1, as Python's MappingStorage (and
/// FileStorage, and `zeo serve`'s FileStorage) hand them out: oid 0 is the root's,
/// which ZODB.DB stores under that fixed oid. Found with ZEO 5's own
/// PackableStorage tests (`checkPackOnlyOneObject`, `checkPackJustOldRevisions` on
/// MappingStorageTests: they allocate objects before storing the root and then get a
/// ConflictError storing oid 0); ZEO 6.2's tests fail the same way.
#[test]
fn mapping_storage_new_oids_start_at_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "", "<mappingstorage 1>\n</mappingstorage>");
    let out = client(
        false,
        r#"
from ZEO.ClientStorage import ClientStorage
from ZODB.MappingStorage import MappingStorage
from ZODB.utils import u64
print('python', u64(MappingStorage().new_oid()))
cs = ClientStorage(('127.0.0.1', int(sys.argv[1])), wait_timeout=10)
assert cs._server.client.protocol_version == EXPECT
print('zeo', u64(cs.new_oid()))
cs.close()
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["python", "1", "zeo", "1"]
    );
}

/// A transaction extension that pickles through a `builtins` global (here a dict
/// subclass reducing to `builtins.dict`, as ZODB's IteratorStorage test
/// `checkTransactionExtensionFromIterator` does) is accepted by Python's server, whose
/// message unpickler allows any global of `builtins`, `copy_reg`, `zodbpickle` and
/// `ZopeUndo.Prefix`. ZEO 6.2 fails the same way.
#[test]
fn extension_pickled_through_builtins_dict_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "", FS);
    let out = client(
        false,
        r#"
addr = ('127.0.0.1', int(sys.argv[1]))
class ext(dict):
    def __reduce__(self):
        return dict, (tuple(self.items()),)
db = ZEO.DB(addr)
c = db.open(); c.root()['x'] = 1
t = transaction.get()
t.extension = ext(foo=1)
transaction.commit()
print([t.extension for t in db.storage.iterator()][-1])
db.close()
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(out.trim(), "{'foo': 1}");
}
