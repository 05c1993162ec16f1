//! Real Python ZEO 6.2 `ClientStorage`/`ZEO.DB` against the real `zeo serve` binary:
//! commits and reads, invalidations between clients, client-side BTree conflict
//! resolution, undo, iterator and history, blobs (server-side upload/download incl.
//! a 30 MB blob, shared blob directory), msgpack, read-only server and
//! read_only_fallback, reconnect after a restart with quick and full verification,
//! and Data.fs written through the server opening in Python's FileStorage.

use crate::common::run_python;
use crate::server_support::ZeoServer;

const FS: &str = "<filestorage 1>\n  path Data.fs\n  blob-dir blobs\n</filestorage>";

/// Commit and read, two clients seeing each other's invalidations, undo through
/// DB.undo, iterator and history; then Python's FileStorage opens the Data.fs.
fn basic_session(msgpack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let extra = if msgpack { "  msgpack true" } else { "" };
    let mut server = ZeoServer::start(dir.path(), extra, FS);
    let out = run_python(
        r#"
import sys, time, ZEO, transaction
from persistent.mapping import PersistentMapping
addr = ('127.0.0.1', int(sys.argv[1]))
db1 = ZEO.DB(addr, server_sync=True); db2 = ZEO.DB(addr, server_sync=True)
pv = db1.storage._server.client.protocol_version
assert pv[:1] == sys.argv[2].encode(), pv
tm1 = transaction.TransactionManager(); tm2 = transaction.TransactionManager()
c1 = db1.open(tm1); c2 = db2.open(tm2)
r1 = c1.root()
r1['a'] = PersistentMapping(v=1)
tm1.get().note('first')
tm1.commit()
tm2.begin()
assert c2.root()['a']['v'] == 1
# invalidation from client 1 reaches client 2
r1['a']['v'] = 2
tm1.commit()
deadline = time.time() + 10
while True:
    tm2.begin()
    if c2.root()['a']['v'] == 2: break
    assert time.time() < deadline, 'no invalidation'
    time.sleep(0.05)
# and the other way round
c2.root()['a']['v'] = 3
tm2.commit()
deadline = time.time() + 10
while True:
    tm1.begin()
    if r1['a']['v'] == 3: break
    assert time.time() < deadline, 'no invalidation back'
    time.sleep(0.05)
# history and iterator
h = db1.history(r1['a']._p_oid, 10)
assert len(h) == 3, h
assert isinstance(h[0]['description'], str)
tids = [t.tid for t in db1.storage.iterator()]
assert len(tids) == 4, tids
recs = [(r.oid, r.tid) for t in db1.storage.iterator() for r in t]
assert len(recs) >= 5, recs
# undo the last transaction through DB.undo
log = db1.undoLog(0, 10)
assert len(log) == 4, log
assert log[-1]['description'] == 'initial database creation', log
db1.undo(log[0]['id'], tm1.get())
tm1.commit()
tm1.begin()
assert r1['a']['v'] == 2, r1['a']['v']
info = db1.undoInfo(0, 20, {'description': b'first'})
assert len(info) == 1 and info[0]['description'] == 'first', info
st = db1.storage.server_status()
assert st['connections'] == 2, st
assert st['commits'] == 5, st
db1.close(); db2.close()
print('ok')
"#,
        &[&server.port.to_string(), if msgpack { "M" } else { "Z" }],
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(server.stop(), Some(0));
    let out = run_python(
        r#"
import sys
from ZODB.FileStorage import FileStorage
from ZODB.DB import DB
fs = FileStorage(sys.argv[1], read_only=True)
db = DB(fs)
c = db.open()
print(c.root()['a']['v'], len(list(fs.iterator())))
db.close()
"#,
        &[dir.path().join("Data.fs").to_str().unwrap()],
    );
    assert_eq!(out.trim(), "2 5");
}

#[test]
fn commit_invalidate_undo_iterate_pickle() {
    basic_session(false);
}

#[test]
fn commit_invalidate_undo_iterate_msgpack() {
    basic_session(true);
}

/// Two clients insert into the same OOBTree bucket concurrently: the second vote
/// gets the conflict, the Python client resolves it locally and votes again.
#[test]
fn btree_conflict_resolved_client_side() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "", FS);
    let out = run_python(
        r#"
import sys, ZEO, transaction
from BTrees.OOBTree import OOBTree
addr = ('127.0.0.1', int(sys.argv[1]))
db1 = ZEO.DB(addr, server_sync=True); db2 = ZEO.DB(addr, server_sync=True)
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

/// Blobs uploaded to and downloaded from the server (a small one and one of 30 MB),
/// and blobs through a shared blob directory.
#[test]
fn blobs_server_side_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB output limit: the 30 MB download only works with flow control.
    let server = ZeoServer::start_env(dir.path(), "", FS, &[("ZEO_MAX_OUTPUT_BUFFER", "1048576")]);
    let blobs = dir.path().join("blobs");
    let out = run_python(
        r#"
import sys, os, hashlib, ZEO, transaction
from ZODB.blob import Blob
addr = ('127.0.0.1', int(sys.argv[1])); tmp = sys.argv[2]; shared = sys.argv[3]
big = os.urandom(1 << 20) * 30
db = ZEO.DB(addr, blob_dir=os.path.join(tmp, 'c1'))
c = db.open(); r = c.root()
for name, data in (('small', b'x' * 100), ('big', big), ('empty', b'')):
    b = Blob()
    with b.open('w') as f: f.write(data)
    r[name] = b
transaction.commit()
db.close()
# a fresh client with an empty blob cache downloads them
db = ZEO.DB(addr, blob_dir=os.path.join(tmp, 'c2'))
r = db.open().root()
for name, data in (('small', b'x' * 100), ('big', big), ('empty', b'')):
    got = r[name].open().read()
    assert hashlib.sha1(got).digest() == hashlib.sha1(data).digest(), name
db.close()
# shared blob directory: the client writes into the server's blob dir itself
db = ZEO.DB(addr, blob_dir=shared, shared_blob_dir=True)
c = db.open(); r = c.root()
b = Blob()
with b.open('w') as f: f.write(b'shared!')
r['shared'] = b
transaction.commit()
assert r['big'].open().read()[:10] == big[:10]
db.close()
db = ZEO.DB(addr, blob_dir=os.path.join(tmp, 'c3'))
print(db.open().root()['shared'].open().read())
db.close()
"#,
        &[
            &server.port.to_string(),
            dir.path().to_str().unwrap(),
            blobs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "b'shared!'");
    // No upload temp files are left behind.
    let left: Vec<_> = std::fs::read_dir(blobs.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A read-only server refuses writers; read_only_fallback clients register
/// read-only on the same connection; reads work.
#[test]
fn read_only_server_and_fallback() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = ZeoServer::start(dir.path(), "", FS);
        run_python(
            "import sys, ZEO, transaction\ndb = ZEO.DB(('127.0.0.1', int(sys.argv[1])))\nc = db.open(); c.root()['x'] = 7; transaction.commit(); db.close()",
            &[&server.port.to_string()],
        );
    }
    let server = ZeoServer::start(dir.path(), "  read-only true", FS);
    let out = run_python(
        r#"
import sys, ZEO, transaction
from ZODB.POSException import ReadOnlyError
from ZEO.ClientStorage import ClientStorage
addr = ('127.0.0.1', int(sys.argv[1]))
cs = ClientStorage(addr, read_only_fallback=True, wait_timeout=10)
assert cs.isReadOnly()
import ZODB; db = ZODB.DB(cs)
c = db.open()
print(c.root()['x'])
c.root()['x'] = 8
try:
    transaction.commit()
    print('committed?!')
except ReadOnlyError:
    print('read-only')
    transaction.abort()
db.close()
try:
    ClientStorage(addr, wait_timeout=3)
    print('connected?!')
except Exception as e:
    print('refused')
"#,
        &[&server.port.to_string()],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["7", "read-only", "refused"]
    );
}

/// A client with a persistent cache reconnects after a server restart: with the
/// invalidation queue (seeded from Data.fs at startup) covering its last tid it
/// keeps its cache (quick verification); past the queue it drops it.
fn reconnect(queue_size: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("  invalidation-queue-size {queue_size}");
    let mut server = ZeoServer::start(dir.path(), &extra, FS);
    let port = server.port.to_string();
    let tmp = dir.path().to_str().unwrap().to_string();
    run_python(
        r#"
import sys, ZEO, transaction
from persistent.mapping import PersistentMapping
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr, client='a', var=sys.argv[2])
c = db.open(); r = c.root()
for i in range(20): r[i] = PersistentMapping(v=i)
transaction.commit()
db.close()
db = ZEO.DB(addr)
c = db.open(); r = c.root()
for i in range(3):
    r[0]['v'] += 1
    transaction.commit()
db.close()
"#,
        &[&port, &tmp],
    );
    server.stop();
    server.spawn();
    run_python(
        r#"
import sys, ZEO, transaction
addr = ('127.0.0.1', int(sys.argv[1]))
db = ZEO.DB(addr, client='a', var=sys.argv[2])
cache = db.storage._cache
n = len(cache)
c = db.open(); r = c.root()
assert r[0]['v'] == 3, r[0]['v']
print('kept' if n > 5 else 'dropped')
db.close()
"#,
        &[&port, &tmp],
    )
    .trim()
    .to_string()
}

#[test]
fn reconnect_quick_verification_after_restart() {
    assert_eq!(reconnect(100), "kept");
}

#[test]
fn reconnect_full_verification_past_queue() {
    assert_eq!(reconnect(1), "dropped");
}

/// Unix-domain socket and IPv6 listeners, used by the Python client.
#[test]
fn unix_socket_and_ipv6_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("zeo.sock");
    let conf = dir.path().join("unix.conf");
    std::fs::write(
        &conf,
        format!(
            "<zeo>\n  address {}\n</zeo>\n<mappingstorage 1>\n</mappingstorage>\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::common::zeo_bin())
        .args(["serve", "-C"])
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(std::time::Instant::now() < deadline, "no unix listener");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let code = "import sys, ZEO, transaction\ndb = ZEO.DB(sys.argv[1])\nc = db.open(); c.root()['k'] = 5; transaction.commit(); db.close()\ndb = ZEO.DB(sys.argv[1]); print(db.open().root()['k']); db.close()";
    let out = run_python(code, &[sock.to_str().unwrap()]);
    assert_eq!(out.trim(), "5");
    crate::server_support::signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!sock.exists(), "socket file removed at exit");
    // IPv6 loopback, when the machine has it.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; IPv6 part skipped");
        return;
    }
    let port = crate::server_support::free_port();
    let mut child = std::process::Command::new(crate::common::zeo_bin())
        .args(["serve", "-a", &format!("[::1]:{port}"), "-f"])
        .arg(dir.path().join("v6.fs"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("::1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no IPv6 listener");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let code = "import sys, ZEO, transaction\ndb = ZEO.DB(('::1', int(sys.argv[1])))\nc = db.open(); c.root()['k'] = 6; transaction.commit(); print(c.root()['k']); db.close()";
    let out = run_python(code, &[&port.to_string()]);
    assert_eq!(out.trim(), "6");
    crate::server_support::signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// TLS with a client certificate: the Python client commits and reads; a client
/// without a certificate never gets a connection.
#[test]
fn tls_with_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fx = |n: &str| {
        crate::common::fixture(&format!("tls/{n}"))
            .display()
            .to_string()
    };
    let ssl = format!(
        "  <ssl>\n    certificate {}\n    key {}\n    authenticate {}\n  </ssl>",
        fx("srv.pem"),
        fx("srv_key.pem"),
        fx("ca.pem")
    );
    let server = ZeoServer::start(dir.path(), &ssl, FS);
    let out = run_python(
        r#"
import sys, ssl, ZEO, transaction
from ZEO.ClientStorage import ClientStorage
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
db = ZEO.DB(('127.0.0.1', port), ssl=ctx, ssl_server_hostname='localhost')
c = db.open(); c.root()['t'] = 'tls'
# A message of several MB arrives as many TLS records in one socket read (this
# once overflowed rustls' plaintext buffer and reset the connection).
c.root()['big'] = b'x' * 3_000_000
transaction.commit(); db.close()
db = ZEO.DB(('127.0.0.1', port), ssl=ctx, ssl_server_hostname='localhost')
r = db.open().root()
print(r['t'], len(r['big']))
db.close()
bare = ssl.create_default_context(cafile=ca)
try:
    ClientStorage(('127.0.0.1', port), ssl=bare, ssl_server_hostname='localhost', wait_timeout=3)
    print('connected without a certificate?!')
except Exception as e:
    print('refused')
"#,
        &[
            &server.port.to_string(),
            &fx("ca.pem"),
            &fx("cli.pem"),
            &fx("cli_key.pem"),
        ],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["tls", "3000000", "refused"]
    );
}
