//! Reading PEM files: certificate chains, private keys, and trust lists (a file of
//! certificates and CRLs, an OpenSSL-style certificate directory, or the system's CA
//! bundle).
//!
//! Invariants: every error names the file and the problem; a file that should hold
//! certificates but holds none is an error, never an empty trust list; encrypted private
//! keys are recognised and refused with a message saying so (we cannot decrypt them).

use super::TlsError;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::path::{Path, PathBuf};

/// Certificates and CRLs to trust, with the file each certificate came from.
#[derive(Debug, Default, Clone)]
pub struct TrustList {
    pub certs: Vec<(CertificateDer<'static>, PathBuf)>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl TrustList {
    fn add(&mut self, other: TrustList) {
        for (cert, path) in other.certs {
            if !self.certs.iter().any(|(c, _)| *c == cert) {
                self.certs.push((cert, path));
            }
        }
        for crl in other.crls {
            if !self.crls.contains(&crl) {
                self.crls.push(crl);
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every PEM section of `bytes` whose type we know (certificates, keys, CRLs, ...).
pub fn sections(bytes: &[u8], path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })
}

/// Whether the PEM text holds an encrypted private key (PKCS#8 `ENCRYPTED PRIVATE KEY`
/// or a traditional OpenSSL key with `Proc-Type: 4,ENCRYPTED`).
pub fn has_encrypted_key(bytes: &[u8]) -> bool {
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

/// The certificate chain in `path` (leaf first, as in the file).
pub fn certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if !has_encrypted_key(&bytes) {
        let certs: Vec<_> = sections(&bytes, path)?
            .into_iter()
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| CertificateDer::from(der))
            .collect();
        if !certs.is_empty() {
            return Ok(certs);
        }
    } else {
        // The certificate part may still be readable; parse it leniently.
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
            .filter_map(Result::ok)
            .collect();
        if !certs.is_empty() {
            return Ok(certs);
        }
    }
    Err(TlsError::NoCertificate {
        path: path.to_path_buf(),
    })
}

/// The private key in `path`: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`). `password_function` is only used to phrase the error for an
/// encrypted key.
pub fn private_key(
    path: &Path,
    password_function: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    if has_encrypted_key(&bytes) {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
            password_function: password_function.map(str::to_string),
        });
    }
    for (kind, der) in sections(&bytes, path)? {
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::from(PrivatePkcs8KeyDer::from(der)),
            SectionKind::RsaPrivateKey => PrivateKeyDer::from(PrivatePkcs1KeyDer::from(der)),
            SectionKind::EcPrivateKey => PrivateKeyDer::from(PrivateSec1KeyDer::from(der)),
            _ => continue,
        };
        return Ok(key);
    }
    Err(TlsError::NoKey {
        path: path.to_path_buf(),
    })
}

/// The certificates and CRLs of one PEM file. `require_cert`: no certificate is an error.
fn trust_pem(path: &Path, require_cert: bool) -> Result<TrustList, TlsError> {
    let bytes = read(path)?;
    let mut list = TrustList::default();
    for (kind, der) in sections(&bytes, path)? {
        match kind {
            SectionKind::Certificate => {
                let cert = CertificateDer::from(der);
                if !list.certs.iter().any(|(c, _)| *c == cert) {
                    list.certs.push((cert, path.to_path_buf()));
                }
            }
            SectionKind::Crl => list.crls.push(CertificateRevocationListDer::from(der)),
            _ => {}
        }
    }
    if require_cert && list.certs.is_empty() {
        return Err(TlsError::Trust {
            path: path.to_path_buf(),
            problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(list)
}

/// The `authenticate` file: CA certificates and/or the certificates themselves of
/// clients to trust, plus optional CRLs (`-----BEGIN X509 CRL-----`).
pub fn trust_file(path: &Path) -> Result<TrustList, TlsError> {
    trust_pem(path, true)
}

/// Whether a directory entry is read as a certificate (`*.pem`, `*.crt`, `*.cer`, or an
/// OpenSSL hash name `xxxxxxxx.N`) or a CRL (`xxxxxxxx.rN`).
fn is_trust_file_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if [".pem", ".crt", ".cer"].iter().any(|s| lower.ends_with(s)) {
        return true;
    }
    match lower.split_once('.') {
        Some((hash, n)) => {
            let n = n.strip_prefix('r').unwrap_or(n);
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The `authenticate` directory: every `*.pem`, `*.crt`, `*.cer` and hashed
/// (`c_rehash`) file in it, not recursing. Files that hold no certificate or CRL are
/// skipped with a warning; a directory with no certificate at all is an error.
pub fn trust_dir(dir: &Path) -> Result<TrustList, TlsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| TlsError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_trust_file_name(&name) && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    let mut list = TrustList::default();
    for name in names {
        let path = dir.join(&name);
        let one = trust_pem(&path, false)?;
        if one.certs.is_empty() && one.crls.is_empty() {
            log::warn!(
                "{}: no certificate or CRL in this file; ignored",
                path.display()
            );
        }
        list.add(one);
    }
    if list.certs.is_empty() {
        return Err(TlsError::Trust {
            path: dir.to_path_buf(),
            problem: "no certificate found in the *.pem, *.crt, *.cer or hashed files of \
                      this directory"
                .into(),
        });
    }
    Ok(list)
}

/// A certificate file or directory, as `authenticate` names it.
pub fn trust_path(path: &Path) -> Result<TrustList, TlsError> {
    if path.is_dir() {
        trust_dir(path)
    } else {
        trust_file(path)
    }
}

/// Where OpenSSL-based programs commonly find the system CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's trusted CAs: `$SSL_CERT_FILE` and/or `$SSL_CERT_DIR` when set (as
/// OpenSSL honours them), else the first existing common bundle file.
pub fn system_roots() -> Result<TrustList, TlsError> {
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dir = std::env::var_os("SSL_CERT_DIR").map(PathBuf::from);
    if file.is_some() || dir.is_some() {
        let mut list = TrustList::default();
        if let Some(f) = file {
            list.add(trust_file(&f)?);
        }
        if let Some(d) = dir {
            list.add(trust_dir(&d)?);
        }
        return Ok(list);
    }
    for candidate in SYSTEM_BUNDLES {
        let path = Path::new(candidate);
        if path.is_file() {
            return trust_file(path);
        }
    }
    Err(TlsError::Trust {
        path: PathBuf::from(SYSTEM_BUNDLES[0]),
        problem: format!(
            "no system CA bundle found (looked for {}); set SSL_CERT_FILE or name a CA \
             file with the authenticate option",
            SYSTEM_BUNDLES.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_file_names() {
        for ok in [
            "ca.pem",
            "CA.PEM",
            "x.crt",
            "y.cer",
            "9d66eef0.0",
            "9d66eef0.12",
            "9d66eef0.r0",
        ] {
            assert!(is_trust_file_name(ok), "{ok}");
        }
        for no in [
            "README",
            "key.key",
            "9d66eef0",
            "9d66eef.0",
            "9d66eef0.x",
            "9d66eef0.r",
            "a.pem.bak",
        ] {
            assert!(!is_trust_file_name(no), "{no}");
        }
    }

    #[test]
    fn encrypted_markers() {
        assert!(has_encrypted_key(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        ));
        assert!(has_encrypted_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(!has_encrypted_key(b"-----BEGIN PRIVATE KEY-----\n"));
    }
}
