//! Certificate verifiers that behave like OpenSSL does for ZEO: webpki chain
//! verification first, then acceptance of a certificate the administrator listed
//! directly in the trust file ("pinned"), which is how ZEO's self-signed client and
//! server certificates are trusted.
//!
//! Invariants: a pinned certificate is accepted only when the presented end-entity
//! certificate is byte-for-byte identical to one in the trust list and `now` lies in its
//! validity period (and, for a server, its names match when host names are checked);
//! possession of its private key is still proven by the handshake signature, which is
//! always verified. Pinning is off when CRLs were loaded (OpenSSL would then demand a
//! CRL from the self-signed certificate itself and refuse it).

use super::x509::{self, CertInfo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// Certificates trusted as themselves, with what was read from them.
#[derive(Debug, Default)]
pub struct PinnedCerts {
    entries: Vec<(CertificateDer<'static>, CertInfo)>,
}

impl PinnedCerts {
    /// Pin every certificate of the list that our reader can follow (the others can
    /// still serve as webpki trust anchors).
    pub fn new(certs: &[(CertificateDer<'static>, PathBuf)]) -> Self {
        let entries = certs
            .iter()
            .filter_map(|(der, _)| x509::parse(der).map(|info| (der.clone(), info)))
            .collect();
        PinnedCerts { entries }
    }

    /// Whether `der` is pinned.
    pub fn contains(&self, der: &CertificateDer<'_>) -> bool {
        self.find(der).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pinned certificate identical to `der`, if any.
    fn find(&self, der: &CertificateDer<'_>) -> Option<&CertInfo> {
        self.entries
            .iter()
            .find(|(c, _)| c.as_ref() == der.as_ref())
            .map(|(_, info)| info)
    }

    /// Ok when `der` is pinned and valid at `now`; `Err(None)` when not pinned.
    fn check(&self, der: &CertificateDer<'_>, now: UnixTime) -> Result<&CertInfo, Option<Error>> {
        let info = self.find(der).ok_or(None)?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < info.not_before {
            return Err(Some(Error::InvalidCertificate(
                CertificateError::NotValidYet,
            )));
        }
        if now > info.not_after {
            return Err(Some(Error::InvalidCertificate(CertificateError::Expired)));
        }
        Ok(info)
    }
}

/// Whether `info` names `server_name`: subjectAltName DNS names (or IP addresses for an
/// IP server name); a DNS name falls back to the subject common name when the
/// certificate has no DNS subjectAltName, as Python's `ssl` does.
pub fn names_match(info: &CertInfo, server_name: &ServerName<'_>) -> bool {
    match server_name {
        ServerName::DnsName(name) => {
            let host = name.as_ref();
            if info.dns_names.is_empty() {
                info.common_names
                    .iter()
                    .any(|cn| x509::dns_name_matches(cn, host))
            } else {
                info.dns_names
                    .iter()
                    .any(|n| x509::dns_name_matches(n, host))
            }
        }
        ServerName::IpAddress(ip) => {
            let ip = std::net::IpAddr::from(*ip);
            info.ip_addresses.contains(&ip)
        }
        _ => false,
    }
}

/// The error for a certificate that is neither verified nor pinned. webpki refuses a
/// self-signed CA certificate presented as an end entity with a generic error (alert
/// `certificate_unknown`); OpenSSL calls any untrusted self-signed certificate an unknown
/// issuer (alert `unknown_ca`), and so do we, so peers see the same alert.
fn untrusted(end_entity: &CertificateDer<'_>, webpki_err: Error) -> Error {
    let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
    match webpki_err {
        Error::InvalidCertificate(CertificateError::Other(_) | CertificateError::BadEncoding)
            if x509::parse(end_entity).is_some_and(|i| i.self_issued) =>
        {
            unknown
        }
        other => other,
    }
}

fn algorithms(provider: &CryptoProvider) -> WebPkiSupportedAlgorithms {
    provider.signature_verification_algorithms
}

/// The server's client-certificate verifier: always demands a certificate.
#[derive(Debug)]
pub struct ClientAuth {
    /// webpki verification against the trust list; `None` when no certificate of the
    /// list is usable as a webpki trust anchor.
    pub webpki: Option<Arc<dyn ClientCertVerifier>>,
    pub pinned: PinnedCerts,
    pub algs: WebPkiSupportedAlgorithms,
}

impl ClientAuth {
    pub fn new(
        webpki: Option<Arc<dyn ClientCertVerifier>>,
        pinned: PinnedCerts,
        provider: &CryptoProvider,
    ) -> Self {
        ClientAuth {
            webpki,
            pinned,
            algs: algorithms(provider),
        }
    }
}

impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Like OpenSSL with only a CA file loaded: no list of acceptable CAs is sent,
        // so clients offer their certificate whatever it was issued by.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let webpki_err = match &self.webpki {
            Some(v) => match v.verify_client_cert(end_entity, intermediates, now) {
                Ok(ok) => return Ok(ok),
                Err(e) => e,
            },
            None => Error::InvalidCertificate(CertificateError::UnknownIssuer),
        };
        match self.pinned.check(end_entity, now) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(Some(e)) => Err(e),
            Err(None) => Err(untrusted(end_entity, webpki_err)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The tools' server-certificate verifier.
#[derive(Debug)]
pub struct ServerAuth {
    pub webpki: Option<Arc<dyn ServerCertVerifier>>,
    pub pinned: PinnedCerts,
    pub check_hostname: bool,
    pub algs: WebPkiSupportedAlgorithms,
}

fn is_name_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for ServerAuth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let webpki_err = match &self.webpki {
            Some(v) => {
                match v.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Ok(ok) => return Ok(ok),
                    // webpki checks the chain before the name: the chain is good.
                    Err(e) if is_name_error(&e) && !self.check_hostname => {
                        return Ok(ServerCertVerified::assertion())
                    }
                    Err(e) => e,
                }
            }
            None => Error::InvalidCertificate(CertificateError::UnknownIssuer),
        };
        match self.pinned.check(end_entity, now) {
            Ok(info) if !self.check_hostname || names_match(info, server_name) => {
                Ok(ServerCertVerified::assertion())
            }
            Ok(_) => Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
            Err(Some(e)) => Err(e),
            Err(None) => Err(untrusted(end_entity, webpki_err)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
