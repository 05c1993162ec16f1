//! Our blocking client against Python's runzeo (ZEO 6.2 from the virtualenv), in both
//! encodings: handshake, register, loads, errors as (class, state), ruok, pack.

use crate::common::{free_port, RunZeo};
use std::process::Command;
use zeo::client::{Client, ClientError, Options, ServerAddress};
use zeo::protocol::value::Value;
use zeo::storage::{Oid, Tid};

/// A runzeo serving one fresh FileStorage; stopped on drop.
pub struct PyServer {
    pub addr: ServerAddress,
    _runzeo: RunZeo,
}

/// Start runzeo serving a fresh FileStorage; `msgpack` selects the M5 greeting.
pub fn start_runzeo(msgpack: bool) -> PyServer {
    let runzeo = RunZeo::start(
        &format!("  msgpack {}", if msgpack { "true" } else { "false" }),
        "<filestorage 1>\n  path Data.fs\n</filestorage>",
    );
    PyServer {
        addr: ServerAddress::Tcp(runzeo.addr()),
        _runzeo: runzeo,
    }
}

fn session(msgpack: bool) {
    let server = start_runzeo(msgpack);
    let opts = Options::default();
    let mut c = Client::connect(&server.addr, &opts).unwrap();
    assert_eq!(
        c.encoding(),
        if msgpack {
            zeo::client::Encoding::Msgpack
        } else {
            zeo::client::Encoding::Pickle
        }
    );
    // runzeo creates the root object when the storage is first opened by a DB, not
    // by the server: an empty storage reports z64.
    let last = c.register("1", false).unwrap();
    assert_eq!(last, Tid::ZERO);
    assert_eq!(c.last_transaction().unwrap(), Tid::ZERO);
    match c.load_before(Oid(0), Tid::MAX) {
        Err(ClientError::Remote { class_name, state }) => {
            assert_eq!(class_name, "ZODB.POSException.POSKeyError");
            assert_eq!(state.as_seq().unwrap()[0], Value::bytes(Oid(0).to_bytes()));
        }
        other => panic!("expected POSKeyError, got {other:?}"),
    }
    let info = c.call("get_info", vec![]).unwrap();
    assert_eq!(info.get("supportsUndo"), Some(&Value::Bool(true)));
    // Commit one object and read it back.
    let txn = Value::Int(42);
    c.call_oneway(
        "tpc_begin",
        vec![
            txn.clone(),
            Value::bytes(b"".to_vec()),
            Value::bytes(b"test".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    )
    .unwrap();
    let data = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01.".to_vec();
    c.call_oneway(
        "storea",
        vec![
            Value::bytes(Oid(0).to_bytes()),
            Value::bytes(Tid::ZERO.to_bytes()),
            Value::bytes(data.clone()),
            txn.clone(),
        ],
    )
    .unwrap();
    assert_eq!(
        c.call("vote", vec![txn.clone()])
            .unwrap()
            .as_seq()
            .map(|s| s.len()),
        Some(0)
    );
    let tid = c.call("tpc_finish", vec![txn]).unwrap();
    let tid = Tid::from_slice(tid.as_bytes().unwrap()).unwrap();
    assert!(
        c.server_calls.iter().any(|s| s.name == "info"),
        "{:?}",
        c.server_calls
    );
    let lb = c.load_before(Oid(0), Tid::MAX).unwrap().unwrap();
    assert_eq!((lb.data, lb.start, lb.end), (data, tid, None));
    // ruok: JSON with the storage's status.
    let doc = Client::ruok(&server.addr, &opts).unwrap();
    assert!(doc.starts_with("{\"1\": {\"connections\": "), "{doc}");
    assert!(
        doc.contains(&format!("\"last-transaction\": \"{:016x}\"", tid.0)),
        "{doc}"
    );
    // A pack through the client completes.
    c.pack(Tid::MAX.time_time().min(4e9)).unwrap();
}

#[test]
fn client_talks_to_runzeo_in_pickle_mode() {
    session(false);
}

#[test]
fn client_talks_to_runzeo_in_msgpack_mode() {
    session(true);
}

#[test]
fn unreachable_server_is_an_io_error() {
    let addr = ServerAddress::Tcp(format!("127.0.0.1:{}", free_port()));
    match Client::connect(&addr, &Options::default()) {
        Err(ClientError::Io { .. }) => {}
        other => panic!("expected an I/O error, got {:?}", other.map(|_| ())),
    }
}

/// Commit `data` for oid 0 on top of `serial`; returns the new tid.
fn commit_root(c: &mut Client, serial: Tid, data: &[u8]) -> Tid {
    c.commit(b"", &[(Oid(0), serial, data)]).unwrap()
}

fn zeo_pack(argv0: Option<&str>, args: &[&str]) -> std::process::Output {
    let bin = crate::common::zeo_bin();
    let mut cmd = match argv0 {
        None => {
            let mut c = Command::new(&bin);
            c.arg("pack");
            c
        }
        Some(name) => {
            let dir = tempfile::tempdir().unwrap().keep();
            let link = dir.join(name);
            std::os::unix::fs::symlink(&bin, &link).unwrap();
            Command::new(link)
        }
    };
    cmd.args(args).output().unwrap()
}

#[test]
fn zeo_pack_packs_a_runzeo_storage_and_zeopack_is_quiet() {
    let server = start_runzeo(false);
    let mut c = Client::connect(&server.addr, &Options::default()).unwrap();
    c.register("1", false).unwrap();
    let pickle = |n: u8| {
        let mut p = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03K".to_vec();
        p.extend([n, b'.']);
        p
    };
    let t1 = commit_root(&mut c, Tid::ZERO, &pickle(1));
    let t2 = commit_root(&mut c, t1, &pickle(2));
    assert!(c.load_before(Oid(0), t2).unwrap().is_some());
    let addr = server.addr.to_string();
    let out = zeo_pack(None, &[&addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("packed storage 1 at "), "{stdout}");
    // The old revision is gone: nothing is current before t2 any more.
    assert!(c.load_before(Oid(0), t2).unwrap().is_none());
    // As zeopack: same job, nothing printed.
    let out = zeo_pack(Some("zeopack"), &[&format!("{addr}:1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // A storage the server does not have: the server's error, exit 1.
    let out = zeo_pack(None, &[&format!("{addr}:nosuch")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown storage"));
}

#[test]
fn zeo_pack_exits_1_for_an_unreachable_server() {
    let port = free_port().to_string();
    for argv0 in [None, Some("zeopack")] {
        let out = zeo_pack(
            argv0,
            &["--connect-timeout", "0.5", &format!("127.0.0.1:{port}")],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Couldn't connect"));
    }
    let out = zeo_pack(None, &["nonsense:spec:x:y"]);
    assert_eq!(out.status.code(), Some(2));
}
