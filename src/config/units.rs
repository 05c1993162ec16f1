//! Value datatypes of the configuration, with ZConfig's exact acceptance rules: Python
//! `int()`/`float()` literals, booleans, byte sizes (`KB`/`MB`/`GB`), time intervals
//! (`s`/`m`/`h`/`d`), logging levels, socket binding addresses and `existing-dirpath`
//! paths (with `~` expansion).
//!
//! Invariants: every function is total over its input (never panics, no unchecked
//! arithmetic); errors are plain messages, the caller adds file, line and key. Anything
//! touching the environment or the filesystem goes through [`Host`] so tests and the
//! fuzzer stay deterministic.

use std::path::{Path, PathBuf};

/// What value conversion (and `%include`/`$(ENV)` in the parser) may ask of the outside
/// world. [`RealHost`] is the process's own environment and filesystem.
pub trait Host {
    /// Contents of a configuration file (`-C` or `%include`).
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
    /// An environment variable (`$(NAME)` substitution, `~` expansion via HOME).
    fn env_var(&self, name: &str) -> Option<String>;
    fn is_dir(&self, path: &Path) -> bool;
    fn exists(&self, path: &Path) -> bool;
    /// Home directory of a named user (`~user`), if that user exists.
    fn user_home(&self, user: &str) -> Option<String>;
}

/// The real environment and filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl Host for RealHost {
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })
    }
    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn user_home(&self, user: &str) -> Option<String> {
        // /etc/passwd: name:pw:uid:gid:gecos:home:shell
        let text = std::fs::read_to_string("/etc/passwd").ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[0] == user).then(|| f[5].to_string())
        })
    }
}

/// Python's `str.isspace()` (and the `\s` of its `re` module on `str`).
pub fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `str.split()` without arguments.
pub fn py_split(s: &str) -> Vec<&str> {
    s.split(py_is_space).filter(|p| !p.is_empty()).collect()
}

/// Remove the underscores Python allows in numeric literals (single, between digits);
/// `None` if an underscore is misplaced.
fn strip_underscores(s: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let before = i > 0 && chars[i - 1].is_ascii_digit();
            let after = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            if !(before && after) {
                return None;
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Python `int(s)` (base 10) restricted to the `i64` range.
pub fn py_int(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid literal for int() with base 10: {}", py_repr(s));
    let t = py_strip(s);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err(bad());
    }
    let plain = strip_underscores(digits).ok_or_else(bad)?;
    let mut v: i128 = 0;
    for b in plain.bytes() {
        v = v * 10 + i128::from(b - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return Err(format!("integer {} is out of range", py_repr(t)));
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).map_err(|_| format!("integer {} is out of range", py_repr(t)))
}

/// Python `float(s)`.
pub fn py_float(s: &str) -> Result<f64, String> {
    let bad = || format!("could not convert string to float: {}", py_repr(s));
    let t = py_strip(s);
    let body = t.trim_start_matches(['+', '-']);
    if t.len() - body.len() > 1 {
        return Err(bad());
    }
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return t.parse::<f64>().map_err(|_| bad());
    }
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '_' | '+' | '-'))
    {
        return Err(bad());
    }
    let plain = strip_underscores(t).ok_or_else(bad)?;
    plain.parse::<f64>().map_err(|_| bad())
}

/// `repr()` of a string as Python prints it in messages (close enough for messages).
pub fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// ZConfig `boolean`: yes/true/on, no/false/off, any case.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.to_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("not a valid boolean value: {}", py_repr(s))),
    }
}

/// ZConfig's suffix multiplier: the suffix (all of one length) is matched on the
/// lower-cased value; the rest must be a Python integer.
fn suffix_multiplier(s: &str, table: &[(&str, i64)], keysz: usize) -> Result<i64, String> {
    let lower = s.to_lowercase();
    let chars: Vec<char> = lower.chars().collect();
    if chars.len() >= keysz {
        let split = chars.len() - keysz;
        let suffix: String = chars[split..].iter().collect();
        if let Some((_, m)) = table.iter().find(|(k, _)| *k == suffix) {
            let head: String = chars[..split].iter().collect();
            return py_int(&head)?
                .checked_mul(*m)
                .ok_or_else(|| format!("value {} is out of range", py_repr(s)));
        }
    }
    py_int(&lower)
}

/// ZConfig `byte-size`: an integer with an optional `KB`, `MB` or `GB` suffix (any case,
/// powers of 1024).
pub fn byte_size(s: &str) -> Result<i64, String> {
    suffix_multiplier(s, &[("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30)], 2)
}

/// ZConfig `time-interval`: integer seconds with an optional `s`, `m`, `h` or `d` suffix.
pub fn time_interval(s: &str) -> Result<i64, String> {
    suffix_multiplier(s, &[("s", 1), ("m", 60), ("h", 3600), ("d", 86400)], 1)
}

/// ZConfig's logger `logging_level`: a level name or an integer 0..=50.
pub fn logging_level(s: &str) -> Result<u8, String> {
    let v = match s.to_lowercase().as_str() {
        "critical" | "fatal" => 50,
        "error" => 40,
        "warn" | "warning" => 30,
        "info" => 20,
        "blather" => 15,
        "debug" => 10,
        "trace" => 5,
        "all" => 1,
        "notset" => 0,
        other => {
            let v = py_int(other).map_err(|_| {
                format!(
                    "{} is neither a level name (critical, fatal, error, warn, warning, info, \
                     blather, debug, trace, all, notset) nor a number 0-50",
                    py_repr(s)
                )
            })?;
            if !(0..=50).contains(&v) {
                return Err(format!("log level not in range: {v}"));
            }
            v
        }
    };
    u8::try_from(v).map_err(|_| format!("log level not in range: {v}"))
}

/// A listening address as ZConfig's `socket-binding-address` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// TCP. `host` is lower-cased and may be empty (all interfaces, as runzeo binds
    /// `''`), an IPv6 literal without brackets, an IPv4 literal or a DNS name. `port` 0
    /// means "any free port" (runzeo's reading of an address without a port).
    Tcp { host: String, port: u16 },
    /// A Unix-domain socket path (any value containing `/`).
    Unix(PathBuf),
}

impl ListenAddress {
    /// True for TCP addresses whose host is an IPv6 literal (runzeo's AF_INET6 rule: a
    /// colon in the host).
    pub fn is_ipv6(&self) -> bool {
        matches!(self, ListenAddress::Tcp { host, .. } if host.contains(':'))
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            ListenAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddress::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// ZConfig `port-number`: an integer 0..=65535.
fn port_number(s: &str) -> Result<u16, String> {
    let v = py_int(s)?;
    if v < 0 {
        return Err(format!("{v} is below lower bound (0)"));
    }
    u16::try_from(v).map_err(|_| format!("{v} is above upper bound (65535)"))
}

/// ZConfig `socket-binding-address`: a path when it contains `/`; else `host:port`,
/// `[v6]:port`, a bare port, or a bare host (port 0).
pub fn socket_binding_address(s: &str) -> Result<ListenAddress, String> {
    if s.contains('/') {
        return Ok(ListenAddress::Unix(PathBuf::from(s)));
    }
    let (host, port) = if let Some((h, p)) = s.rsplit_once(':') {
        let (host, p) = if h.len() >= 2 && h.starts_with('[') && h.ends_with(']') {
            (&h[1..h.len() - 1], Some(p))
        } else if h.contains(':') {
            // Unbracketed IPv6 literal: the last part is not a port.
            (s, None)
        } else {
            (h, Some(p))
        };
        let port = match p {
            Some(p) if !p.is_empty() => port_number(p)?,
            _ => 0,
        };
        (host.to_lowercase(), port)
    } else {
        match port_number(s) {
            Ok(port) => (String::new(), port),
            Err(_) => {
                if py_split(s).len() != 1 {
                    return Err(format!("not a valid host name: {}", py_repr(s)));
                }
                (s.to_lowercase(), 0)
            }
        }
    };
    Ok(ListenAddress::Tcp { host, port })
}

/// Python's `os.path.expanduser` on POSIX.
pub fn expand_user(s: &str, host: &dyn Host) -> String {
    let Some(rest) = s.strip_prefix('~') else {
        return s.to_string();
    };
    let i = rest.find('/').unwrap_or(rest.len());
    let (user, tail) = rest.split_at(i);
    let home = if user.is_empty() {
        host.env_var("HOME")
    } else {
        host.user_home(user)
    };
    match home {
        Some(h) => {
            let h = h.trim_end_matches('/');
            let joined = format!("{h}{tail}");
            if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            }
        }
        None => s.to_string(),
    }
}

/// Python's `os.path.dirname` on POSIX.
fn dirname(p: &str) -> &str {
    let i = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    let head = &p[..i];
    if !head.is_empty() && head.chars().any(|c| c != '/') {
        head.trim_end_matches('/')
    } else {
        head
    }
}

/// ZConfig `existing-dirpath`: `~`-expanded; the directory part, if any, must exist.
pub fn existing_dirpath(s: &str, host: &dyn Host) -> Result<PathBuf, String> {
    let nv = expand_user(s, host);
    let dir = dirname(&nv);
    if dir.is_empty() || host.is_dir(Path::new(dir)) {
        Ok(PathBuf::from(nv))
    } else {
        Err(format!(
            "the directory named as part of the path {s} does not exist"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost;
    impl Host for FakeHost {
        fn read_file(&self, _: &Path) -> std::io::Result<String> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn env_var(&self, name: &str) -> Option<String> {
            (name == "HOME").then(|| "/home/zope/".to_string())
        }
        fn is_dir(&self, p: &Path) -> bool {
            matches!(p.to_str(), Some("/" | "/var" | "/home/zope" | "rel"))
        }
        fn exists(&self, p: &Path) -> bool {
            self.is_dir(p)
        }
        fn user_home(&self, user: &str) -> Option<String> {
            (user == "bob").then(|| "/home/bob".to_string())
        }
    }

    #[test]
    fn ints_like_python() {
        assert_eq!(py_int("42"), Ok(42));
        assert_eq!(py_int(" -7 "), Ok(-7));
        assert_eq!(py_int("+1_000"), Ok(1000));
        assert_eq!(py_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(py_int("-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            "", "1.5", "0x10", "1__0", "_1", "1_", "- 1", "--1", "1e3", "٣",
        ] {
            assert!(py_int(bad).is_err(), "{bad:?}");
        }
        assert!(py_int("99999999999999999999999")
            .unwrap_err()
            .contains("range"));
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(py_float("1.5"), Ok(1.5));
        assert_eq!(py_float(" 2 "), Ok(2.0));
        assert_eq!(py_float("1e3"), Ok(1000.0));
        assert_eq!(py_float(".5"), Ok(0.5));
        assert_eq!(py_float("5."), Ok(5.0));
        assert_eq!(py_float("1_0.2_5"), Ok(10.25));
        assert_eq!(py_float("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(py_float("nan").unwrap().is_nan());
        for bad in ["", "abc", "1.5s", "1__0", "+-1", "0x1p3", "1,5"] {
            assert!(py_float(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["yes", "TRUE", "On"] {
            assert_eq!(boolean(t), Ok(true));
        }
        for f in ["no", "False", "OFF"] {
            assert_eq!(boolean(f), Ok(false));
        }
        for bad in ["1", "0", "y", "", "enabled"] {
            assert!(boolean(bad).is_err());
        }
    }

    #[test]
    fn sizes_and_intervals() {
        assert_eq!(byte_size("20MB"), Ok(20 << 20));
        assert_eq!(byte_size("1kb"), Ok(1024));
        assert_eq!(byte_size("2Gb"), Ok(2 << 30));
        assert_eq!(byte_size("512"), Ok(512));
        assert_eq!(byte_size("10 MB"), Ok(10 << 20));
        assert_eq!(byte_size("-1KB"), Ok(-1024));
        assert!(byte_size("1.5MB").is_err());
        assert!(byte_size("1K").is_err());
        assert!(byte_size("MB").is_err());
        assert!(byte_size("9223372036854775807GB").is_err());
        assert_eq!(time_interval("30"), Ok(30));
        assert_eq!(time_interval("30s"), Ok(30));
        assert_eq!(time_interval("2m"), Ok(120));
        assert_eq!(time_interval("1H"), Ok(3600));
        assert_eq!(time_interval("2d"), Ok(172800));
        assert!(time_interval("1w").is_err());
        assert!(time_interval("1.5h").is_err());
    }

    #[test]
    fn levels() {
        assert_eq!(logging_level("INFO"), Ok(20));
        assert_eq!(logging_level("blather"), Ok(15));
        assert_eq!(logging_level("fatal"), Ok(50));
        assert_eq!(logging_level("all"), Ok(1));
        assert_eq!(logging_level("35"), Ok(35));
        assert!(logging_level("51").is_err());
        assert!(logging_level("-1").is_err());
        assert!(logging_level("loud").is_err());
    }

    fn tcp(host: &str, port: u16) -> ListenAddress {
        ListenAddress::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses() {
        let a = socket_binding_address;
        assert_eq!(a("8100"), Ok(tcp("", 8100)));
        assert_eq!(a("localhost:8100"), Ok(tcp("localhost", 8100)));
        assert_eq!(a("LocalHost:8100"), Ok(tcp("localhost", 8100)));
        assert_eq!(a(":8100"), Ok(tcp("", 8100)));
        assert_eq!(a("127.0.0.1:0"), Ok(tcp("127.0.0.1", 0)));
        assert_eq!(a("[::1]:8100"), Ok(tcp("::1", 8100)));
        assert!(a("[::1]:8100").unwrap().is_ipv6());
        assert_eq!(a("::1"), Ok(tcp("::1", 0)));
        assert_eq!(a("fe80::1:8100"), Ok(tcp("fe80::1:8100", 0)));
        assert_eq!(a("myhost"), Ok(tcp("myhost", 0)));
        assert_eq!(a("myhost:"), Ok(tcp("myhost", 0)));
        assert_eq!(
            a("/var/run/zeo.sock"),
            Ok(ListenAddress::Unix("/var/run/zeo.sock".into()))
        );
        assert_eq!(
            a("./zeo.sock"),
            Ok(ListenAddress::Unix("./zeo.sock".into()))
        );
        assert!(a("host:99999").is_err());
        assert!(a("host:-1").is_err());
        assert!(a("host:http").is_err());
        assert!(a("").is_err());
        assert!(a("two words").is_err());
        assert_eq!(tcp("::1", 5).to_string(), "[::1]:5");
        assert_eq!(tcp("", 5).to_string(), ":5");
    }

    #[test]
    fn paths() {
        let h = FakeHost;
        assert_eq!(expand_user("~/x", &h), "/home/zope/x");
        assert_eq!(expand_user("~", &h), "/home/zope");
        assert_eq!(expand_user("~bob/y", &h), "/home/bob/y");
        assert_eq!(expand_user("~nobody/y", &h), "~nobody/y");
        assert_eq!(expand_user("a/~", &h), "a/~");
        assert_eq!(existing_dirpath("Data.fs", &h), Ok("Data.fs".into()));
        assert_eq!(
            existing_dirpath("/var/Data.fs", &h),
            Ok("/var/Data.fs".into())
        );
        assert_eq!(existing_dirpath("/Data.fs", &h), Ok("/Data.fs".into()));
        assert_eq!(existing_dirpath("rel//x", &h), Ok("rel//x".into()));
        assert_eq!(
            existing_dirpath("~/Data.fs", &h),
            Ok("/home/zope/Data.fs".into())
        );
        assert!(existing_dirpath("/nope/Data.fs", &h).is_err());
        assert!(existing_dirpath("", &h).is_ok());
        assert_eq!(dirname("//x"), "//");
        assert_eq!(dirname("a//b"), "a");
    }
}
