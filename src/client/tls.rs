//! TLS for the tools (`zeo pack`, `zeo up`, ...): a `rustls::ClientConfig` built like a
//! ZEO `<clientstorage>` `<ssl>` section builds Python's client context.
//!
//! `authenticate` names a CA file or certificate directory (default: the system CAs);
//! `certificate`/`key` give an optional client certificate (a ZEO server always asks for
//! one); the host name is checked by default against `server_hostname` or the host of
//! the address. A server certificate is accepted when webpki verifies its chain (and
//! name), or when it is, byte for byte, one of the `authenticate` certificates, currently
//! valid, and (with host name checking) names the host in its subjectAltName or, having
//! no DNS subjectAltName, in its common name: that is how ZEO's self-signed test
//! certificates work with Python's `ssl`.
//! Invariants: only the `ring` provider; errors name the file and the problem.

use crate::server::tls::{self as stls, load, PinnedCerts, ServerAuth, TlsError};
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use std::path::PathBuf;
use std::sync::Arc;

/// The TLS options of a client, as in ZEO's `<clientstorage>` `<ssl>` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// CA file or certificate directory to trust; `None` = the system CAs.
    pub authenticate: Option<PathBuf>,
    /// Client certificate (chain) to present.
    pub certificate: Option<PathBuf>,
    /// Its private key; `None` = in the certificate file.
    pub key: Option<PathBuf>,
    /// Check the server's host name (default true).
    pub check_hostname: bool,
    /// The host name to check instead of the address's host.
    pub server_hostname: Option<String>,
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls {
            authenticate: None,
            certificate: None,
            key: None,
            check_hostname: true,
            server_hostname: None,
        }
    }
}

/// Build the client configuration.
pub fn client_config(opts: &ClientTls) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = stls::provider();
    let trust = match &opts.authenticate {
        Some(p) => load::trust_path(p)?,
        None => load::system_roots()?,
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(trust.certs.iter().map(|(c, _)| c.clone()));
    let webpki = if roots.is_empty() {
        None
    } else {
        let mut builder =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if !trust.crls.is_empty() {
            builder = builder
                .with_crls(trust.crls.iter().cloned())
                .only_check_end_entity_revocation();
        }
        Some(builder.build().map_err(|e| TlsError::Trust {
            path: opts.authenticate.clone().unwrap_or_default(),
            problem: format!("cannot build the server certificate verifier: {e}"),
        })?)
    };
    // Pin only what the administrator named: never the whole system bundle.
    let pinned = match (&opts.authenticate, trust.crls.is_empty()) {
        (Some(_), true) => PinnedCerts::new(&trust.certs),
        _ => PinnedCerts::default(),
    };
    if webpki.is_none() && pinned.is_empty() {
        return Err(TlsError::Trust {
            path: opts.authenticate.clone().unwrap_or_default(),
            problem: "no usable certificate to trust".into(),
        });
    }
    let verifier = ServerAuth {
        webpki: webpki.map(|v| v as Arc<dyn rustls::client::danger::ServerCertVerifier>),
        pinned,
        check_hostname: opts.check_hostname,
        algs: provider.signature_verification_algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Other(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &opts.certificate {
        Some(cert) => {
            let (chain, key) = stls::certified_key(cert, opts.key.as_deref(), None)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Certificate {
                    path: opts.key.clone().unwrap_or_else(|| cert.clone()),
                    problem: format!("certificate and key refused: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The host part of a `host:port` address (`[v6]:port` without brackets).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// What `client::Options::tls` takes for a server at `address` (`host:port`): the
/// configuration and the name to verify (`server_hostname`, else the address's host).
pub fn options_tls(
    opts: &ClientTls,
    address: &str,
) -> Result<(Arc<rustls::ClientConfig>, String), TlsError> {
    let name = opts
        .server_hostname
        .clone()
        .unwrap_or_else(|| host_of(address).to_string());
    rustls::pki_types::ServerName::try_from(name.as_str())
        .map_err(|e| TlsError::Other(format!("cannot use {name:?} as the TLS server name: {e}")))?;
    Ok((client_config(opts)?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("zodb.org:8100"), "zodb.org");
        assert_eq!(host_of("[::1]:8100"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
