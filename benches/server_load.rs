//! Server load generator (not a timed test; run by scripts/bench-server.sh, which runs
//! it against Python runzeo and `zeo serve` on the same Data.fs and records both in
//! docs/benchmarks.md, section "Server").
//!
//! It speaks the ZEO 5 protocol in the pickle encoding (greeting `Z5`, `register`,
//! `loadBefore`, `tpc_begin`/`storea`/`vote`/`tpc_finish`) and is a client like
//! ClientStorage as far as the server can tell: loadBefore requests are byte for byte
//! what ZEO 6.2's client sends (message id `(oid, tid)`, memo-less pickle).
//!
//! Subcommands (cargo appends `--bench`, which is ignored):
//! - `wait ADDR SECS`: retry connecting and registering storage `1` until it works;
//! - `loads ADDR SECS CONNS INFLIGHT MAXOID PID`: `loadBefore(oid, max)` of random
//!   oids in `0..=MAXOID` over CONNS connections with INFLIGHT requests pipelined on
//!   each, all driven by one mio thread (so the generator uses at most one core);
//! - `commits ADDR SECS COMMITTERS FIRSTOID PID`: COMMITTERS threads, each with its own
//!   connection (the crate's blocking client), committing one small store to its own
//!   oid `FIRSTOID + i` in a loop (tpc_begin, storea, vote, tpc_finish);
//! - `mixed ADDR SECS COMMITTERS FIRSTOID MAXOID PID`: the two at once, loads on one
//!   connection with one request in flight (the latency figure);
//! - `fsync DIR N`: append 100 bytes and fsync, N times, to a scratch file in DIR;
//! - `print-load OID`: the hex payload of the loadBefore request we send for OID
//!   (to compare with ZEO's own encoder).
//!
//! Each measurement prints one `RESULT` line of `key=value` fields. Server CPU comes
//! from `/proc/PID/stat` (utime + stime of all the server's threads, live or exited)
//! read at the start and end of the measured window, divided by the operations
//! completed in it; the generator's own CPU is reported the same way so a reader can
//! see whether the generator, not the server, was the limit. Each phase runs a
//! warm-up of a fifth of its time (at most 1 s) that is not counted.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use zeo::client::{Client, Options, ServerAddress};
use zeo::protocol::frame::{encode_frame, FrameDecoder};
use zeo::protocol::pickle::{self, GlobalPolicy};
use zeo::protocol::value::Value;
use zeo::storage::tid::{Oid, Tid};

const MAX_TID: [u8; 8] = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// A small PersistentMapping record (`{'data': {'n': N}}`), what a committer stores.
fn small_record(n: u32) -> Vec<u8> {
    let mut v = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02}q\x03X\x01\x00\x00\x00nJ".to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(b"ss.");
    v
}

/// xorshift64: cheap, reproducible random oids.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// utime + stime of a process in seconds (all threads, including exited ones).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: f64 = f
        .get(11..13)
        .map(|x| x.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

struct Cpu {
    server_pid: String,
    server: f64,
    me: f64,
}
impl Cpu {
    fn now(server_pid: &str) -> Cpu {
        Cpu {
            server_pid: server_pid.to_string(),
            server: cpu_seconds(server_pid),
            me: cpu_seconds("self"),
        }
    }
    /// (server, generator) microseconds of CPU per operation since `self`.
    fn per_op(&self, ops: u64) -> (f64, f64) {
        let end = Cpu::now(&self.server_pid);
        let n = ops.max(1) as f64;
        (
            (end.server - self.server) * 1e6 / n,
            (end.me - self.me) * 1e6 / n,
        )
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn tcp_addr(addr: &str) -> String {
    match ServerAddress::parse(addr) {
        Ok(ServerAddress::Tcp(a)) => a,
        _ => panic!("need a HOST:PORT address, got {addr:?}"),
    }
}

fn request(id: i64, method: &str, args: Vec<Value>) -> Vec<u8> {
    let msg = Value::Tuple(vec![
        Value::Int(i128::from(id)),
        Value::Bool(false),
        Value::str(method),
        Value::Tuple(args),
    ]);
    encode_frame(&pickle::encode(&msg).expect("encodable request")).expect("small frame")
}

/// A loadBefore request framed exactly as ZEO 6.2's ClientStorage sends it: message id
/// `(oid, before)`, args the same tuple, pickled in its "fast" (memo-less) protocol 3.
fn load_request(oid: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(67);
    p.extend_from_slice(&63u32.to_be_bytes());
    p.extend_from_slice(b"\x80\x03(");
    let pair = |p: &mut Vec<u8>| {
        p.extend_from_slice(b"C\x08");
        p.extend_from_slice(&oid.to_be_bytes());
        p.extend_from_slice(b"C\x08");
        p.extend_from_slice(&MAX_TID);
        p.push(0x86);
    };
    pair(&mut p);
    p.extend_from_slice(b"\x89X\x0a\x00\x00\x00loadBefore");
    pair(&mut p);
    p.extend_from_slice(b"t.");
    debug_assert_eq!(p.len(), 67);
    p
}

/// A reply's (msgid, is_error), or None for a server call (invalidation, info).
fn parse_reply(frame: &[u8]) -> Option<(Value, bool)> {
    let v = pickle::decode(frame, GlobalPolicy::ServerMessages).expect("a decodable message");
    let mut s = match v {
        Value::Tuple(s) if s.len() == 4 => s,
        other => panic!("not a 4-tuple message: {other:?}"),
    };
    if s[2].as_str() != Some(".reply") {
        return None;
    }
    let err = s[1].truthy();
    Some((s.swap_remove(0), err))
}

/// The oid of a loadBefore message id `(oid, tid)`.
fn msgid_oid(msgid: &Value) -> u64 {
    msgid
        .as_seq()
        .and_then(|s| s.first())
        .and_then(Value::as_bytes)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .expect("a loadBefore reply echoes its (oid, tid) message id")
}

/// Blocking handshake and register on a std stream; returns it ready for requests.
fn open_registered(addr: &str) -> std::io::Result<(TcpStream, FrameDecoder)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut dec = FrameDecoder::new(u32::MAX);
    let next = |s: &mut TcpStream, dec: &mut FrameDecoder| -> std::io::Result<Vec<u8>> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = dec.next_frame().map_err(std::io::Error::other)? {
                return Ok(f);
            }
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed"));
            }
            dec.feed(&buf[..n]);
        }
    };
    let greeting = next(&mut s, &mut dec)?;
    assert_eq!(
        greeting, b"Z5",
        "the generator speaks the pickle encoding only"
    );
    s.write_all(&encode_frame(&greeting).expect("small"))?;
    s.write_all(&request(
        1,
        "register",
        vec![Value::str("1"), Value::Bool(false)],
    ))?;
    loop {
        let f = next(&mut s, &mut dec)?;
        match parse_reply(&f) {
            Some((Value::Int(1), false)) => return Ok((s, dec)),
            Some(_) => return Err(std::io::Error::other("register failed")),
            None => continue,
        }
    }
}

struct Conn {
    stream: MioStream,
    dec: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    /// Oids of the loads in flight, with their send times.
    pending: VecDeque<(u64, Instant)>,
}

impl Conn {
    fn flush(&mut self) {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("write to server: {e}"),
            }
        }
        self.out.clear();
        self.out_pos = 0;
    }
    /// Send a load of a random oid not already in flight here (ClientStorage never
    /// has two loads of one (oid, tid) outstanding: it is their message id).
    fn send_load(&mut self, rng: &mut Rng, max_oid: u64) {
        let oid = loop {
            let o = rng.next() % (max_oid + 1);
            if !self.pending.iter().any(|(p, _)| *p == o) {
                break o;
            }
        };
        self.out.extend_from_slice(&load_request(oid));
        self.pending.push_back((oid, Instant::now()));
    }
}

struct LoadStats {
    ops: u64,
    errors: u64,
    secs: f64,
    lat_ns: Vec<u64>,
    srv_us: f64,
    gen_us: f64,
}

/// Run loads for `secs` (after a warm-up) until `stop` (if given) or the time is up.
fn run_loads(
    addr: &str,
    secs: f64,
    conns: usize,
    inflight: usize,
    max_oid: u64,
    pid: &str,
) -> LoadStats {
    let mut poll = Poll::new().expect("epoll");
    let mut cs = Vec::with_capacity(conns);
    for i in 0..conns {
        let (s, dec) = open_registered(addr).expect("connect and register");
        s.set_nonblocking(true).expect("nonblocking");
        let mut stream = MioStream::from_std(s);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register with epoll");
        cs.push(Conn {
            stream,
            dec,
            out: Vec::new(),
            out_pos: 0,
            pending: VecDeque::new(),
        });
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let warm = (secs / 5.0).min(1.0);
    let start = Instant::now();
    let t0 = start + Duration::from_secs_f64(warm);
    let t_end = t0 + Duration::from_secs_f64(secs);
    let mut cpu: Option<Cpu> = None;
    let mut lat = Vec::with_capacity(1 << 20);
    let (mut ops, mut errors) = (0u64, 0u64);
    for c in cs.iter_mut() {
        for _ in 0..inflight {
            c.send_load(&mut rng, max_oid);
        }
        c.flush();
    }
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut stopping = false;
    let mut stats_end = None;
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        let now = Instant::now();
        if cpu.is_none() && now >= t0 {
            cpu = Some(Cpu::now(pid));
        }
        if !stopping && now >= t_end {
            stopping = true;
            let c = cpu.take().expect("sampled at t0");
            stats_end = Some(c.per_op(ops));
        }
        if stopping && cs.iter().all(|c| c.pending.is_empty()) {
            break;
        }
        if stopping && now > t_end + Duration::from_secs(10) {
            panic!("server did not answer the last requests within 10 s");
        }
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if ev.is_writable() {
                c.flush();
            }
            if !ev.is_readable() {
                continue;
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => panic!("server closed a load connection"),
                    Ok(n) => c.dec.feed(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("read from server: {e}"),
                }
            }
            let now = Instant::now();
            while let Some(frame) = c.dec.next_frame().expect("a valid frame") {
                let Some((msgid, err)) = parse_reply(&frame) else {
                    continue; // invalidations from the committers
                };
                let oid = msgid_oid(&msgid);
                let pos = c
                    .pending
                    .iter()
                    .position(|(o, _)| *o == oid)
                    .expect("a reply to a request we sent");
                let (_, sent) = c.pending.remove(pos).expect("present");
                if sent >= t0 && now <= t_end {
                    ops += 1;
                    errors += u64::from(err);
                    lat.push((now - sent).as_nanos() as u64);
                }
                if !stopping {
                    c.send_load(&mut rng, max_oid);
                }
            }
            c.flush();
        }
    }
    let (srv_us, gen_us) = stats_end.expect("measured");
    lat.sort_unstable();
    LoadStats {
        ops,
        errors,
        secs,
        lat_ns: lat,
        srv_us,
        gen_us,
    }
}

fn print_loads(label: &str, conns: usize, inflight: usize, s: &LoadStats) {
    println!(
        "RESULT {label} conns={conns} inflight={inflight} ops={} errors={} rate={:.0} p50_us={:.1} p99_us={:.1} srv_cpu_us={:.2} gen_cpu_us={:.2}",
        s.ops,
        s.errors,
        s.ops as f64 / s.secs,
        percentile(&s.lat_ns, 0.5),
        percentile(&s.lat_ns, 0.99),
        s.srv_us,
        s.gen_us
    );
}

struct CommitStats {
    commits: u64,
    lat_ns: Vec<u64>,
}

/// Committer threads: each commits to its own oid until `stop`; counted between the
/// `measure` flag going up and `stop`.
fn spawn_committers(
    addr: &str,
    n: usize,
    first_oid: u64,
    ready: Arc<Barrier>,
    measure: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<CommitStats>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let addr = ServerAddress::Tcp(tcp_addr(addr));
            let (ready, measure, stop, stats) =
                (ready.clone(), measure.clone(), stop.clone(), stats.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr, &Options::default()).expect("connect");
                c.register("1", false).expect("register");
                let oid = Oid(first_oid + i as u64);
                let mut serial = c
                    .load_before(oid, Tid::from_slice(&MAX_TID).expect("8 bytes"))
                    .expect("load")
                    .map(|l| l.start)
                    .unwrap_or(Tid::ZERO);
                let (mut done, mut lat) = (0u64, Vec::new());
                let mut k = 0u32;
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let counting = measure.load(Ordering::Relaxed);
                    k = k.wrapping_add(1);
                    let rec = small_record(k);
                    serial = c
                        .commit(b"bench commit", &[(oid, serial, &rec)])
                        .expect("commit");
                    c.server_calls.clear();
                    if counting && !stop.load(Ordering::Relaxed) {
                        done += 1;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                }
                let mut s = stats.lock().expect("not poisoned");
                s.commits += done;
                s.lat_ns.extend(lat);
            })
        })
        .collect()
}

fn commits(addr: &str, secs: f64, n: usize, first_oid: u64, pid: &str) {
    let ready = Arc::new(Barrier::new(n + 1));
    let (measure, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let stats = Arc::new(Mutex::new(CommitStats {
        commits: 0,
        lat_ns: Vec::new(),
    }));
    let hs = spawn_committers(
        addr,
        n,
        first_oid,
        ready.clone(),
        measure.clone(),
        stop.clone(),
        stats.clone(),
    );
    ready.wait();
    std::thread::sleep(Duration::from_secs_f64((secs / 5.0).min(1.0)));
    let cpu = Cpu::now(pid);
    measure.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let s0 = stats.lock().expect("ok").commits; // 0: committers report at exit
    for h in hs {
        h.join().expect("committer");
    }
    let mut s = stats.lock().expect("ok");
    let (srv_us, gen_us) = cpu.per_op(s.commits + s0);
    s.lat_ns.sort_unstable();
    println!(
        "RESULT commits committers={n} ops={} rate={:.0} p50_us={:.1} p99_us={:.1} srv_cpu_us={:.2} gen_cpu_us={:.2}",
        s.commits,
        s.commits as f64 / secs,
        percentile(&s.lat_ns, 0.5),
        percentile(&s.lat_ns, 0.99),
        srv_us,
        gen_us
    );
}

fn mixed(addr: &str, secs: f64, n: usize, first_oid: u64, max_oid: u64, pid: &str) {
    let ready = Arc::new(Barrier::new(n + 1));
    let (measure, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let stats = Arc::new(Mutex::new(CommitStats {
        commits: 0,
        lat_ns: Vec::new(),
    }));
    let hs = spawn_committers(
        addr,
        n,
        first_oid,
        ready.clone(),
        measure.clone(),
        stop.clone(),
        stats.clone(),
    );
    ready.wait();
    measure.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let l = run_loads(addr, secs, 1, 1, max_oid, pid);
    stop.store(true, Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    for h in hs {
        h.join().expect("committer");
    }
    print_loads("mixed-loads", 1, 1, &l);
    let s = stats.lock().expect("ok");
    println!(
        "RESULT mixed-commits committers={n} ops={} rate={:.0}",
        s.commits,
        s.commits as f64 / elapsed
    );
}

fn fsync_limit(dir: &str, n: u32) {
    let path = std::path::Path::new(dir).join("fsync-probe.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("create probe file");
    let rec = [b'x'; 100];
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&rec).expect("write");
        f.sync_all().expect("fsync");
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    println!(
        "RESULT fsync n={n} rate={:.0} us_per_fsync={:.1}",
        f64::from(n) / secs,
        secs * 1e6 / f64::from(n)
    );
}

fn wait(addr: &str, secs: f64) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        match open_registered(addr) {
            Ok(_) => return,
            Err(e) if Instant::now() < until => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                eprintln!("server at {addr} not ready after {secs} s: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("{what}: not a number: {s:?}"))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match a.as_slice() {
        ["wait", addr, secs] => wait(&tcp_addr(addr), num(secs, "SECS")),
        ["loads", addr, secs, conns, inflight, max_oid, pid] => {
            let (c, k) = (num(conns, "CONNS"), num(inflight, "INFLIGHT"));
            let s = run_loads(
                &tcp_addr(addr),
                num(secs, "SECS"),
                c,
                k,
                num(max_oid, "MAXOID"),
                pid,
            );
            print_loads("loads", c, k, &s);
        }
        ["commits", addr, secs, n, first, pid] => commits(
            addr,
            num(secs, "SECS"),
            num(n, "COMMITTERS"),
            num(first, "FIRSTOID"),
            pid,
        ),
        ["mixed", addr, secs, n, first, max_oid, pid] => mixed(
            addr,
            num(secs, "SECS"),
            num(n, "COMMITTERS"),
            num(first, "FIRSTOID"),
            num(max_oid, "MAXOID"),
            pid,
        ),
        ["fsync", dir, n] => fsync_limit(dir, num(n, "N")),
        ["print-load", oid] => {
            let frame = load_request(num(oid, "OID"));
            let hex: String = frame[4..].iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
        }
        _ => {
            eprintln!(
                "usage: server_load wait ADDR SECS | loads ADDR SECS CONNS INFLIGHT MAXOID PID | \
                 commits ADDR SECS COMMITTERS FIRSTOID PID | \
                 mixed ADDR SECS COMMITTERS FIRSTOID MAXOID PID | fsync DIR N | print-load OID"
            );
            std::process::exit(2);
        }
    }
}
