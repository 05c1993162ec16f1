//! TLS interop: Python's `ssl` module (the venv's Python, ZEO's test certificates)
//! connecting to our EventLoop with the configuration `server::tls::server_config`
//! builds, and to a Python server whose context ZEO 6.2's own `ZEO.zconfig.server_ssl`
//! builds from the same `<ssl>` values. Every client case must end the same way against
//! both: accepted, or refused with the same SSL error reason.
//!
//! `zeo serve` is not on main yet, so this runs at the event-loop level (an echo service
//! that greets with `Z5`); a ClientStorage-over-TLS test belongs with `zeo serve`.

#[path = "../tls_support/mod.rs"]
mod tls_support;

use super::common::{python_output, PyProcess};
use tls_support::{fx, start_echo, wait_close, zeo_ssl};
use zeo::config::{Authenticate, SslConfig};
use zeo::server::CloseReason;

/// argv: host port cert|- key|- server_hostname cafile. Prints one outcome line.
const CLIENT: &str = r#"
import socket, ssl, struct, sys
host, port, cert, key, hostname, ca = sys.argv[1:7]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
if cert != '-':
    ctx.load_cert_chain(cert, key)
def read(s, n):
    data = b''
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError('closed')
        data += chunk
    return data
try:
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            greeting = read(s, 6)[4:]
            s.sendall(struct.pack('>I', 5) + b'hello')
            echo = read(s, 9)[4:]
            print('OK', greeting.decode(), echo.decode())
except Exception as e:
    print('REFUSED', type(e).__name__, getattr(e, 'reason', None))
"#;

/// argv: certificate key authenticate. A ZEO-configured TLS echo server; prints its port.
const SERVER: &str = r#"
import socket, ssl, struct, sys, threading
from ZEO.zconfig import server_ssl
class Section:
    password_function = None
sec = Section()
sec.certificate, sec.key, sec.authenticate = sys.argv[1:4]
ctx = server_ssl(sec)
ls = socket.socket()
ls.bind(('127.0.0.1', 0))
ls.listen()
print(ls.getsockname()[1], flush=True)
def serve(c):
    try:
        s = ctx.wrap_socket(c, server_side=True)
        s.sendall(struct.pack('>I', 2) + b'Z5')
        while True:
            h = s.recv(4)
            if len(h) < 4:
                break
            body = s.recv(struct.unpack('>I', h)[0])
            s.sendall(h + body)
    except Exception as e:
        print('server error', type(e).__name__, e, file=sys.stderr, flush=True)
    finally:
        c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The Python server (killed when dropped) and its port.
struct PyServer {
    _process: PyProcess,
    port: u16,
}

impl PyServer {
    fn start(ssl: &SslConfig) -> PyServer {
        let auth = match &ssl.authenticate {
            Authenticate::File(p) | Authenticate::Dir(p) => p.clone(),
            Authenticate::Dynamic => unreachable!(),
        };
        let mut process = PyProcess::spawn(
            "the Python TLS echo server",
            &[
                "-c".as_ref(),
                SERVER.as_ref(),
                ssl.certificate.as_os_str(),
                ssl.key.as_ref().unwrap().as_os_str(),
                auth.as_os_str(),
            ],
            None,
            None,
            true,
        );
        let port = process.read_port();
        PyServer {
            _process: process,
            port,
        }
    }
}

fn py_client(port: u16, cert: Option<(&str, &str)>, hostname: &str, ca: &str) -> String {
    let port = port.to_string();
    let (c, k) = cert.map_or(("-".into(), "-".into()), |(c, k)| {
        (fx(c).display().to_string(), fx(k).display().to_string())
    });
    let ca = fx(ca).display().to_string();
    let out = python_output(CLIENT, &["127.0.0.1", &port, &c, &k, hostname, &ca]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One client case: certificate and key, server host name, CA file, expected outcome.
type Case<'a> = (Option<(&'a str, &'a str)>, &'a str, &'a str, &'a str);

/// Run every case against our server and Python's; both must agree with `expected`.
fn compare(ssl: &SslConfig, cases: &[Case]) {
    let (ours, _closes) = start_echo(ssl);
    let theirs = PyServer::start(ssl);
    for (cert, hostname, ca, expected) in cases {
        let a = py_client(ours.port(), *cert, hostname, ca);
        let b = py_client(theirs.port, *cert, hostname, ca);
        assert_eq!(
            a, b,
            "zeo vs runzeo-style server for {cert:?} {hostname} {ca}"
        );
        assert_eq!(&a, expected, "{cert:?} {hostname} {ca}");
    }
}

#[test]
fn python_ssl_against_zeo_test_certificates() {
    compare(
        &zeo_ssl(),
        &[
            (
                Some(("client.pem", "client_key.pem")),
                "zodb.org",
                "server.pem",
                "OK Z5 hello",
            ),
            (
                None,
                "zodb.org",
                "server.pem",
                "REFUSED SSLError TLSV13_ALERT_CERTIFICATE_REQUIRED",
            ),
            (
                Some(("stranger.pem", "stranger_key.pem")),
                "zodb.org",
                "server.pem",
                "REFUSED SSLError TLSV1_ALERT_UNKNOWN_CA",
            ),
            (
                Some(("client.pem", "client_key.pem")),
                "example.org",
                "server.pem",
                "REFUSED SSLCertVerificationError CERTIFICATE_VERIFY_FAILED",
            ),
        ],
    );
}

#[test]
fn python_ssl_against_ca_directory() {
    let ssl = SslConfig {
        certificate: fx("srv.pem"),
        key: Some(fx("srv_key.pem")),
        password_function: None,
        authenticate: Authenticate::Dir(fx("cadir")),
    };
    compare(
        &ssl,
        &[
            (
                Some(("cli.pem", "cli_key.pem")),
                "localhost",
                "ca.pem",
                "OK Z5 hello",
            ),
            (
                None,
                "localhost",
                "ca.pem",
                "REFUSED SSLError TLSV13_ALERT_CERTIFICATE_REQUIRED",
            ),
            (
                Some(("client.pem", "client_key.pem")),
                "localhost",
                "ca.pem",
                "REFUSED SSLError TLSV1_ALERT_UNKNOWN_CA",
            ),
        ],
    );
}

#[test]
fn python_client_without_certificate_is_reported_by_our_server() {
    let (ours, closes) = start_echo(&zeo_ssl());
    let out = py_client(ours.port(), None, "zodb.org", "server.pem");
    assert!(out.starts_with("REFUSED"), "{out}");
    let why = wait_close(&closes, |w| matches!(w, CloseReason::Tls(_))).unwrap();
    assert_eq!(why, CloseReason::Tls("peer sent no certificates".into()));
}

#[test]
fn python_ssl_with_crl_in_the_trust_file() {
    // ca.pem + its CRL (revoking revoked.pem) + ZEO's self-signed client.pem listed
    // directly: runzeo turns on CRL checks for the client certificate.
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("clients.pem");
    let mut all = std::fs::read(fx("ca.pem")).unwrap();
    all.extend(std::fs::read(fx("ca_crl.pem")).unwrap());
    all.extend(std::fs::read(fx("client.pem")).unwrap());
    std::fs::write(&list, all).unwrap();
    let ssl = SslConfig {
        certificate: fx("srv.pem"),
        key: Some(fx("srv_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(list),
    };
    compare(
        &ssl,
        &[
            (
                Some(("cli.pem", "cli_key.pem")),
                "localhost",
                "ca.pem",
                "OK Z5 hello",
            ),
            (
                Some(("revoked.pem", "revoked_key.pem")),
                "localhost",
                "ca.pem",
                "REFUSED SSLError SSLV3_ALERT_CERTIFICATE_REVOKED",
            ),
            (
                Some(("client.pem", "client_key.pem")),
                "localhost",
                "ca.pem",
                "REFUSED SSLError TLSV1_ALERT_UNKNOWN_CA",
            ),
        ],
    );
}
