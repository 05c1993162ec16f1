//! A minimal, read-only X.509 DER reader: just what the pinned-certificate checks of
//! `verify` need (validity period, subject common names, subjectAltName DNS names and
//! IP addresses, whether issuer and subject are the same name).
//!
//! It reads certificates the administrator listed in a trust file, and a peer's
//! untrusted certificate only to phrase a refusal (self-issued or not). It never decides
//! whether a chain is valid: signatures, chains and key usage are webpki's job.
//! Invariants: a pure function over a buffer; never panics (every length is checked
//! against the bytes that remain, long-form lengths are limited to 4 bytes, no
//! allocation is sized from a length field); anything it does not understand makes it
//! return `None`. Fuzzed by fuzz/fuzz_targets/tls_certificates.rs.

use std::net::IpAddr;

/// The facts read from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// `notBefore` in seconds since the Unix epoch.
    pub not_before: i64,
    /// `notAfter` in seconds since the Unix epoch.
    pub not_after: i64,
    /// Subject common names (OID 2.5.4.3), in certificate order.
    pub common_names: Vec<String>,
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub ip_addresses: Vec<IpAddr>,
    /// Issuer and subject names are identical (a self-issued, typically self-signed,
    /// certificate).
    pub self_issued: bool,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: tag, content, and the bytes after it. `None` on malformed input.
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur in the parts we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        (usize::try_from(len).ok()?, rest)
    };
    if len > rest.len() {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// The element at the front of `buf`, which must have tag `want`.
fn expect(buf: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = tlv(buf)?;
    (tag == want).then_some((content, rest))
}

/// Parse the certificate `der`; `None` if it is not a certificate this reader follows.
pub fn parse(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if let Some((0xa0, _, after)) = tlv(rest) {
        rest = after;
    }
    let (_serial, rest) = expect(rest, 0x02)?;
    let (_sig_alg, rest) = expect(rest, SEQUENCE)?;
    let (issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (_spki, mut rest) = expect(rest, SEQUENCE)?;

    let (t1, c1, after) = tlv(validity)?;
    let (t2, c2, _) = tlv(after)?;
    let not_before = time(t1, c1)?;
    let not_after = time(t2, c2)?;

    let mut info = CertInfo {
        not_before,
        not_after,
        common_names: common_names(subject)?,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        self_issued: issuer == subject,
    };
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3]: all optional.
    while let Some((tag, content, after)) = tlv(rest) {
        if tag == 0xa3 {
            let (exts, _) = expect(content, SEQUENCE)?;
            read_extensions(exts, &mut info)?;
        }
        rest = after;
    }
    Some(info)
}

fn common_names(name: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rdns = name;
    while !rdns.is_empty() {
        let (set, after) = expect(rdns, SET)?;
        rdns = after;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, after) = expect(atvs, SEQUENCE)?;
            atvs = after;
            let (oid, value) = expect(atv, OID)?;
            if oid == OID_COMMON_NAME {
                let (tag, text, _) = tlv(value)?;
                // UTF8String, PrintableString, T61String, IA5String.
                if matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                    names.push(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    Some(names)
}

fn read_extensions(mut exts: &[u8], info: &mut CertInfo) -> Option<()> {
    while !exts.is_empty() {
        let (ext, after) = expect(exts, SEQUENCE)?;
        exts = after;
        let (oid, mut rest) = expect(ext, OID)?;
        if let Some((0x01, _, after)) = tlv(rest) {
            rest = after; // critical flag
        }
        let (value, _) = expect(rest, 0x04)?;
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        let (mut names, _) = expect(value, SEQUENCE)?;
        while !names.is_empty() {
            let (tag, content, after) = tlv(names)?;
            names = after;
            match tag {
                0x82 => info
                    .dns_names
                    .push(String::from_utf8_lossy(content).into_owned()),
                0x87 => {
                    if let Ok(v4) = <[u8; 4]>::try_from(content) {
                        info.ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(content) {
                        info.ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Some(())
}

/// UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`)
/// as seconds since the epoch.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(text.get(..2)?)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (digits(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 11 || rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `host` (a DNS name) matches the certificate pattern `pattern`: equal ignoring
/// ASCII case, or a `*` standing for exactly one whole left-most label (`*.example.com`
/// matches `a.example.com`, not `example.com` nor `a.b.example.com`).
pub fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let host = host.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        match host.split_once('.') {
            Some((label, rest)) => {
                !label.is_empty() && !suffix.contains('*') && rest.eq_ignore_ascii_case(suffix)
            }
            None => false,
        }
    } else {
        !pattern.contains('*') && pattern.eq_ignore_ascii_case(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(time(0x17, b"190426085809Z"), Some(1_556_269_089));
        assert_eq!(time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(
            time(0x18, b"30041218085809Z").map(|t| t > 32_000_000_000),
            Some(true)
        );
        assert_eq!(time(0x17, b"1904260858Z"), None);
        assert_eq!(time(0x17, b"191326085809Z"), None);
        assert_eq!(time(0x17, b"19042608580xZ"), None);
    }

    #[test]
    fn wildcards() {
        assert!(dns_name_matches("zodb.org", "ZODB.org"));
        assert!(dns_name_matches("*.zodb.org", "www.zodb.org"));
        assert!(!dns_name_matches("*.zodb.org", "zodb.org"));
        assert!(!dns_name_matches("*.zodb.org", "a.b.zodb.org"));
        assert!(!dns_name_matches("w*.zodb.org", "www.zodb.org"));
        assert!(!dns_name_matches("zodb.org", "example.org"));
    }

    #[test]
    fn truncated_lengths_are_refused() {
        assert_eq!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(tlv(&[0x30, 0x80]), None);
        assert_eq!(tlv(&[0x30, 0x02, 0x00]), None);
        assert_eq!(tlv(&[0x1f, 0x00]), None);
        assert_eq!(tlv(&[0x04, 0x00]), Some((0x04, &[][..], &[][..])));
        assert_eq!(parse(&[]), None);
    }
}
