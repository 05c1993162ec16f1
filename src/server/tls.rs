//! TLS set-up from configuration: the server's `rustls::ServerConfig` built from an
//! `<ssl>` section (this file), the PEM loading shared with the tools' client side
//! (`load`), the certificate verifiers (`verify`) and the small X.509 reader they use
//! (`x509`).
//!
//! Behaviour follows runzeo's `ssl` context: the server presents `certificate` (with
//! `key`), always requires a client certificate, and trusts what `authenticate` names
//! (a PEM file or an OpenSSL certificate directory). A client certificate is accepted
//! when webpki verifies its chain to one of those certificates, or when it is itself,
//! byte for byte, one of those certificates and currently valid (see `verify`).
//! Invariants: only the `ring` provider is used; every error names the file involved
//! and what is wrong with it.

pub mod load;
pub mod verify;
pub mod x509;

use crate::config::{Authenticate, SslConfig};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use load::TrustList;
pub use verify::{ClientAuth, PinnedCerts, ServerAuth};

/// TLS configuration failures.
#[derive(Debug)]
pub enum TlsError {
    /// A file or directory could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    Pem { path: PathBuf, problem: String },
    /// A certificate file holds no certificate.
    NoCertificate { path: PathBuf },
    /// A key file holds no private key of a supported kind.
    NoKey { path: PathBuf },
    /// The private key is encrypted; we cannot decrypt keys.
    EncryptedKey {
        path: PathBuf,
        password_function: Option<String>,
    },
    /// The private key does not belong to the certificate.
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// rustls refused the certificate or key (unsupported algorithm, bad DER, ...).
    Certificate { path: PathBuf, problem: String },
    /// The trust list (`authenticate`, a CA file or directory) is unusable.
    Trust { path: PathBuf, problem: String },
    /// `authenticate DYNAMIC`.
    Dynamic,
    /// Something else, already phrased.
    Other(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsError::Pem { path, problem } => {
                write!(f, "{}: not a valid PEM file: {problem}", path.display())
            }
            TlsError::NoCertificate { path } => write!(
                f,
                "{}: no certificate found (expected a PEM -----BEGIN CERTIFICATE----- block)",
                path.display()
            ),
            TlsError::NoKey { path } => write!(
                f,
                "{}: no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block)",
                path.display()
            ),
            TlsError::EncryptedKey {
                path,
                password_function,
            } => {
                write!(
                    f,
                    "{}: the private key is encrypted, which zeo does not support",
                    path.display()
                )?;
                if let Some(func) = password_function {
                    write!(f, " (password-function {func} cannot be called)")?;
                }
                write!(
                    f,
                    "; decrypt it first, e.g. `openssl pkey -in {0} -out {0}.plain`, and \
                     protect the plain file with file permissions",
                    path.display()
                )
            }
            TlsError::KeyMismatch { certificate, key } => write!(
                f,
                "{}: the private key does not match the certificate in {}",
                key.display(),
                certificate.display()
            ),
            TlsError::Certificate { path, problem } => write!(f, "{}: {problem}", path.display()),
            TlsError::Trust { path, problem } => write!(f, "{}: {problem}", path.display()),
            TlsError::Dynamic => f.write_str(
                "<ssl> authenticate DYNAMIC is not supported by zeo serve: name a file of \
                 CA or client certificates, or a certificate directory",
            ),
            TlsError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for crate::Error {
    fn from(e: TlsError) -> Self {
        crate::Error::Other(format!("TLS: {e}"))
    }
}

/// The crypto provider every TLS configuration of `zeo` uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Load `certificate` (with the key from `key`, or from the certificate file when `key`
/// is `None`) into a certificate chain and private key, checking that they belong
/// together.
pub fn certified_key(
    certificate: &std::path::Path,
    key: Option<&std::path::Path>,
    password_function: Option<&str>,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    TlsError,
> {
    let chain = load::certificate_chain(certificate)?;
    let key_path = key.unwrap_or(certificate);
    let key = load::private_key(key_path, password_function)?;
    // Check now, so the error names both files (rustls checks again when building).
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Certificate {
            path: key_path.to_path_buf(),
            problem: format!("unusable private key: {e}"),
        })?;
    let ck = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                certificate: certificate.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        // The key cannot tell its public key; rustls decides when building.
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => {
            return Err(TlsError::Certificate {
                path: certificate.to_path_buf(),
                problem: format!("unusable certificate: {e}"),
            })
        }
    }
    Ok((chain, key))
}

/// The client-certificate verifier for a trust list: webpki against every certificate
/// usable as a trust anchor (with CRLs checked for the end entity when the list has
/// any), plus the listed certificates themselves (when no CRL was loaded).
pub fn client_verifier(trust: &TrustList, path: &std::path::Path) -> Result<ClientAuth, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    for (cert, _) in &trust.certs {
        anchors.push(roots.add(cert.clone()).is_ok());
    }
    let pinned = if trust.crls.is_empty() {
        PinnedCerts::new(&trust.certs)
    } else {
        PinnedCerts::default()
    };
    for ((cert, file), anchor) in trust.certs.iter().zip(&anchors) {
        if !anchor && !pinned.contains(cert) {
            return Err(TlsError::Trust {
                path: file.clone(),
                problem: "holds a certificate that cannot be used as a trust anchor (not a \
                          valid X.509 v3 certificate?)"
                    .into(),
            });
        }
    }
    let webpki = if roots.is_empty() {
        None
    } else {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if !trust.crls.is_empty() {
            builder = builder
                .with_crls(trust.crls.iter().cloned())
                .only_check_end_entity_revocation();
        }
        Some(builder.build().map_err(|e| TlsError::Trust {
            path: path.to_path_buf(),
            problem: format!("cannot build the client certificate verifier: {e}"),
        })?)
    };
    Ok(ClientAuth::new(webpki, pinned, &provider))
}

/// The server TLS configuration for an `<ssl>` section: presents `certificate`/`key`,
/// requires every client to present a certificate trusted through `authenticate`.
pub fn server_config(ssl: &SslConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = certified_key(
        &ssl.certificate,
        ssl.key.as_deref(),
        ssl.password_function.as_deref(),
    )?;
    let (trust, trust_path) = match &ssl.authenticate {
        Authenticate::File(p) => (load::trust_file(p)?, p),
        Authenticate::Dir(p) => (load::trust_dir(p)?, p),
        Authenticate::Dynamic => return Err(TlsError::Dynamic),
    };
    let verifier = client_verifier(&trust, trust_path)?;
    log::info!(
        "TLS: certificate {}; client certificates required, trusting {} certificate(s) \
         and {} CRL(s) from {}",
        ssl.certificate.display(),
        trust.certs.len(),
        trust.crls.len(),
        trust_path.display()
    );
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Other(format!("TLS protocol versions: {e}")))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Certificate {
            path: ssl.key.clone().unwrap_or_else(|| ssl.certificate.clone()),
            problem: format!("certificate and key refused: {e}"),
        })?;
    Ok(Arc::new(config))
}

/// The TLS configuration for `<zeo>`'s listener: `None` without an `<ssl>` section
/// (plain TCP), else [`server_config`] of it.
pub fn listener_tls(
    zeo: &crate::config::ZeoConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    zeo.ssl.as_ref().map(server_config).transpose()
}

#[cfg(test)]
mod tests;
