//! In-memory TLS handshakes between the server configuration built from `<ssl>` and the
//! tools' client configuration: which certificates are accepted and refused, with
//! which reason. Certificates: tests/fixtures/tls (ZEO's own test certificates, and a
//! CA-issued set made by make.sh).

use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeo::client::tls::{client_config, ClientTls};
use zeo::config::{Authenticate, SslConfig};
use zeo::server::tls::server_config;

fn fx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// The server of ZEO's testssl: server.pem, trusting client.pem.
fn zeo_server() -> Arc<rustls::ServerConfig> {
    server_config(&SslConfig {
        certificate: fx("server.pem"),
        key: Some(fx("server_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(fx("client.pem")),
    })
    .unwrap()
}

/// A server with a CA-issued certificate, trusting the CA through a hashed directory.
fn ca_server() -> Arc<rustls::ServerConfig> {
    server_config(&SslConfig {
        certificate: fx("srv.pem"),
        key: Some(fx("srv_key.pem")),
        password_function: None,
        authenticate: Authenticate::Dir(fx("cadir")),
    })
    .unwrap()
}

fn client(
    auth: &str,
    cert: Option<(&str, &str)>,
    check_hostname: bool,
) -> Arc<rustls::ClientConfig> {
    client_config(&ClientTls {
        authenticate: Some(fx(auth)),
        certificate: cert.map(|(c, _)| fx(c)),
        key: cert.map(|(_, k)| fx(k)),
        check_hostname,
        server_hostname: None,
    })
    .unwrap()
}

#[derive(Debug)]
struct Outcome {
    client: Result<(), rustls::Error>,
    server: Result<(), rustls::Error>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }
}

/// Run a handshake in memory, then one application message each way.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Outcome {
    use std::io::{Read, Write};
    let mut c =
        rustls::ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap())
            .unwrap();
    let mut s = rustls::ServerConnection::new(server).unwrap();
    let mut client_res = Ok(());
    let mut server_res = Ok(());
    let _ = s.writer().write_all(b"Z5-greeting");
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() && server_res.is_ok() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                if let Err(e) = s.process_new_packets() {
                    server_res = Err(e);
                    break;
                }
            }
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() && client_res.is_ok() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                if let Err(e) = c.process_new_packets() {
                    client_res = Err(e);
                    break;
                }
            }
        }
        if client_res.is_err() || server_res.is_err() {
            break;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            break;
        }
    }
    if client_res.is_ok() && server_res.is_ok() {
        let mut got = [0u8; 11];
        match c.reader().read_exact(&mut got) {
            Ok(()) => assert_eq!(&got, b"Z5-greeting"),
            Err(e) => client_res = Err(rustls::Error::General(format!("no greeting: {e}"))),
        }
    }
    Outcome {
        client: client_res,
        server: server_res,
    }
}

#[test]
fn zeo_certificates_as_in_zeo_testssl() {
    // test_ssl_basic: client.pem/client_key.pem, trusting server.pem, server-hostname
    // zodb.org (the certificate's common name; it has no subjectAltName).
    let out = handshake(
        zeo_server(),
        client("server.pem", Some(("client.pem", "client_key.pem")), true),
        "zodb.org",
    );
    assert!(out.ok(), "{out:?}");
}

#[test]
fn zeo_hostname_check() {
    // test_ssl_hostname_check: example.org is refused, by the client.
    let out = handshake(
        zeo_server(),
        client("server.pem", Some(("client.pem", "client_key.pem")), true),
        "example.org",
    );
    assert_eq!(
        out.client,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
        )),
        "{out:?}"
    );
    // check-hostname false: accepted.
    let out = handshake(
        zeo_server(),
        client("server.pem", Some(("client.pem", "client_key.pem")), false),
        "example.org",
    );
    assert!(out.ok(), "{out:?}");
}

#[test]
fn client_without_certificate_is_refused() {
    let out = handshake(zeo_server(), client("server.pem", None, true), "zodb.org");
    let err = out.server.expect_err("server must refuse");
    assert_eq!(err, rustls::Error::NoCertificatesPresented);
    assert!(err.to_string().contains("no certificates"), "{err}");
}

#[test]
fn untrusted_client_certificate_is_refused() {
    let out = handshake(
        zeo_server(),
        client(
            "server.pem",
            Some(("stranger.pem", "stranger_key.pem")),
            true,
        ),
        "zodb.org",
    );
    let err = out.server.expect_err("server must refuse");
    // The same alert as OpenSSL sends for an untrusted self-signed certificate.
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    );
    // A CA-issued client certificate, but the server trusts only client.pem.
    let out = handshake(
        zeo_server(),
        client("server.pem", Some(("cli.pem", "cli_key.pem")), true),
        "zodb.org",
    );
    assert!(out.server.is_err(), "{out:?}");
}

#[test]
fn ca_issued_certificates() {
    for name in ["localhost", "127.0.0.1"] {
        let out = handshake(
            ca_server(),
            client("ca.pem", Some(("cli.pem", "cli_key.pem")), true),
            name,
        );
        assert!(out.ok(), "{name}: {out:?}");
    }
    // CA directory on the client side too.
    let out = handshake(
        ca_server(),
        client("cadir", Some(("cli.pem", "cli_key_rsa.pem")), true),
        "localhost",
    );
    assert!(out.ok(), "{out:?}");
    // Wrong name.
    let out = handshake(
        ca_server(),
        client("ca.pem", Some(("cli.pem", "cli_key.pem")), true),
        "example.org",
    );
    assert!(out.client.is_err(), "{out:?}");
    let out = handshake(
        ca_server(),
        client("ca.pem", Some(("cli.pem", "cli_key.pem")), false),
        "example.org",
    );
    assert!(out.ok(), "{out:?}");
    // ZEO's self-signed client certificate is not trusted by the CA server.
    let out = handshake(
        ca_server(),
        client("ca.pem", Some(("client.pem", "client_key.pem")), true),
        "localhost",
    );
    assert!(out.server.is_err(), "{out:?}");
    // A client that trusts a different CA refuses the server.
    let out = handshake(
        ca_server(),
        client("server.pem", Some(("cli.pem", "cli_key.pem")), true),
        "localhost",
    );
    assert!(out.client.is_err(), "{out:?}");
}

#[test]
fn trust_file_listing_several_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("clients.pem");
    let mut all = std::fs::read(fx("ca.pem")).unwrap();
    all.extend(std::fs::read(fx("client.pem")).unwrap());
    std::fs::write(&list, all).unwrap();
    let server = server_config(&SslConfig {
        certificate: fx("server.pem"),
        key: Some(fx("server_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(list),
    })
    .unwrap();
    // Both the directly listed self-signed certificate and a CA-issued one get in.
    for cert in [("client.pem", "client_key.pem"), ("cli.pem", "cli_key.pem")] {
        let out = handshake(
            server.clone(),
            client("server.pem", Some(cert), true),
            "zodb.org",
        );
        assert!(out.ok(), "{cert:?}: {out:?}");
    }
    let out = handshake(
        server,
        client(
            "server.pem",
            Some(("stranger.pem", "stranger_key.pem")),
            true,
        ),
        "zodb.org",
    );
    assert!(out.server.is_err(), "{out:?}");
}

#[test]
fn client_options_errors_name_files() {
    let e = client_config(&ClientTls {
        authenticate: Some(fx("missing-ca.pem")),
        ..ClientTls::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("missing-ca.pem"), "{e}");
    let e = client_config(&ClientTls {
        authenticate: Some(fx("ca.pem")),
        certificate: Some(fx("cli.pem")),
        key: Some(fx("srv_key.pem")),
        ..ClientTls::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let (_, name) = zeo::client::tls::options_tls(
        &ClientTls {
            authenticate: Some(fx("ca.pem")),
            ..ClientTls::default()
        },
        "[::1]:8100",
    )
    .unwrap();
    assert_eq!(name, "::1");
}

#[test]
fn crls_in_the_trust_file() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("clients.pem");
    let mut all = std::fs::read(fx("ca.pem")).unwrap();
    all.extend(std::fs::read(fx("ca_crl.pem")).unwrap());
    all.extend(std::fs::read(fx("client.pem")).unwrap());
    std::fs::write(&list, all).unwrap();
    let server = server_config(&SslConfig {
        certificate: fx("srv.pem"),
        key: Some(fx("srv_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(list),
    })
    .unwrap();
    let out = handshake(
        server.clone(),
        client("ca.pem", Some(("cli.pem", "cli_key.pem")), true),
        "localhost",
    );
    assert!(out.ok(), "not revoked: {out:?}");
    let out = handshake(
        server.clone(),
        client("ca.pem", Some(("revoked.pem", "revoked_key.pem")), true),
        "localhost",
    );
    assert_eq!(
        out.server,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    );
    // With CRLs loaded, a directly listed self-signed certificate is no longer enough.
    let out = handshake(
        server,
        client("ca.pem", Some(("client.pem", "client_key.pem")), true),
        "localhost",
    );
    assert!(out.server.is_err(), "{out:?}");
}

#[test]
fn system_roots_from_ssl_cert_file() {
    // No `authenticate`: the system CAs, here redirected with SSL_CERT_FILE (no other
    // test of this binary uses the system CAs).
    std::env::set_var("SSL_CERT_FILE", fx("ca.pem"));
    let cfg = client_config(&ClientTls {
        certificate: Some(fx("cli.pem")),
        key: Some(fx("cli_key.pem")),
        ..ClientTls::default()
    })
    .unwrap();
    let out = handshake(ca_server(), cfg, "localhost");
    assert!(out.ok(), "{out:?}");
    // A system CA bundle is never used for pinning: ZEO's self-signed server.pem as a
    // "system CA" does not make the server that presents it trusted.
    std::env::set_var("SSL_CERT_FILE", fx("server.pem"));
    let cfg = client_config(&ClientTls {
        certificate: Some(fx("client.pem")),
        key: Some(fx("client_key.pem")),
        ..ClientTls::default()
    })
    .unwrap();
    let out = handshake(zeo_server(), cfg, "zodb.org");
    assert!(out.client.is_err(), "{out:?}");
    std::env::set_var("SSL_CERT_FILE", fx("no-such-bundle.pem"));
    let e = client_config(&ClientTls::default()).unwrap_err();
    assert!(e.to_string().contains("no-such-bundle.pem"), "{e}");
    std::env::remove_var("SSL_CERT_FILE");
}
