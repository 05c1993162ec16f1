//! The event loop with a toy service: framing across reads, many frames per read,
//! reply order, worker completions, timers, deferred close, oversized frames, and a
//! client that stops reading (bounded memory: the server closes it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zeo::server::{CloseReason, ConnId, EventLoop, Limits, ListenAddress, Outbox, Service, Signal};

/// Echoes each message; "slow:X" answers X from a worker thread; "later:X" answers X
/// from a timer; "bye" answers then closes after flushing; "flood:N" sends N 1 MB
/// messages; "stop" stops the loop.
struct Echo {
    closed: mpsc::Sender<(ConnId, CloseReason)>,
}

impl Service for Echo {
    type Completion = (ConnId, Vec<u8>);
    fn on_connect(&mut self, _conn: ConnId, _peer: &str, _out: &mut Outbox<Self::Completion>) {}
    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<Self::Completion>) {
        if let Some(rest) = msg.strip_prefix(b"slow:") {
            let rest = rest.to_vec();
            out.spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                (conn, rest)
            });
        } else if let Some(rest) = msg.strip_prefix(b"later:") {
            let key = ((conn as u64) << 32) | rest[0] as u64;
            out.timer(Instant::now() + Duration::from_millis(30), key);
        } else if msg == b"bye" {
            out.send(conn, b"bye".to_vec());
            out.close_after_flush(conn);
        } else if let Some(n) = msg.strip_prefix(b"flood:") {
            let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
            for _ in 0..n {
                out.send(conn, vec![7u8; 1 << 20]);
            }
        } else if msg == b"stop" {
            out.stop(3);
        } else {
            out.send(conn, msg);
        }
    }
    fn on_close(&mut self, conn: ConnId, why: &CloseReason, _out: &mut Outbox<Self::Completion>) {
        let _ = self.closed.send((conn, why.clone()));
    }
    fn on_timer(&mut self, key: u64, out: &mut Outbox<Self::Completion>) {
        out.send((key >> 32) as usize, vec![key as u8]);
    }
    fn on_completion(
        &mut self,
        (conn, data): Self::Completion,
        out: &mut Outbox<Self::Completion>,
    ) {
        out.send(conn, data);
    }
    fn on_signal(&mut self, _sig: Signal, out: &mut Outbox<Self::Completion>) {
        out.stop(0);
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn read_frame(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

struct Server {
    addr: ListenAddress,
    closed: mpsc::Receiver<(ConnId, CloseReason)>,
    handle: std::thread::JoinHandle<i32>,
}

fn start(addr: ListenAddress, limits: Limits) -> Server {
    let (tx, rx) = mpsc::channel();
    let (atx, arx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut lp = EventLoop::new(limits).unwrap();
        let bound = lp.listen(&addr, None).unwrap();
        atx.send(bound).unwrap();
        lp.run(&mut Echo { closed: tx }).unwrap()
    });
    Server {
        addr: arx.recv().unwrap(),
        closed: rx,
        handle,
    }
}

fn tcp(server: &Server) -> TcpStream {
    let ListenAddress::Tcp(a) = &server.addr else {
        panic!()
    };
    let s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn stop(server: Server, mut client: impl Write) -> i32 {
    client.write_all(&frame(b"stop")).unwrap();
    server.handle.join().unwrap()
}

#[test]
fn frames_split_and_batched_keep_order() {
    let server = start(
        ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()),
        Limits::default(),
    );
    let mut c = tcp(&server);
    // Three messages in one write, the last split across two writes.
    let mut bytes = frame(b"one");
    bytes.extend(frame(b"two"));
    let third = frame(b"three");
    bytes.extend_from_slice(&third[..5]);
    c.write_all(&bytes).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(&third[5..]).unwrap();
    for want in [&b"one"[..], b"two", b"three"] {
        assert_eq!(read_frame(&mut c).unwrap(), want);
    }
    let c2 = tcp(&server);
    // A zero-length message is not a message: that connection is closed.
    c.write_all(&frame(b"")).unwrap();
    let (_, why) = server.closed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(why, CloseReason::Framing(_)), "{why:?}");
    assert_eq!(stop(server, c2), 3);
}

#[test]
fn worker_and_timer_replies_do_not_block_other_requests() {
    let server = start(
        ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()),
        Limits::default(),
    );
    let mut c = tcp(&server);
    c.write_all(&frame(b"slow:S")).unwrap();
    c.write_all(&frame(b"later:T")).unwrap();
    c.write_all(&frame(b"fast")).unwrap();
    assert_eq!(read_frame(&mut c).unwrap(), b"fast");
    assert_eq!(read_frame(&mut c).unwrap(), b"T");
    assert_eq!(read_frame(&mut c).unwrap(), b"S");
    assert_eq!(stop(server, c), 3);
}

#[test]
fn close_after_flush_delivers_the_reply_then_eof() {
    let server = start(
        ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()),
        Limits::default(),
    );
    let mut c = tcp(&server);
    c.write_all(&frame(b"bye")).unwrap();
    assert_eq!(read_frame(&mut c).unwrap(), b"bye");
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    let (_, why) = server.closed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(why, CloseReason::Server(_)));
    let c2 = tcp(&server);
    assert_eq!(stop(server, c2), 3);
}

#[test]
fn oversized_length_prefix_closes_only_that_connection() {
    let limits = Limits {
        max_message: 1000,
        ..Limits::default()
    };
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()), limits);
    let mut bad = tcp(&server);
    let mut good = tcp(&server);
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    let (_, why) = server.closed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(why, CloseReason::TooLarge(0xffff_ffff));
    good.write_all(&frame(b"still here")).unwrap();
    assert_eq!(read_frame(&mut good).unwrap(), b"still here");
    assert_eq!(stop(server, good), 3);
}

#[test]
fn a_client_that_stops_reading_is_closed_with_bounded_output() {
    let limits = Limits {
        max_message: 1 << 20,
        pause_input_at: 1 << 20,
        max_output: 8 << 20,
    };
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()), limits);
    let mut lazy = tcp(&server);
    lazy.write_all(&frame(b"flood:64")).unwrap();
    let (_, why) = server.closed.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(why, CloseReason::OutputOverflow(n) if n > 8 << 20),
        "{why:?}"
    );
    let mut good = tcp(&server);
    good.write_all(&frame(b"ok")).unwrap();
    assert_eq!(read_frame(&mut good).unwrap(), b"ok");
    assert_eq!(stop(server, good), 3);
}

#[test]
fn unix_socket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeo.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let server = start(ListenAddress::Unix(path.clone()), Limits::default());
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(&frame(b"hello")).unwrap();
    assert_eq!(read_frame(&mut c).unwrap(), b"hello");
    assert_eq!(stop(server, c), 3);
}
