//! Hostile input against the running `zeo serve`: each case gets an error reply or
//! a closed connection, and afterwards the server still serves a well-behaved
//! client whose committed data is intact.

mod server_support;

use server_support::ZeoServer;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use zeo::protocol::{pickle, FrameDecoder, GlobalPolicy, Value};

const FS: &str = "<filestorage 1>\n  path Data.fs\n</filestorage>";

fn b8(x: u64) -> Value {
    Value::bytes(x.to_be_bytes().to_vec())
}

fn frame(p: &[u8]) -> Vec<u8> {
    let mut f = (p.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(p);
    f
}

struct Conn {
    s: TcpStream,
    dec: FrameDecoder,
}

impl Conn {
    /// Connect and read the greeting; answer with `letter`5 unless `None`.
    fn open(port: u16, letter: Option<u8>) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Conn {
            s,
            dec: FrameDecoder::new(u32::MAX),
        };
        assert_eq!(c.next().unwrap(), b"Z5");
        if let Some(l) = letter {
            c.raw(&frame(&[l, b'5']));
        }
        c
    }
    fn raw(&mut self, b: &[u8]) {
        let _ = self.s.write_all(b);
    }
    fn next(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 65536];
        loop {
            if let Ok(Some(f)) = self.dec.next_frame() {
                return Some(f);
            }
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.dec.feed(&buf[..n]),
            }
        }
    }
    fn call(&mut self, id: i64, method: &str, args: Vec<Value>, oneway: bool) {
        let v = Value::Tuple(vec![
            Value::Int(id as i128),
            Value::Bool(oneway),
            Value::str(method),
            Value::Tuple(args),
        ]);
        self.raw(&frame(&pickle::encode(&v).unwrap()));
    }
    fn reply(&mut self) -> Vec<Value> {
        loop {
            let f = self.next().expect("closed while waiting for a reply");
            let Value::Tuple(t) = pickle::decode(&f, GlobalPolicy::ServerMessages).unwrap() else {
                panic!("not a tuple")
            };
            if t[2] == Value::str(".reply") {
                return t;
            }
        }
    }
    /// One-way `tpc_begin` of transaction `txn` with empty user, description and
    /// extension.
    fn begin(&mut self, txn: Value) {
        self.call(
            0,
            "tpc_begin",
            vec![
                txn,
                Value::bytes(vec![]),
                Value::bytes(vec![]),
                Value::Dict(vec![]),
                Value::None,
                Value::str(" "),
            ],
            true,
        );
    }
    fn register(&mut self) {
        self.call(1, "register", vec![Value::str("1"), Value::Int(0)], false);
        assert_eq!(self.reply()[1], Value::Int(0));
    }
    /// The server closes the connection (EOF or reset) within the timeout.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
                }
            }
        }
    }
}

/// Commit object 1 once (so there is data to check afterwards).
fn commit(port: u16, txn: i64, serial: u64, data: &[u8]) -> Value {
    let mut c = Conn::open(port, Some(b'Z'));
    c.register();
    c.begin(Value::Int(txn as i128));
    c.call(
        0,
        "storea",
        vec![
            b8(1),
            b8(serial),
            Value::bytes(data.to_vec()),
            Value::Int(txn as i128),
        ],
        true,
    );
    c.call(2, "vote", vec![Value::Int(txn as i128)], false);
    assert_eq!(c.reply()[1], Value::Int(0));
    c.call(3, "tpc_finish", vec![Value::Int(txn as i128)], false);
    let r = c.reply();
    assert_eq!(r[1], Value::Int(0));
    r[3].clone()
}

/// A fresh client still works and sees the committed data.
fn healthy(port: u16, data: &[u8]) {
    let mut c = Conn::open(port, Some(b'Z'));
    c.register();
    c.call(2, "loadBefore", vec![b8(1), b8(u64::MAX >> 1)], false);
    let r = c.reply();
    assert_eq!(r[1], Value::Int(0), "{r:?}");
    assert_eq!(r[3].as_seq().unwrap()[0], Value::bytes(data.to_vec()));
}

fn setup() -> (tempfile::TempDir, ZeoServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "", FS);
    commit(server.port, 1, 0, b"precious");
    (dir, server)
}

#[test]
fn garbage_bytes() {
    let (_d, server) = setup();
    // Garbage as the handshake.
    let mut c = Conn::open(server.port, None);
    c.raw(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n");
    assert!(c.closed());
    // Garbage after the handshake.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.raw(&frame(b"\xde\xad\xbe\xef not a pickle at all"));
    assert!(c.closed());
    // Random frames in msgpack mode.
    let mut c = Conn::open(server.port, Some(b'M'));
    c.raw(&frame(&[0xc1, 0xff, 0x00, 0x12]));
    assert!(c.closed());
    healthy(server.port, b"precious");
}

#[test]
fn four_gigabyte_length_prefix() {
    let (_d, server) = setup();
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(c.closed());
    let mut c = Conn::open(server.port, None);
    c.raw(&[0xff, 0xff, 0xff, 0xfe]);
    assert!(c.closed());
    healthy(server.port, b"precious");
}

/// `max-message-size` in `<zeo>`: a store just under it is accepted, a message just
/// over it closes that connection (the server keeps serving).
#[test]
fn configured_max_message_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start(dir.path(), "  max-message-size 4KB", FS);
    commit(server.port, 1, 0, &[b'x'; 3000]);
    healthy(server.port, &[b'x'; 3000]);
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    c.call(
        0,
        "storea",
        vec![b8(2), b8(0), Value::bytes(vec![b'y'; 5000]), Value::Int(7)],
        true,
    );
    assert!(c.closed());
    // Only the length prefix counts: the server does not wait for the body.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.raw(&4097u32.to_be_bytes());
    assert!(c.closed());
    healthy(server.port, &[b'x'; 3000]);
}

#[test]
fn zero_length_message() {
    let (_d, server) = setup();
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.raw(&[0, 0, 0, 0]);
    assert!(c.closed());
    let mut c = Conn::open(server.port, None);
    c.raw(&[0, 0, 0, 0]);
    assert!(c.closed());
    healthy(server.port, b"precious");
}

#[test]
fn pickles_naming_dangerous_globals() {
    let (_d, server) = setup();
    for g in [
        &b"os\nsystem\n"[..],
        b"builtins\neval\n",
        b"builtins\ngetattr\n",
        b"posix\nsystem\n",
    ] {
        let mut c = Conn::open(server.port, Some(b'Z'));
        c.register();
        let mut p = b"\x80\x03(K\x05\x89X\x04\x00\x00\x00pingc".to_vec();
        p.extend_from_slice(g);
        p.extend_from_slice(b"X\x05\x00\x00\x00touch\x85R\x85t.");
        c.raw(&frame(&p));
        assert!(c.closed(), "{}", String::from_utf8_lossy(g));
    }
    healthy(server.port, b"precious");
}

#[test]
fn truncated_pickles() {
    let (_d, server) = setup();
    let full = pickle::encode(&Value::Tuple(vec![
        Value::Int(1),
        Value::Bool(false),
        Value::str("register"),
        Value::Tuple(vec![Value::str("1"), Value::Int(0)]),
    ]))
    .unwrap();
    for cut in [1, 2, 5, 10, full.len() - 1] {
        let mut c = Conn::open(server.port, Some(b'Z'));
        c.raw(&frame(&full[..cut]));
        assert!(c.closed(), "cut at {cut}");
    }
    healthy(server.port, b"precious");
}

#[test]
fn msgpack_bombs() {
    let (_d, server) = setup();
    // An array claiming 2^32-1 elements, a map claiming as many, deep nesting.
    let mut deep = vec![0x91u8; 200_000];
    deep.push(0xc0);
    for payload in [
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        deep,
    ] {
        let mut c = Conn::open(server.port, Some(b'M'));
        c.raw(&frame(&payload));
        assert!(c.closed());
    }
    healthy(server.port, b"precious");
}

#[test]
fn wrong_arity() {
    let (_d, server) = setup();
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    // Two-way: TypeError reply, connection kept.
    c.call(2, "loadBefore", vec![b8(1)], false);
    let r = c.reply();
    assert_eq!(r[1], Value::Int(2));
    assert_eq!(r[3].as_seq().unwrap()[0], Value::str("builtins.TypeError"));
    c.call(3, "ping", vec![], false);
    assert_eq!(c.reply()[3], Value::None);
    // One-way: closed.
    c.call(0, "storea", vec![b8(1)], true);
    assert!(c.closed());
    // Unknown method: closed.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    c.call(2, "get_size_info", vec![], false);
    assert!(c.closed());
    healthy(server.port, b"precious");
}

#[test]
fn tpc_calls_out_of_order() {
    let (_d, server) = setup();
    // storea without tpc_begin: closed.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    c.call(
        0,
        "storea",
        vec![b8(1), b8(0), Value::bytes(b"x".to_vec()), Value::Int(7)],
        true,
    );
    assert!(c.closed());
    // tpc_finish before vote: AssertionError, then abort works; the lock is free.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    c.begin(Value::Int(7));
    c.call(2, "tpc_finish", vec![Value::Int(7)], false);
    let r = c.reply();
    assert_eq!(
        r[3].as_seq().unwrap()[0],
        Value::str("builtins.AssertionError")
    );
    // That unvoted transaction was aborted (it would otherwise hold the
    // connection forever: the client never aborts after a failed finish), so a new
    // one may begin; a second tpc_begin with another id then closes.
    for txn in [8, 9] {
        c.begin(Value::Int(txn));
        if txn == 8 {
            // Still connected: a two-way call is answered.
            c.call(3, "server_status", vec![], false);
            let _ = c.reply();
        }
    }
    assert!(c.closed());
    // A stale write (conflict) gets a conflict item, the data stays.
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    c.begin(Value::Int(9));
    c.call(
        0,
        "storea",
        vec![b8(1), b8(0), Value::bytes(b"evil".to_vec()), Value::Int(9)],
        true,
    );
    c.call(2, "vote", vec![Value::Int(9)], false);
    let r = c.reply();
    let items = r[3].as_seq().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("serials").is_some());
    c.call(3, "tpc_abort", vec![Value::Int(9)], false);
    assert_eq!(c.reply()[3], Value::None);
    healthy(server.port, b"precious");
}

#[test]
fn non_reading_client_while_invalidations_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ZeoServer::start_env(
        dir.path(),
        "",
        "<mappingstorage 1>\n</mappingstorage>",
        &[("ZEO_MAX_OUTPUT_BUFFER", "262144")],
    );
    let first = commit(server.port, 1, 0, b"v0");
    // A registered client that never reads again, with a tiny receive buffer set
    // before connecting (so the kernel cannot absorb the flood for us).
    let lazy = {
        use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        setsockopt(&fd, sockopt::RcvBuf, &2048).unwrap();
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: server.port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: connect(2) on a socket we own with a valid sockaddr_in of the size given.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "connect failed");
        TcpStream::from(fd)
    };
    lazy.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut lazy = Conn {
        s: lazy,
        dec: FrameDecoder::new(u32::MAX),
    };
    assert_eq!(lazy.next().unwrap(), b"Z5");
    lazy.raw(&frame(b"Z5"));
    lazy.register();
    // Many commits, each with a large invalidation (many oids).
    let mut c = Conn::open(server.port, Some(b'Z'));
    c.register();
    let mut serial = first;
    let started = std::time::Instant::now();
    for txn in 2..220i64 {
        c.begin(Value::Int(txn as i128));
        c.call(
            0,
            "storea",
            vec![
                b8(1),
                serial.clone(),
                Value::bytes(format!("v{txn}").into_bytes()),
                Value::Int(txn as i128),
            ],
            true,
        );
        for k in 0..2000u64 {
            c.call(
                0,
                "storea",
                vec![
                    b8(1000 + txn as u64 * 10000 + k),
                    b8(0),
                    Value::bytes(vec![b'x'; 10]),
                    Value::Int(txn as i128),
                ],
                true,
            );
        }
        c.call(2, "vote", vec![Value::Int(txn as i128)], false);
        assert_eq!(c.reply()[1], Value::Int(0));
        c.call(3, "tpc_finish", vec![Value::Int(txn as i128)], false);
        let r = c.reply();
        assert_eq!(r[1], Value::Int(0));
        serial = r[3].clone();
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    // The server dropped the lazy client once its output passed the limit.
    assert!(
        server.log_text().contains("not reading"),
        "{}",
        server.log_text()
    );
    healthy(server.port, b"v219");
    drop(lazy);
}

/// A committer that disconnects right after sending tpc_finish (while its group
/// fsync runs off the event loop): the transaction is committed anyway, the other
/// clients are told, and the commit lock passes on.
#[test]
fn disconnect_right_after_tpc_finish() {
    let (_d, server) = setup();
    let serial = match loadbefore_tid(server.port) {
        Some(t) => t,
        None => panic!("no committed revision"),
    };
    let mut watcher = Conn::open(server.port, Some(b'Z'));
    watcher.register();
    let mut seen = 0;
    for round in 0..20u64 {
        let mut c = Conn::open(server.port, Some(b'Z'));
        c.register();
        let txn = Value::Int(100 + round as i128);
        c.begin(txn.clone());
        let current = if round == 0 {
            serial
        } else {
            loadbefore_tid(server.port).unwrap()
        };
        c.call(
            0,
            "storea",
            vec![
                b8(1),
                b8(current),
                Value::bytes(format!("round {round}").into_bytes()),
                txn.clone(),
            ],
            true,
        );
        c.call(2, "vote", vec![txn.clone()], false);
        assert_eq!(c.reply()[1], Value::Int(0));
        // A second committer, ready to vote on another object.
        let mut b = Conn::open(server.port, Some(b'Z'));
        b.register();
        let btxn = Value::Int(500 + round as i128);
        b.begin(btxn.clone());
        b.call(
            0,
            "storea",
            vec![
                b8(1000 + round),
                b8(0),
                Value::bytes(b"b".to_vec()),
                btxn.clone(),
            ],
            true,
        );
        c.call(3, "tpc_finish", vec![txn], false);
        drop(c);
        // B votes while A's fsync may still run (A's seal already passed the lock
        // on) and commits after A: its finish is acknowledged after A's.
        b.call(4, "vote", vec![btxn.clone()], false);
        assert_eq!(b.reply()[1], Value::Int(0));
        b.call(5, "tpc_finish", vec![btxn], false);
        assert_eq!(b.reply()[1], Value::Int(0));
        drop(b);
        // The watcher hears of every one of these commits.
        loop {
            let f = watcher.next().expect("watcher lost its connection");
            let Value::Tuple(t) = pickle::decode(&f, GlobalPolicy::ServerMessages).unwrap() else {
                panic!("not a tuple")
            };
            if t[2] == Value::str("invalidateTransaction") {
                seen += 1;
                if seen % 2 == 0 {
                    break;
                }
            }
        }
    }
    // Committed, durable and the lock is free: a normal commit goes through.
    healthy(server.port, b"round 19");
    let t = loadbefore_tid(server.port).unwrap();
    commit(server.port, 999, t, b"after");
    healthy(server.port, b"after");
}

/// The tid of oid 1's current revision.
fn loadbefore_tid(port: u16) -> Option<u64> {
    let mut c = Conn::open(port, Some(b'Z'));
    c.register();
    c.call(2, "loadBefore", vec![b8(1), b8(u64::MAX >> 1)], false);
    let r = c.reply();
    match r[3].as_seq()? {
        [_, Value::Bytes(start), _] => Some(u64::from_be_bytes(start.as_slice().try_into().ok()?)),
        _ => None,
    }
}
