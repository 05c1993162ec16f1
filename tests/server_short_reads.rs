//! The event loop stops reading a plain socket after a read that does not fill its
//! buffer (Linux epoll reports every later arrival as a new edge). These tests check
//! that nothing is lost that way: requests arriving one by one, messages larger than
//! the read buffer, and above all the end of input — a client that writes its last
//! request and closes at once must get its answer and be seen closing, over TCP and
//! Unix sockets, also with many such clients at a time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;
use zeo::server::{CloseReason, ConnId, EventLoop, Limits, ListenAddress, Outbox, Service, Signal};

/// Echoes every message; "stop" stops the loop.
struct Echo {
    closed: mpsc::Sender<(ConnId, CloseReason)>,
}

impl Service for Echo {
    type Completion = ();
    fn on_connect(&mut self, _conn: ConnId, _peer: &str, _out: &mut Outbox<()>) {}
    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<()>) {
        if msg == b"stop" {
            out.stop(0);
        } else {
            out.send(conn, msg);
        }
    }
    fn on_close(&mut self, conn: ConnId, why: &CloseReason, _out: &mut Outbox<()>) {
        let _ = self.closed.send((conn, why.clone()));
    }
    fn on_timer(&mut self, _key: u64, _out: &mut Outbox<()>) {}
    fn on_completion(&mut self, _done: (), _out: &mut Outbox<()>) {}
    fn on_signal(&mut self, _sig: Signal, out: &mut Outbox<()>) {
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

fn start(addr: ListenAddress) -> Server {
    let (tx, rx) = mpsc::channel();
    let (atx, arx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut lp = EventLoop::new(Limits::default()).unwrap();
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
        panic!("not a TCP server")
    };
    let s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn stop(server: Server, mut client: impl Write) {
    client.write_all(&frame(b"stop")).unwrap();
    assert_eq!(server.handle.join().unwrap(), 0);
}

fn expect_closes(server: &Server, n: usize) {
    for i in 0..n {
        match server.closed.recv_timeout(Duration::from_secs(10)) {
            Ok((_, CloseReason::PeerClosed)) => {}
            Ok((_, why)) => panic!("close {i}: unexpected reason {why:?}"),
            Err(_) => panic!("only {i} of {n} closes seen: a connection's end of input was missed"),
        }
    }
}

#[test]
fn requests_arriving_one_by_one_are_all_answered() {
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()));
    let mut c = tcp(&server);
    c.set_nodelay(true).unwrap();
    for i in 0..300u32 {
        let msg = i.to_be_bytes();
        // Each request in two pieces, so some reads see only part of a frame.
        let f = frame(&msg);
        c.write_all(&f[..3]).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        c.write_all(&f[3..]).unwrap();
        assert_eq!(read_frame(&mut c).unwrap(), msg);
    }
    stop(server, c);
}

#[test]
fn messages_larger_than_the_read_buffer_arrive_whole() {
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()));
    let mut c = tcp(&server);
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let mut bytes = frame(&big);
    bytes.extend(frame(b"after"));
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    assert_eq!(read_frame(&mut c).unwrap(), big);
    assert_eq!(read_frame(&mut c).unwrap(), b"after");
    writer.join().unwrap();
    stop(server, c);
}

#[test]
fn last_request_then_close_is_answered_and_seen_closed_tcp() {
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()));
    for round in 0..40u8 {
        let mut c = tcp(&server);
        // Request and end of input in one go: the data read is short, and only
        // reading on shows the end.
        c.write_all(&frame(&[round])).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_frame(&mut c).unwrap(), [round]);
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    expect_closes(&server, 40);
    let c = tcp(&server);
    stop(server, c);
}

#[test]
fn last_request_then_close_is_answered_and_seen_closed_unix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeo.sock");
    let server = start(ListenAddress::Unix(path.clone()));
    for round in 0..40u8 {
        let mut c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&frame(&[round])).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_frame(&mut c).unwrap(), [round]);
    }
    expect_closes(&server, 40);
    let c = UnixStream::connect(&path).unwrap();
    stop(server, c);
}

#[test]
fn many_clients_closing_at_once_are_all_seen() {
    let server = start(ListenAddress::Tcp("127.0.0.1:0".parse().unwrap()));
    let mut clients: Vec<TcpStream> = (0..64).map(|_| tcp(&server)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&frame(&[i as u8])).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_frame(c).unwrap(), [i as u8]);
    }
    // Some close with a last request in flight, some without.
    for (i, mut c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.write_all(&frame(b"last")).unwrap();
        }
        drop(c);
    }
    expect_closes(&server, 64);
    let c = tcp(&server);
    stop(server, c);
}
