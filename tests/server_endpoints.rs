//! Endpoint listeners of the event loop with a toy service: monitor and metrics
//! connections are answered by the loop with the service's report and never reach
//! the service as connections; an answer survives unread request bytes (the loop
//! half-closes and lingers instead of resetting); the number of endpoint connections
//! is capped and each is closed at its deadline, while framed connections carry on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zeo::server::event_loop::MAX_ENDPOINT_CONNS;
use zeo::server::{
    CloseReason, ConnId, Endpoint, EventLoop, Limits, ListenAddress, Outbox, Service, Signal,
};

/// Echoes framed messages ("stop" stops the loop); reports which endpoint asked and
/// counts its connections.
struct Toy {
    events: mpsc::Sender<String>,
    reports: usize,
}

impl Service for Toy {
    type Completion = ();
    fn on_connect(&mut self, conn: ConnId, _peer: &str, _out: &mut Outbox<()>) {
        let _ = self.events.send(format!("connect {conn}"));
    }
    fn on_message(&mut self, conn: ConnId, msg: Vec<u8>, out: &mut Outbox<()>) {
        if msg == b"stop" {
            out.stop(0);
        } else {
            out.send(conn, msg);
        }
    }
    fn on_close(&mut self, conn: ConnId, _why: &CloseReason, _out: &mut Outbox<()>) {
        let _ = self.events.send(format!("close {conn}"));
    }
    fn on_timer(&mut self, _key: u64, _out: &mut Outbox<()>) {}
    fn on_completion(&mut self, _done: (), _out: &mut Outbox<()>) {}
    fn on_signal(&mut self, _sig: Signal, out: &mut Outbox<()>) {
        out.stop(0);
    }
    fn report(&mut self, what: Endpoint) -> String {
        self.reports += 1;
        format!("{what:?} report #{}\n", self.reports)
    }
}

struct Server {
    zeo: SocketAddr,
    monitor: SocketAddr,
    metrics: SocketAddr,
    events: mpsc::Receiver<String>,
    handle: std::thread::JoinHandle<i32>,
}

fn tcp_any() -> ListenAddress {
    ListenAddress::Tcp("127.0.0.1:0".parse().unwrap())
}

fn start(timeout: Duration) -> Server {
    let (tx, rx) = mpsc::channel();
    let (atx, arx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut lp = EventLoop::new(Limits::default()).unwrap();
        lp.set_endpoint_timeout(timeout);
        let zeo = lp.listen(&tcp_any(), None).unwrap();
        let monitor = lp.listen_endpoint(&tcp_any(), Endpoint::Monitor).unwrap();
        let metrics = lp.listen_endpoint(&tcp_any(), Endpoint::Metrics).unwrap();
        atx.send([zeo, monitor, metrics]).unwrap();
        lp.run(&mut Toy {
            events: tx,
            reports: 0,
        })
        .unwrap()
    });
    let addrs = arx.recv().unwrap().map(|a| match a {
        ListenAddress::Tcp(a) => a,
        ListenAddress::Unix(_) => unreachable!(),
    });
    Server {
        zeo: addrs[0],
        monitor: addrs[1],
        metrics: addrs[2],
        events: rx,
        handle,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn echo(s: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    s.write_all(&frame(payload)).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn stop(server: Server) -> (i32, Vec<String>) {
    let mut c = connect(server.zeo);
    c.write_all(&frame(b"stop")).unwrap();
    let status = server.handle.join().unwrap();
    (status, server.events.try_iter().collect())
}

#[test]
fn endpoints_are_answered_by_the_loop_and_hidden_from_the_service() {
    let server = start(Duration::from_secs(10));
    let mut m = connect(server.monitor);
    assert_eq!(read_all(&mut m), "Monitor report #1\n");
    let mut h = connect(server.metrics);
    h.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let answer = read_all(&mut h);
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nMetrics report #2\n"), "{answer}");
    // Only metrics requests render the report.
    let mut h = connect(server.metrics);
    h.write_all(b"GET /nothing HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_all(&mut h).starts_with("HTTP/1.1 404 "));
    let mut h = connect(server.metrics);
    h.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_all(&mut h).ends_with("Metrics report #3\n"));
    let (status, events) = stop(server);
    assert_eq!(status, 0);
    // The only connection the service saw is the one that stopped it.
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("connect "), "{events:?}");
}

#[test]
fn an_answer_survives_unread_request_bytes() {
    let server = start(Duration::from_secs(10));
    for _ in 0..20 {
        // A monitor client that sends a request the server never reads, and an
        // HTTP client that pipelines junk after its request.
        let mut m = connect(server.monitor);
        m.write_all(&[b'x'; 4000]).unwrap();
        assert!(read_all(&mut m).starts_with("Monitor report #"));
        let mut h = connect(server.metrics);
        let mut req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'j'; 20_000]);
        h.write_all(&req).unwrap();
        let answer = read_all(&mut h);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\r\n\r\nMetrics report #"), "{answer}");
    }
    assert_eq!(stop(server).0, 0);
}

#[test]
fn endpoint_connections_are_capped_and_expire() {
    let server = start(Duration::from_millis(700));
    let mut zeo = connect(server.zeo);
    let mut idle: Vec<TcpStream> = (0..MAX_ENDPOINT_CONNS)
        .map(|_| connect(server.metrics))
        .collect();
    // Let the loop accept them all, then one more is closed at once.
    assert_eq!(echo(&mut zeo, b"ping"), b"ping");
    let t0 = Instant::now();
    let mut extra = connect(server.metrics);
    assert_eq!(read_all(&mut extra), "");
    assert!(t0.elapsed() < Duration::from_millis(500));
    // The framed service is unaffected.
    assert_eq!(echo(&mut zeo, b"still served"), b"still served");
    // At the deadline every idle connection is closed, and new ones are served.
    for s in idle.iter_mut() {
        assert_eq!(read_all(s), "");
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    let mut h = connect(server.metrics);
    h.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_all(&mut h).starts_with("HTTP/1.1 200 OK\r\n"));
    drop(zeo);
    assert_eq!(stop(server).0, 0);
}
