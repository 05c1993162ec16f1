//! Our EventLoop serving TLS (built by `server::tls::server_config`) to our blocking
//! client: a client with a trusted certificate gets through; one without a certificate,
//! with an untrusted one, or speaking plain TCP is refused, and the server logs and
//! reports the reason.

mod tls_support;

use std::io::{Read, Write};
use tls_support::*;
use zeo::client::tls::{options_tls, ClientTls};
use zeo::client::{Client, Options, ServerAddress};
use zeo::server::CloseReason;

fn opts(addr: &str, cert: Option<(&str, &str)>) -> Options {
    let tls = ClientTls {
        authenticate: Some(fx("server.pem")),
        certificate: cert.map(|(c, _)| fx(c)),
        key: cert.map(|(_, k)| fx(k)),
        check_hostname: true,
        server_hostname: Some("zodb.org".into()),
    };
    Options {
        tls: Some(options_tls(&tls, addr).unwrap()),
        ..Options::default()
    }
}

#[test]
fn client_with_certificate_gets_through() {
    keep_logs();
    let (addr, closes) = start_echo(&zeo_ssl());
    let a = addr.to_string();
    let server = ServerAddress::Tcp(a.clone());
    let doc = Client::ruok(&server, &opts(&a, Some(("client.pem", "client_key.pem")))).unwrap();
    assert_eq!(doc, r#"{"echo": "ok"}"#);
    let client = Client::connect(&server, &opts(&a, Some(("client.pem", "client_key.pem"))));
    assert!(client.is_ok(), "{:?}", client.err());
    drop(client);
    // The ruok connection was closed by the server after its answer, not by TLS.
    let why = wait_close(&closes, |_| true).unwrap();
    assert!(!matches!(why, CloseReason::Tls(_)), "{why:?}");
}

#[test]
fn client_without_certificate_is_refused_and_logged() {
    keep_logs();
    let (addr, closes) = start_echo(&zeo_ssl());
    let a = addr.to_string();
    let server = ServerAddress::Tcp(a.clone());
    let err = Client::ruok(&server, &opts(&a, None)).unwrap_err();
    // With TLS 1.3 the client sees the refusal only after its handshake "succeeded":
    // as an alert or a closed connection, never a greeting.
    let msg = err.to_string();
    assert!(
        msg.contains("CertificateRequired") || msg.contains("closed") || msg.contains("alert"),
        "{msg}"
    );
    let why = wait_close(&closes, |w| matches!(w, CloseReason::Tls(_)))
        .expect("server saw a TLS failure");
    assert_eq!(why, CloseReason::Tls("peer sent no certificates".into()));
    let lines = log_lines("peer sent no certificates");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN TLS error with 127.0.0.1:")),
        "{lines:?}"
    );
}

#[test]
fn untrusted_certificate_is_refused_and_logged() {
    keep_logs();
    let (addr, closes) = start_echo(&zeo_ssl());
    let a = addr.to_string();
    let server = ServerAddress::Tcp(a.clone());
    assert!(Client::ruok(
        &server,
        &opts(&a, Some(("stranger.pem", "stranger_key.pem")))
    )
    .is_err());
    let why = wait_close(&closes, |w| matches!(w, CloseReason::Tls(_))).unwrap();
    let CloseReason::Tls(reason) = why else {
        unreachable!()
    };
    eprintln!("untrusted: {reason}");
    assert!(reason.contains("invalid peer certificate"), "{reason}");
    assert!(!log_lines(&reason).is_empty());
}

#[test]
fn plain_client_on_tls_port_is_refused() {
    keep_logs();
    let (addr, closes) = start_echo(&zeo_ssl());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // A plain ZEO client's first message: the sized "Z5" handshake.
    s.write_all(b"\0\0\0\x02Z5").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    // No greeting: at most a TLS alert record (content type 21), then EOF.
    assert!(n == 0 || buf[0] == 21, "{:?}", &buf[..n]);
    let why = wait_close(&closes, |w| matches!(w, CloseReason::Tls(_))).unwrap();
    eprintln!("plain client: {why}");
    assert!(matches!(why, CloseReason::Tls(_)), "{why:?}");
}
