//! Names in the registry: ZooKeeper connection strings (`host:port,host:port[/chroot]`),
//! `zookeeper://HOST:PORT[,HOST:PORT]/path` URLs, registered node names (`host:port`)
//! and their properties in the form zc.zk writes.
//!
//! Invariants: parsing is pure and never panics; a connection string always yields at
//! least one server; chroots and paths are absolute, without a trailing `/` (except the
//! root itself).

use super::ZkError;
use crate::client::ServerAddress;

/// A parsed ZooKeeper connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// `host:port` of each server, in the given order (port defaults to 2181).
    pub servers: Vec<String>,
    /// The chroot every path is relative to, if any (e.g. `/zeo`).
    pub chroot: Option<String>,
}

impl ConnectString {
    /// Parse `host[:port],host[:port][/chroot]`.
    pub fn parse(text: &str) -> Result<Self, ZkError> {
        let bad = |why: &str| ZkError::Address(format!("{text:?}: {why}"));
        let text_t = text.trim();
        let (hosts, chroot) = match text_t.find('/') {
            Some(i) => (&text_t[..i], Some(&text_t[i..])),
            None => (text_t, None),
        };
        let mut servers = Vec::new();
        for h in hosts.split(',').map(str::trim) {
            if h.is_empty() {
                return Err(bad("empty server in the connection string"));
            }
            servers.push(host_port(h).ok_or_else(|| bad("expected host:port"))?);
        }
        let chroot = match chroot {
            None => None,
            Some(c) => {
                let c = normalize_path(c).ok_or_else(|| bad("invalid chroot"))?;
                (c != "/").then_some(c)
            }
        };
        Ok(ConnectString { servers, chroot })
    }

    /// The servers joined back with commas (for messages).
    pub fn hosts(&self) -> String {
        self.servers.join(",")
    }
}

/// `host`, `host:port`, `[v6]:port` → `host:port` (default port 2181).
fn host_port(h: &str) -> Option<String> {
    if let Some(rest) = h.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if tail.is_empty() => 2181,
            None => return None,
        };
        return Some(format!("[{host}]:{port}"));
    }
    match h.split_once(':') {
        Some((host, p)) if !host.is_empty() && !p.contains(':') => {
            Some(format!("{host}:{}", p.parse::<u16>().ok()?))
        }
        None => Some(format!("{h}:2181")),
        _ => None,
    }
}

/// An absolute node path without a trailing slash or empty components.
pub fn normalize_path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

/// A `zookeeper://HOST:PORT[,HOST:PORT]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    pub connection: String,
    pub path: String,
}

impl RegistryUrl {
    /// True when `text` is meant as a registry URL.
    pub fn is_url(text: &str) -> bool {
        text.starts_with("zookeeper://")
    }

    pub fn parse(text: &str) -> Result<Self, ZkError> {
        let bad = |why: &str| {
            ZkError::Address(format!(
                "{text:?}: {why} (expected zookeeper://HOST:PORT[,HOST:PORT]/path)"
            ))
        };
        let rest = text
            .strip_prefix("zookeeper://")
            .ok_or_else(|| bad("not a zookeeper:// URL"))?;
        let i = rest.find('/').ok_or_else(|| bad("missing /path"))?;
        let (hosts, path) = rest.split_at(i);
        if hosts.is_empty() {
            return Err(bad("missing HOST:PORT"));
        }
        ConnectString::parse(hosts)?;
        let path = normalize_path(path).ok_or_else(|| bad("invalid path"))?;
        Ok(RegistryUrl {
            connection: hosts.to_string(),
            path,
        })
    }
}

/// The node name zc.zk registers: `host:port`.
pub fn node_name(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// A registered child name as a server address (`::1:8100` → `[::1]:8100`); None for
/// names that are not `host:port`.
pub fn child_address(name: &str) -> Option<ServerAddress> {
    let (host, port) = name.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    if host.is_empty() {
        return None;
    }
    if host.contains(':') && !host.starts_with('[') {
        return Some(ServerAddress::Tcp(format!("[{host}]:{port}")));
    }
    Some(ServerAddress::Tcp(name.to_string()))
}

/// The node data zc.zk writes for a registration: `json.dumps(props,
/// separators=(',',':'))` of `{"monitor": "...", "pid": N}` (monitor only when set;
/// keys in that insertion order; non-ASCII escaped as `\uXXXX` like json.dumps).
pub fn properties(pid: u32, monitor: Option<&str>) -> String {
    let mut s = String::from("{");
    if let Some(m) = monitor {
        s.push_str("\"monitor\":");
        json_string(&mut s, m);
        s.push(',');
    }
    s.push_str(&format!("\"pid\":{pid}}}"));
    s
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The machine's name as zc.zk uses it for an empty host (Python's
/// `socket.getfqdn()`): the canonical name from the resolver when it is qualified,
/// else the plain host name.
pub fn fqdn() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    if host.contains('.') {
        return host;
    }
    canonical_name(&host)
        .filter(|c| c.contains('.'))
        .unwrap_or(host)
}

fn canonical_name(host: &str) -> Option<String> {
    let c_host = std::ffi::CString::new(host).ok()?;
    // SAFETY: getaddrinfo gets a valid C string and hints struct we own; the result
    // list is read only while alive and freed exactly once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_socktype = libc::SOCK_STREAM;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
            || res.is_null()
        {
            return None;
        }
        let name = if (*res).ai_canonname.is_null() {
            None
        } else {
            std::ffi::CStr::from_ptr((*res).ai_canonname)
                .to_str()
                .ok()
                .map(str::to_string)
        };
        libc::freeaddrinfo(res);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        let c = ConnectString::parse("zk1:2181,zk2:2182/zeo/").unwrap();
        assert_eq!(c.servers, vec!["zk1:2181", "zk2:2182"]);
        assert_eq!(c.chroot.as_deref(), Some("/zeo"));
        let c = ConnectString::parse("zk1").unwrap();
        assert_eq!(c.servers, vec!["zk1:2181"]);
        assert_eq!(c.chroot, None);
        assert_eq!(
            ConnectString::parse("[::1]:3000").unwrap().servers,
            vec!["[::1]:3000"]
        );
        assert!(ConnectString::parse("").is_err());
        assert!(ConnectString::parse("a:1,,b:2").is_err());
        assert!(ConnectString::parse("a:x").is_err());
        assert!(ConnectString::parse("a:1/../x").is_err());
    }

    #[test]
    fn urls() {
        let u = RegistryUrl::parse("zookeeper://127.0.0.1:2181,h:2/zeo/servers").unwrap();
        assert_eq!(u.connection, "127.0.0.1:2181,h:2");
        assert_eq!(u.path, "/zeo/servers");
        assert!(RegistryUrl::parse("zookeeper://h:1").is_err());
        assert!(RegistryUrl::parse("zookeeper:///p").is_err());
        assert!(RegistryUrl::parse("zk://h:1/p").is_err());
        assert!(RegistryUrl::is_url("zookeeper://x/y"));
    }

    #[test]
    fn names_and_properties() {
        assert_eq!(node_name("127.0.0.1", 8100), "127.0.0.1:8100");
        assert_eq!(
            child_address("::1:8100"),
            Some(ServerAddress::Tcp("[::1]:8100".into()))
        );
        assert_eq!(
            child_address("zeo1:8100"),
            Some(ServerAddress::Tcp("zeo1:8100".into()))
        );
        assert_eq!(child_address("lock"), None);
        assert_eq!(properties(42, None), r#"{"pid":42}"#);
        assert_eq!(
            properties(7, Some("127.0.0.1:9000")),
            r#"{"monitor":"127.0.0.1:9000","pid":7}"#
        );
        assert_eq!(
            properties(1, Some("é\"")),
            r#"{"monitor":"\u00e9\"","pid":1}"#
        );
        assert!(!fqdn().is_empty());
    }
}
