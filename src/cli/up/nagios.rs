//! `zeo up --nagios` (also `zeo-nagios` by argv[0]): the Nagios/Icinga plugin of ZEO
//! (`ZEO/nagios.py`), reproduced line for line so existing checks can switch binaries.
//!
//! Behaviour as zeo-nagios: the address is `[v6addr]:port`, `host:port` (IPv4 only, one
//! resolved address, as Python's `socket.connect` does) or else a Unix socket path; a
//! failed connect prints `Can't connect [Errno N] text` and exits 2 (CRITICAL). Then the
//! `ruok` probe (protocol spec §13): `No storages` (exit 1) for an empty document,
//! `Empty storage 'NAME'` (exit 1, WARNING) for each storage whose last transaction is
//! zero, else `OK` (exit 0). `-m` appends performance data (`active_txns`,
//! `connections`, `waiting` per storage; storage `1` unprefixed, others `NAME:metric`),
//! and with `-s FILE` the per-`-u`-unit rates of the counters since the previous run,
//! using the file's mtime, in the same JSON file format (so both programs can share the
//! file). Differences: a server that accepts the connection but does not answer the
//! probe properly gets a one-line CRITICAL (exit 2) instead of a Python traceback, and
//! connects and reads time out after `--timeout` seconds instead of never.

use crate::protocol::frame::FrameDecoder;
use crate::pyjson::{self, float_repr, str_repr, Json};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// last-transaction of a storage that has never committed.
const NO_TRANSACTION: &str = "0000000000000000";
/// Gauges reported as they are.
const NODIFF_NAMES: [&str; 3] = ["active_txns", "connections", "waiting"];
/// Counters reported as rates with a status file.
const DIFF_NAMES: [&str; 6] = [
    "aborts",
    "commits",
    "conflicts",
    "conflicts_resolved",
    "loads",
    "stores",
];

/// Rate unit (`-u`), as seconds per unit.
pub fn unit_seconds(unit: &str) -> Option<f64> {
    match unit {
        "seconds" => Some(1.0),
        "minutes" => Some(60.0),
        "hours" => Some(3600.0),
        "days" => Some(86400.0),
        _ => None,
    }
}

/// What the plugin prints and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub text: String,
    pub status: i32,
}

/// Where zeo-nagios connects for an address string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    V6(String, u32),
    V4(String, u32),
    Unix(String),
}

/// zeo-nagios' address rules: `[addr]:port`, `host:port` (host without whitespace,
/// the last colon separating), anything else a Unix socket path.
pub fn parse_target(addr: &str) -> Target {
    fn split(addr: &str) -> Option<(&str, u32)> {
        let (host, port) = addr.rsplit_once(':')?;
        if host.is_empty()
            || host.chars().any(char::is_whitespace)
            || port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Python's int() takes any digit string; ports above 65535 fail at connect.
        Some((host, port.parse().unwrap_or(u32::MAX)))
    }
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((host, port)) = split(rest) {
            if let Some(host) = host.strip_suffix(']') {
                if !host.is_empty() {
                    return Target::V6(host.to_string(), port);
                }
            }
        }
    }
    match split(addr) {
        Some((host, port)) => Target::V4(host.to_string(), port),
        None => Target::Unix(addr.to_string()),
    }
}

/// Python's `str(OSError)`: `[Errno N] strerror`.
fn errno_text(code: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: strerror_r writes a NUL-terminated message into the buffer we own.
    let msg = unsafe {
        if libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) != 0 {
            return format!("[Errno {code}] Unknown error {code}");
        }
        std::ffi::CStr::from_ptr(buf.as_ptr())
    };
    format!("[Errno {code}] {}", msg.to_string_lossy())
}

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno_text(code),
        None if e.kind() == std::io::ErrorKind::TimedOut => errno_text(libc::ETIMEDOUT),
        None => e.to_string(),
    }
}

/// Resolve `host` for one address family as Python's socket module does: the first
/// getaddrinfo result; failures as `[Errno -N] gai text`.
fn resolve(host: &str, port: u32, family: libc::c_int) -> Result<SocketAddr, String> {
    let port = u16::try_from(port).map_err(|_| "connect(): port must be 0-65535.".to_string())?;
    let c_host = CString::new(host).map_err(|_| "embedded null character".to_string())?;
    // SAFETY: a zeroed addrinfo is a valid "no hints" value; getaddrinfo fills `res`,
    // which we read only while it is alive and free exactly once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_family = family;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res);
        if rc != 0 {
            if rc == libc::EAI_SYSTEM {
                return Err(io_text(&std::io::Error::last_os_error()));
            }
            let text = std::ffi::CStr::from_ptr(libc::gai_strerror(rc)).to_string_lossy();
            return Err(format!("[Errno {rc}] {text}"));
        }
        let mut out = None;
        let ai = &*res;
        if !ai.ai_addr.is_null() {
            if ai.ai_family == libc::AF_INET {
                let sin = &*(ai.ai_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out = Some(SocketAddr::from((ip, port)));
            } else if ai.ai_family == libc::AF_INET6 {
                let sin6 = &*(ai.ai_addr as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                out = Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    ip,
                    port,
                    0,
                    sin6.sin6_scope_id,
                )));
            }
        }
        libc::freeaddrinfo(res);
        out.ok_or_else(|| errno_text(libc::EAFNOSUPPORT))
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(target: &Target, timeout: Duration) -> Result<Box<dyn Conn>, String> {
    match target {
        Target::Unix(path) => {
            // Python refuses paths that do not fit in sockaddr_un.
            if path.len() >= 108 {
                return Err("AF_UNIX path too long".into());
            }
            let s = UnixStream::connect(path).map_err(|e| io_text(&e))?;
            s.set_read_timeout(Some(timeout)).map_err(|e| io_text(&e))?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| io_text(&e))?;
            Ok(Box::new(s))
        }
        Target::V4(host, port) | Target::V6(host, port) => {
            let family = if matches!(target, Target::V6(..)) {
                libc::AF_INET6
            } else {
                libc::AF_INET
            };
            let addr = resolve(host, *port, family)?;
            let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| io_text(&e))?;
            s.set_read_timeout(Some(timeout)).map_err(|e| io_text(&e))?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| io_text(&e))?;
            Ok(Box::new(s))
        }
    }
}

/// Send `ruok`, skip the greeting, return the status document.
fn probe(conn: &mut dyn Conn) -> Result<String, String> {
    conn.write_all(b"\x00\x00\x00\x04ruok")
        .map_err(|e| io_text(&e))?;
    // The document is small; a few MB bounds a hostile server.
    let mut dec = FrameDecoder::new(16 << 20);
    let mut frames = Vec::new();
    let mut buf = [0u8; 8192];
    while frames.len() < 2 {
        match dec.next_frame() {
            Ok(Some(f)) => {
                frames.push(f);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let n = conn.read(&mut buf).map_err(|e| io_text(&e))?;
        if n == 0 {
            return Err("the server closed the connection before answering ruok".into());
        }
        dec.feed(&buf[..n]);
    }
    String::from_utf8(frames.swap_remove(1))
        .map_err(|_| "the ruok reply is not ASCII text".to_string())
}

fn new_metric(metrics: &mut Vec<String>, storage_id: &str, name: &str, value: &str) {
    let label = if storage_id == "1" {
        name.to_string()
    } else if storage_id.contains(' ') {
        format!("'{storage_id}:{name}'")
    } else {
        format!("{storage_id}:{name}")
    };
    metrics.push(format!("{label}={value}"));
}

fn result(mut messages: Vec<String>, metrics: &[String], status: i32) -> Report {
    if let (Some(first), Some(m)) = (messages.first_mut(), metrics.first()) {
        first.push('|');
        first.push_str(m);
    }
    if metrics.len() > 1 {
        messages.push(format!("| {}", metrics[1..].join("\n ")));
    }
    Report {
        text: messages.join("\n"),
        status,
    }
}

fn critical(message: String) -> Report {
    result(vec![message], &[], 2)
}

/// Options of one check.
#[derive(Debug, Clone)]
pub struct Check<'a> {
    pub address: &'a str,
    pub metrics: bool,
    pub status_path: Option<&'a Path>,
    /// Seconds per rate unit (`-u`).
    pub per: f64,
    pub timeout: Duration,
}

/// Run the check and build its output.
pub fn check(opts: &Check<'_>) -> Report {
    let target = parse_target(opts.address);
    let mut conn = match connect(&target, opts.timeout) {
        Ok(c) => c,
        Err(e) => return critical(format!("Can't connect {e}")),
    };
    let doc = match probe(conn.as_mut()) {
        Ok(d) => d,
        Err(e) => return critical(format!("Can't read status from {}: {e}", opts.address)),
    };
    drop(conn);
    match evaluate(&doc, opts) {
        Ok(r) => r,
        Err(e) => critical(e),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The file's mtime as Python's `os.stat().st_mtime` float.
fn mtime(path: &Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(match m.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as f64 + f64::from(d.subsec_nanos()) * 1e-9,
        Err(e) => -e.duration().as_secs_f64(),
    })
}

fn number(v: Option<&Json>, storage: &str, name: &str) -> Result<f64, String> {
    v.and_then(Json::as_f64)
        .ok_or_else(|| format!("status of storage {storage:?} has no number {name:?}"))
}

/// Turn the ruok document into the report (reads and rewrites the status file).
pub fn evaluate(doc: &str, opts: &Check<'_>) -> Result<Report, String> {
    let mut data = pyjson::parse(doc).map_err(|e| format!("ruok reply is not JSON: {e}"))?;
    let Json::Obj(storages) = &data else {
        return Err("ruok reply is not a JSON object".into());
    };
    if storages.is_empty() {
        return Ok(result(vec!["No storages".into()], &[], 1));
    }
    let mut ids: Vec<String> = storages.iter().map(|(k, _)| k.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut metrics = Vec::new();
    if opts.metrics {
        for id in &ids {
            let s = data.get(id).cloned().unwrap_or(Json::Null);
            for name in NODIFF_NAMES {
                let v = s
                    .get(name)
                    .ok_or_else(|| format!("status of storage {id:?} has no {name:?}"))?;
                new_metric(&mut metrics, id, name, &v.py_str());
            }
        }
        if let Some(path) = opts.status_path {
            rates(&mut data, &ids, path, opts.per, &mut metrics)?;
        }
    }
    let mut messages = Vec::new();
    let mut level = 0;
    for id in &ids {
        let last = data.get(id).and_then(|s| s.get("last-transaction"));
        if matches!(last, Some(Json::Str(t)) if t == NO_TRANSACTION) {
            messages.push(format!("Empty storage {}", str_repr(id)));
            level = 1;
        }
    }
    if messages.is_empty() {
        messages.push("OK".into());
    }
    Ok(result(messages, &metrics, level))
}

fn rates(
    data: &mut Json,
    ids: &[String],
    path: &Path,
    per: f64,
    metrics: &mut Vec<String>,
) -> Result<(), String> {
    let now = now();
    if let Some(mt) = mtime(path) {
        let dt = now - mt;
        if dt > 0.0 {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read status file {}: {e}", path.display()))?;
            let old = pyjson::parse(&text)
                .map_err(|e| format!("status file {} is not JSON: {e}", path.display()))?;
            let dt = dt / per;
            for id in ids {
                let Json::Obj(_) = data.get(id).unwrap_or(&Json::Null) else {
                    return Err(format!("status of storage {id:?} is not an object"));
                };
                if let Some(s) = match data {
                    Json::Obj(f) => f.iter_mut().find(|(k, _)| k == id).map(|(_, v)| v),
                    _ => None,
                } {
                    s.set("sameple-time", Json::Float(now));
                }
                if let Some(sold) = old.get(id) {
                    let s = data.get(id).cloned().unwrap_or(Json::Null);
                    for name in DIFF_NAMES {
                        let new = number(s.get(name), id, name)?;
                        let was = number(sold.get(name), id, name)?;
                        new_metric(metrics, id, name, &float_repr((new - was) / dt));
                    }
                }
            }
        }
    }
    std::fs::write(path, pyjson::dumps(data))
        .map_err(|e| format!("cannot write status file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts<'a>(metrics: bool, status: Option<&'a Path>) -> Check<'a> {
        Check {
            address: "x:1",
            metrics,
            status_path: status,
            per: 60.0,
            timeout: Duration::from_secs(1),
        }
    }

    const DOC: &str = r#"{"1": {"connections": 2, "loads": 10, "stores": 4, "commits": 2, "aborts": 0, "active_txns": 1, "lock_time": null, "conflicts": 0, "conflicts_resolved": 0, "start": "Sat Nov 21 17:24:20 2026", "waiting": 0, "timeout-thread-is-alive": "stub", "last-transaction": "03f1a2b3c4d5e6f7"}, "main db": {"connections": 0, "loads": 0, "stores": 0, "commits": 0, "aborts": 0, "active_txns": 0, "lock_time": null, "conflicts": 0, "conflicts_resolved": 0, "start": "x", "waiting": 0, "timeout-thread-is-alive": "stub", "last-transaction": "0000000000000000"}}"#;

    #[test]
    fn targets_follow_the_python_regexes() {
        assert_eq!(parse_target("[::1]:8100"), Target::V6("::1".into(), 8100));
        assert_eq!(
            parse_target("localhost:8100"),
            Target::V4("localhost".into(), 8100)
        );
        assert_eq!(parse_target("a:b:8100"), Target::V4("a:b".into(), 8100));
        assert_eq!(parse_target("8100"), Target::Unix("8100".into()));
        assert_eq!(
            parse_target("/run/zeo.sock"),
            Target::Unix("/run/zeo.sock".into())
        );
        assert_eq!(parse_target("h x:1"), Target::Unix("h x:1".into()));
    }

    #[test]
    fn plain_and_metrics_reports() {
        let r = evaluate(DOC, &opts(false, None)).unwrap();
        assert_eq!(r.text, "Empty storage 'main db'");
        assert_eq!(r.status, 1);
        let r = evaluate(DOC, &opts(true, None)).unwrap();
        assert_eq!(
            r.text,
            "Empty storage 'main db'|active_txns=1\n| connections=2\n waiting=0\n 'main db:active_txns'=0\n 'main db:connections'=0\n 'main db:waiting'=0"
        );
        let ok = r#"{"1": {"active_txns": 0, "connections": 1, "waiting": 0, "last-transaction": "03f1a2b3c4d5e6f7"}}"#;
        let r = evaluate(ok, &opts(false, None)).unwrap();
        assert_eq!((r.text.as_str(), r.status), ("OK", 0));
        let r = evaluate("{}", &opts(true, None)).unwrap();
        assert_eq!((r.text.as_str(), r.status), ("No storages", 1));
        assert!(evaluate("[1]", &opts(false, None)).is_err());
    }

    #[test]
    fn rates_from_a_status_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        // First run: no rates, the file is written as json.dumps writes it.
        let r = evaluate(DOC, &opts(true, Some(&path))).unwrap();
        assert!(!r.text.contains("loads="), "{}", r.text);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DOC);
        // Backdate the file one minute; the second run reports per-minute rates.
        let old = std::fs::File::options().write(true).open(&path).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        drop(old);
        let later = DOC.replace("\"loads\": 10", "\"loads\": 70");
        let r = evaluate(&later, &opts(true, Some(&path))).unwrap();
        let loads = r
            .text
            .lines()
            .find_map(|l| l.trim().strip_prefix("loads="))
            .unwrap();
        let loads: f64 = loads.parse().unwrap();
        assert!((loads - 60.0).abs() < 1.0, "{}", r.text);
        assert!(r.text.contains("\n 'main db:stores'=0.0"), "{}", r.text);
        let saved = pyjson::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(saved.get("1").unwrap().get("sameple-time").is_some());
        assert!(saved.get("main db").unwrap().get("sameple-time").is_some());
    }

    #[test]
    fn connection_errors_read_like_python() {
        assert_eq!(errno_text(111), "[Errno 111] Connection refused");
        let r = check(&Check {
            address: "/nonexistent/zeo.sock",
            ..opts(false, None)
        });
        assert_eq!(
            (r.text.as_str(), r.status),
            ("Can't connect [Errno 2] No such file or directory", 2)
        );
    }
}
