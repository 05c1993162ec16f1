//! `zeo serve` with `monitor-address` and `metrics-address`, read by the real `curl`
//! binary: the monitor report (ZEO 4 layout) and the Prometheus exposition parse,
//! and their counters and histograms move when a client loads and commits; HTTP
//! status codes; hostile endpoint clients (garbage, oversized and never-finished
//! requests, connection floods) do not stop the server from serving ZEO clients;
//! systemd gets STATUS= progress before READY=1 while an index is rebuilt.

mod server_support;

use server_support::{free_port, ZeoServer};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zeo::client::{Client, Options, ServerAddress};
use zeo::storage::{Oid, Tid};

const FS: &str = "<filestorage 1>\n  path Data.fs\n</filestorage>";

/// Run curl with `args`; returns (exit status, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl must be installed (make test installs it; see scripts/setup-curl.sh)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("curl output is UTF-8"),
    )
}

/// The monitor report through curl (HTTP/0.9: the server answers without headers).
fn monitor(args: &[&str]) -> String {
    let mut all = vec!["--http0.9"];
    all.extend_from_slice(args);
    let (status, text) = curl(&all);
    assert_eq!(status, 0, "curl failed on the monitor endpoint");
    text
}

/// `Field: value` lines of the report's block of storage `name`.
fn monitor_block(report: &str, name: &str) -> HashMap<String, String> {
    let start = format!("Storage: {name}\n");
    let at = report.find(&start).unwrap_or_else(|| panic!("{report}"));
    report[at + start.len()..]
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("{l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(block: &HashMap<String, String>, k: &str) -> u64 {
    block[k].parse().unwrap()
}

/// GET the exposition with curl: (HTTP status, content type, series -> value).
fn scrape(port: u16) -> (u16, String, HashMap<String, f64>) {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (status, text) = curl(&["-w", "\n%{http_code} %{content_type}", &url]);
    assert_eq!(status, 0);
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, ctype) = tail.split_once(' ').unwrap();
    let mut series = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (k, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let v = if v == "+Inf" {
            f64::INFINITY
        } else {
            v.parse().unwrap_or_else(|_| panic!("{line:?}"))
        };
        assert!(series.insert(k.to_string(), v).is_none(), "duplicate {k}");
    }
    (code.parse().unwrap(), ctype.to_string(), series)
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no series {series}"))
}

struct Endpoints {
    server: ZeoServer,
    monitor: u16,
    metrics: u16,
}

fn start(dir: &Path, env: &[(&str, &str)]) -> Endpoints {
    let (monitor, metrics) = (free_port(), free_port());
    let extra =
        format!("  monitor-address 127.0.0.1:{monitor}\n  metrics-address 127.0.0.1:{metrics}");
    let server = ZeoServer::start_env(dir, &extra, FS, env);
    Endpoints {
        server,
        monitor,
        metrics,
    }
}

fn client(server: &ZeoServer) -> Client {
    let mut c = Client::connect(&ServerAddress::Tcp(server.addr()), &Options::default()).unwrap();
    c.register("1", false).unwrap();
    c
}

#[test]
fn counters_move_with_loads_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(dir.path(), &[]);
    let murl = format!("http://127.0.0.1:{}/", e.monitor);

    let before = monitor(&[&murl]);
    assert!(
        before.starts_with("ZEO monitor server version "),
        "{before}"
    );
    let b = monitor_block(&before, "1");
    assert_eq!(field(&b, "Clients"), 0);
    assert_eq!(field(&b, "Clients verifying"), 0);
    assert!(!b.contains_key("Commit lock held for"));
    let (code, ctype, m0) = scrape(e.metrics);
    assert_eq!(code, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4");
    assert_eq!(get(&m0, "zeo_commits_total{storage=\"1\"}"), 0.0);
    assert_eq!(
        get(&m0, "zeo_last_transaction_timestamp_seconds{storage=\"1\"}"),
        0.0
    );

    let mut c = client(&e.server);
    let tid = c
        .commit(b"monitor test", &[(Oid(1), Tid::ZERO, b"data one")])
        .unwrap();
    for _ in 0..5 {
        let r = c.load_before(Oid(1), Tid::MAX).unwrap().unwrap();
        assert_eq!(r.start, tid);
    }

    let after = monitor(&[&murl]);
    let a = monitor_block(&after, "1");
    assert_eq!(field(&a, "Clients"), 1);
    assert_eq!(field(&a, "Commits"), field(&b, "Commits") + 1);
    assert_eq!(field(&a, "Stores"), field(&b, "Stores") + 1);
    assert_eq!(field(&a, "Loads"), field(&b, "Loads") + 5);
    assert_eq!(field(&a, "Active transactions"), 0);
    assert_eq!(a["Server started"], b["Server started"]);

    let (_, _, m1) = scrape(e.metrics);
    let s = |name: &str| format!("{name}{{storage=\"1\"}}");
    assert_eq!(get(&m1, &s("zeo_connections")), 1.0);
    assert_eq!(get(&m1, &s("zeo_commits_total")), 1.0);
    assert_eq!(get(&m1, &s("zeo_stores_total")), 1.0);
    assert_eq!(get(&m1, &s("zeo_loads_total")), 5.0);
    assert_eq!(get(&m1, &s("zeo_load_before_duration_seconds_count")), 5.0);
    assert_eq!(get(&m1, &s("zeo_tpc_vote_duration_seconds_count")), 1.0);
    assert_eq!(get(&m1, &s("zeo_tpc_finish_duration_seconds_count")), 1.0);
    assert_eq!(
        get(
            &m1,
            "zeo_tpc_finish_duration_seconds_bucket{storage=\"1\",le=\"+Inf\"}"
        ),
        1.0
    );
    assert!(get(&m1, &s("zeo_tpc_finish_duration_seconds_sum")) > 0.0);
    let last = get(&m1, &s("zeo_last_transaction_timestamp_seconds"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last).abs() < 120.0,
        "last transaction {last}, now {now}"
    );
    assert_eq!(get(&m1, &s("zeo_objects")), 1.0);
    drop(c);
    let mut srv = e.server;
    assert_eq!(srv.stop(), Some(0));
}

#[test]
fn http_status_codes_and_a_unix_monitor_socket() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let sock = dir.path().join("monitor.sock");
    let extra = format!(
        "  monitor-address {}\n  metrics-address 127.0.0.1:{metrics}",
        sock.display()
    );
    let mut server = ZeoServer::start(dir.path(), &extra, FS);
    let report = monitor(&["--unix-socket", sock.to_str().unwrap(), "http://localhost/"]);
    assert_eq!(field(&monitor_block(&report, "1"), "Commits"), 0);

    let code = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        curl(&all).1
    };
    let base = format!("http://127.0.0.1:{metrics}");
    assert_eq!(code(&[&format!("{base}/")]), "404");
    assert_eq!(code(&[&format!("{base}/metrics/x")]), "404");
    assert_eq!(code(&["-X", "POST", &format!("{base}/metrics")]), "405");
    assert_eq!(code(&["-I", &format!("{base}/metrics")]), "200");
    assert_eq!(code(&["--http1.0", &format!("{base}/metrics?x=1")]), "200");
    assert_eq!(server.stop(), Some(0));
    assert!(!sock.exists(), "the monitor socket file is removed at exit");
}

/// Send `bytes` and read the answer until the server closes.
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer and close before everything is written.
    for chunk in bytes.chunks(4096) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `s` (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn hostile_endpoint_clients_do_not_stop_zeo_service() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(dir.path(), &[("ZEO_ENDPOINT_TIMEOUT", "2")]);
    let mut c = client(&e.server);

    // Garbage and oversized requests get their error at once.
    let r = raw_exchange(e.metrics, b"\x00\x01\x02garbage\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r:?}");
    let r = raw_exchange(e.metrics, &vec![b'A'; 100_000]);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r:?}");
    let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
    big.extend(std::iter::repeat_n(&b"X-Pad: 0123456789\r\n"[..], 1000).flatten());
    let r = raw_exchange(e.metrics, &big);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r:?}");

    // A request trickled byte by byte is still answered.
    let mut slow = TcpStream::connect(("127.0.0.1", e.metrics)).unwrap();
    slow.set_nodelay(true).unwrap();
    for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.contains("\r\n\r\n# HELP zeo_connections "),
        "{answer:?}"
    );

    // Never-finished requests and silent connections, more than the cap allows.
    let mut stuck = Vec::new();
    for i in 0..80 {
        let mut s = TcpStream::connect(("127.0.0.1", e.metrics)).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        stuck.push(s);
    }
    let mut silent_monitor = TcpStream::connect(("127.0.0.1", e.monitor)).unwrap();
    // Meanwhile the ZEO service answers as usual.
    let t0 = Instant::now();
    let tid = c
        .commit(b"while hostile", &[(Oid(1), Tid::ZERO, b"x")])
        .unwrap();
    assert_eq!(c.load_before(Oid(1), Tid::MAX).unwrap().unwrap().start, tid);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the loop was blocked"
    );
    // The monitor answers a client that never sends anything.
    assert!(closed_within(&mut silent_monitor, Duration::from_secs(10)));

    // The stuck connections are closed by the server at the endpoint timeout.
    for s in stuck.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(10)), "not closed");
    }
    let (code, _, m) = scrape(e.metrics);
    assert_eq!(code, 200);
    assert_eq!(get(&m, "zeo_commits_total{storage=\"1\"}"), 1.0);
    let report = monitor(&[&format!("http://127.0.0.1:{}/", e.monitor)]);
    assert_eq!(field(&monitor_block(&report, "1"), "Commits"), 1);
    c.commit(b"after", &[(Oid(1), tid, b"y")]).unwrap();
    drop(c);
    let mut srv = e.server;
    assert!(srv.alive());
    assert_eq!(srv.stop(), Some(0));
}

#[test]
fn systemd_status_progress_arrives_before_ready_during_an_index_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/filestorage/undo.fs"
    );
    std::fs::copy(fixture, dir.path().join("Data.fs")).unwrap();
    assert!(!dir.path().join("Data.fs.index").exists());
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut server = ZeoServer::start_env(
        dir.path(),
        "",
        FS,
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap();
        let d = String::from_utf8_lossy(&buf[..n]).into_owned();
        let ready = d.lines().any(|l| l == "READY=1");
        seen.push(d);
        if ready {
            break;
        }
    }
    let progress = &seen[..seen.len() - 1];
    assert!(!progress.is_empty(), "no STATUS= before READY=1: {seen:?}");
    for d in progress {
        assert!(d.starts_with("STATUS=Opening storage \"1\": "), "{d:?}");
        assert!(d.contains("\nEXTEND_TIMEOUT_USEC=60000000"), "{d:?}");
    }
    let scan = "STATUS=Opening storage \"1\": rebuilding the index of Data.fs: ";
    assert!(
        progress[0].starts_with(&format!("{scan}0 of ")),
        "{progress:?}"
    );
    let n = progress.len();
    assert!(n >= 3, "{progress:?}");
    assert!(progress[n - 2].starts_with(scan), "{progress:?}");
    assert!(progress[n - 2].contains("(100%)"), "{progress:?}");
    assert!(
        progress[n - 1]
            .starts_with("STATUS=Opening storage \"1\": writing the rebuilt index of Data.fs\n"),
        "{progress:?}"
    );
    let ready = seen.last().unwrap();
    assert!(
        ready.contains("\nSTATUS=Serving 1 storage(s) on 127.0.0.1:"),
        "{ready:?}"
    );
    assert_eq!(server.stop(), Some(0));
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}
