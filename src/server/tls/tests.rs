//! Unit tests of certificate, key and trust loading and of the pinned-certificate
//! checks, on tests/fixtures/tls (ZEO's own test certificates plus ones made by
//! tests/fixtures/tls/make.sh).

use super::verify::names_match;
use super::*;
use rustls::pki_types::{ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn ssl(cert: &str, key: Option<&str>, auth: Authenticate) -> SslConfig {
    SslConfig {
        certificate: fx(cert),
        key: key.map(fx),
        password_function: None,
        authenticate: auth,
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

#[test]
fn zeo_test_certificates_make_a_server_config() {
    let cfg = ssl(
        "server.pem",
        Some("server_key.pem"),
        Authenticate::File(fx("client.pem")),
    );
    server_config(&cfg).expect("ZEO's own certificates load");
}

#[test]
fn key_formats_pkcs8_pkcs1_sec1() {
    // PKCS#8 EC, SEC1 EC, PKCS#1 RSA (ZEO's keys), PKCS#8 RSA.
    for (cert, key) in [
        ("srv.pem", "srv_key.pem"),
        ("srv.pem", "srv_key_sec1.pem"),
        ("server.pem", "server_key.pem"),
        ("cli.pem", "cli_key.pem"),
        ("cli.pem", "cli_key_rsa.pem"),
    ] {
        certified_key(&fx(cert), Some(&fx(key)), None)
            .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
    }
}

#[test]
fn key_in_the_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut both = std::fs::read(fx("server.pem")).unwrap();
    both.extend(std::fs::read(fx("server_key.pem")).unwrap());
    let p = write(&dir, "both.pem", &both);
    let cfg = SslConfig {
        certificate: p,
        key: None,
        password_function: None,
        authenticate: Authenticate::File(fx("client.pem")),
    };
    server_config(&cfg).expect("key found in the certificate file");
}

#[test]
fn missing_files_are_named() {
    let e =
        server_config(&ssl("nope.pem", None, Authenticate::File(fx("client.pem")))).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let e = server_config(&ssl(
        "server.pem",
        Some("nokey.pem"),
        Authenticate::File(fx("client.pem")),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("nokey.pem"), "{e}");

    let e = server_config(&ssl(
        "server.pem",
        Some("server_key.pem"),
        Authenticate::File(fx("noca.pem")),
    ))
    .unwrap_err();
    assert!(
        e.to_string().starts_with("cannot read ") && e.to_string().contains("noca.pem"),
        "{e}"
    );

    let e = server_config(&ssl(
        "server.pem",
        Some("server_key.pem"),
        Authenticate::Dir(fx("nodir")),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("nodir"), "{e}");
}

#[test]
fn bad_pem_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let e = load::certificate_chain(&bad).unwrap_err();
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(
        e.to_string().contains("bad.pem") && e.to_string().contains("not a valid PEM"),
        "{e}"
    );

    let unterminated = write(&dir, "cut.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    let e = load::certificate_chain(&unterminated).unwrap_err();
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");

    let text = write(&dir, "text.pem", b"hello\n");
    let e = load::certificate_chain(&text).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    assert!(e.to_string().contains("text.pem"), "{e}");

    // A certificate where a key is expected.
    let e = load::private_key(&fx("server.pem"), None).unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    assert!(e.to_string().contains("server.pem"), "{e}");

    // A trust file without a certificate.
    let e = load::trust_file(&text).unwrap_err();
    assert!(matches!(e, TlsError::Trust { .. }), "{e:?}");

    // Valid base64, but not a certificate.
    let junk = write(
        &dir,
        "junk.pem",
        b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let e = certified_key(&junk, Some(&fx("server_key.pem")), None).unwrap_err();
    assert!(e.to_string().contains("junk.pem"), "{e}");
    let e = server_config(&SslConfig {
        certificate: fx("server.pem"),
        key: Some(fx("server_key.pem")),
        password_function: None,
        authenticate: Authenticate::File(junk),
    })
    .unwrap_err();
    assert!(e.to_string().contains("junk.pem"), "{e}");
}

#[test]
fn key_mismatch_names_both_files() {
    // (ZEO's client.pem and server.pem share one key, so use one of ours.)
    let e = certified_key(&fx("server.pem"), Some(&fx("cli_key.pem")), None).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("cli_key.pem") && msg.contains("server.pem"),
        "{msg}"
    );
    // Mismatched algorithms (EC certificate, RSA key) are refused too.
    let e = certified_key(&fx("srv.pem"), Some(&fx("cli_key.pem")), None).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
}

#[test]
fn encrypted_key_is_refused_clearly() {
    let mut cfg = ssl(
        "serverpw.pem",
        Some("serverpw_key.pem"),
        Authenticate::File(fx("client.pem")),
    );
    cfg.password_function = Some("ZEO.tests.testssl.pwfunc".into());
    let e = server_config(&cfg).unwrap_err();
    assert!(matches!(e, TlsError::EncryptedKey { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("serverpw_key.pem") && msg.contains("encrypted"),
        "{msg}"
    );
    assert!(msg.contains("ZEO.tests.testssl.pwfunc"), "{msg}");
}

#[test]
fn dynamic_is_not_supported() {
    let e = server_config(&ssl(
        "server.pem",
        Some("server_key.pem"),
        Authenticate::Dynamic,
    ))
    .unwrap_err();
    assert!(matches!(e, TlsError::Dynamic));
    assert!(e.to_string().contains("DYNAMIC"));
}

#[test]
fn trust_directory() {
    let trust = load::trust_dir(&fx("cadir")).unwrap();
    assert_eq!(
        trust.certs.len(),
        1,
        "only the hashed CA file, README skipped"
    );
    assert_eq!(
        trust.certs[0].0.as_ref(),
        load::trust_file(&fx("ca.pem")).unwrap().certs[0].0.as_ref()
    );
    server_config(&ssl(
        "srv.pem",
        Some("srv_key.pem"),
        Authenticate::Dir(fx("cadir")),
    ))
    .unwrap();

    let empty = tempfile::tempdir().unwrap();
    write(&empty, "notes.txt", b"x");
    let e = load::trust_dir(empty.path()).unwrap_err();
    assert!(e.to_string().contains("no certificate found"), "{e}");

    // *.pem and *.crt files are read, duplicates (hash links) counted once.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fx("ca.pem"), dir.path().join("ca.pem")).unwrap();
    std::fs::copy(fx("ca.pem"), dir.path().join("3cb51633.0")).unwrap();
    std::fs::copy(fx("client.pem"), dir.path().join("client.crt")).unwrap();
    std::fs::copy(fx("ca_crl.pem"), dir.path().join("3cb51633.r0")).unwrap();
    let trust = load::trust_dir(dir.path()).unwrap();
    assert_eq!(trust.certs.len(), 2);
    assert_eq!(trust.crls.len(), 1, "hashed CRL file read");
    // With a CRL, only webpki verification remains (no pinning).
    let v = client_verifier(&trust, dir.path()).unwrap();
    assert!(v.pinned.is_empty() && v.webpki.is_some());
}

#[test]
fn trust_file_with_several_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = std::fs::read(fx("ca.pem")).unwrap();
    all.extend(std::fs::read(fx("client.pem")).unwrap());
    all.extend(std::fs::read(fx("ca.pem")).unwrap());
    let p = write(&dir, "clients.pem", &all);
    let trust = load::trust_file(&p).unwrap();
    assert_eq!(trust.certs.len(), 2, "duplicate counted once");
    let v = client_verifier(&trust, &p).unwrap();
    assert!(v.webpki.is_some());
    assert!(v.pinned.contains(&trust.certs[1].0));
}

#[test]
fn pinned_validity_period() {
    let trust = load::trust_file(&fx("client.pem")).unwrap();
    let v = client_verifier(&trust, &fx("client.pem")).unwrap();
    let der = &trust.certs[0].0;
    use rustls::server::danger::ClientCertVerifier;
    // client.pem: notBefore 2019-04-26, notAfter 3004-12-18.
    assert!(v.verify_client_cert(der, &[], at(1_700_000_000)).is_ok());
    let e = v
        .verify_client_cert(der, &[], at(1_500_000_000))
        .unwrap_err();
    assert_eq!(
        e,
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
    );
    let e = v
        .verify_client_cert(der, &[], at(33_000_000_000))
        .unwrap_err();
    assert_eq!(
        e,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
    );
    // A certificate not in the list is refused with webpki's reason.
    let stranger = load::trust_file(&fx("stranger.pem")).unwrap().certs[0]
        .0
        .clone();
    assert!(v
        .verify_client_cert(&stranger, &[], at(1_700_000_000))
        .is_err());
}

#[test]
fn x509_reader_on_fixtures() {
    let server = &load::trust_file(&fx("server.pem")).unwrap().certs[0].0;
    let info = x509::parse(server).unwrap();
    assert_eq!(info.common_names, vec!["zodb.org".to_string()]);
    assert!(info.dns_names.is_empty());
    assert_eq!(info.not_before, 1_556_269_296); // 2019-04-26 09:01:36 UTC
    assert!(names_match(
        &info,
        &ServerName::try_from("zodb.org").unwrap()
    ));
    assert!(!names_match(
        &info,
        &ServerName::try_from("example.org").unwrap()
    ));
    assert!(!names_match(
        &info,
        &ServerName::try_from("127.0.0.1").unwrap()
    ));

    let srv = &load::trust_file(&fx("srv.pem")).unwrap().certs[0].0;
    let info = x509::parse(srv).unwrap();
    assert_eq!(info.dns_names, vec!["localhost".to_string()]);
    assert_eq!(
        info.ip_addresses,
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(names_match(
        &info,
        &ServerName::try_from("localhost").unwrap()
    ));
    assert!(names_match(
        &info,
        &ServerName::try_from("127.0.0.1").unwrap()
    ));
    assert!(!names_match(&info, &ServerName::try_from("::1").unwrap()));
}

/// xorshift64*, fixed seed: deterministic "random" bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn x509_reader_survives_mutations() {
    let mut seeds = Vec::new();
    for f in ["server.pem", "client.pem", "srv.pem", "cli.pem", "ca.pem"] {
        seeds.push(load::trust_file(&fx(f)).unwrap().certs[0].0.to_vec());
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for i in 0..6000 {
        let mut buf = seeds[i % seeds.len()].clone();
        match i % 4 {
            0 => {
                let cut = rng.below(buf.len());
                buf.truncate(cut);
            }
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(buf.len());
                    buf[at] = rng.next() as u8;
                }
            }
            2 => {
                // Length bytes near the front are the interesting ones.
                let at = rng.below(buf.len().min(64));
                buf[at] = [0x80, 0x84, 0xff, 0x00, 0x7f][rng.below(5)];
            }
            _ => {
                let n = rng.below(300);
                buf = (0..n).map(|_| rng.next() as u8).collect();
            }
        }
        if x509::parse(&buf).is_some() {
            parsed += 1;
        }
        let _ = load::has_encrypted_key(&buf);
        use rustls::pki_types::pem::PemObject;
        let _ = <(rustls::pki_types::pem::SectionKind, Vec<u8>)>::pem_slice_iter(&buf).count();
    }
    assert!(parsed > 0, "some mutations keep a parsable certificate");
}

#[test]
fn listener_tls_follows_the_ssl_section() {
    let text = "<zeo>\n address 127.0.0.1:0\n</zeo>\n<mappingstorage 1>\n</mappingstorage>\n";
    let host = crate::config::RealHost;
    let cfg = crate::config::parse_str(text, Path::new("plain.conf"), &host).unwrap();
    assert!(listener_tls(&cfg.zeo).unwrap().is_none());
    let text = format!(
        "<zeo>\n address 127.0.0.1:0\n <ssl>\n  certificate {}\n  key {}\n  \
         authenticate {}\n </ssl>\n</zeo>\n<mappingstorage 1>\n</mappingstorage>\n",
        fx("server.pem").display(),
        fx("server_key.pem").display(),
        fx("client.pem").display()
    );
    let cfg = crate::config::parse_str(&text, Path::new("tls.conf"), &host).unwrap();
    assert!(listener_tls(&cfg.zeo).unwrap().is_some());
}
