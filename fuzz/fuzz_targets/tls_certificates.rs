//! Fuzz the X.509 reader behind pinned-certificate checks (it also sees certificates
//! presented by peers, to tell self-signed ones apart) and the PEM splitting of
//! certificate, key and trust files. Any panic is a bug.
//!
//! Run: `cargo +nightly fuzz run tls_certificates` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zeo::server::tls::{load, x509};

fuzz_target!(|data: &[u8]| {
    if let Some(info) = x509::parse(data) {
        assert!(info.common_names.len() <= data.len());
    }
    let _ = load::has_encrypted_key(data);
    if let Ok(sections) = load::sections(data, std::path::Path::new("fuzz.pem")) {
        for (_, der) in sections {
            let _ = x509::parse(&der);
        }
    }
});
