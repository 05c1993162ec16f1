//! Trace writer: encodes records exactly as ZEO's `ClientCache._trace` does
//! (`>IiH8s8s` + oid), for tests and for `zeo trace --generate`.
//!
//! Invariants: a written record always parses back to the same fields with
//! `record::parse`; the writer refuses what Python's `struct.pack` refuses (a data length
//! of 2^23 or more, an oid longer than 65535 bytes, a zero timestamp) instead of
//! writing bytes no reader would understand.

use std::io::{self, Write};

use super::record::{HEAD_SIZE, MAX_DLEN};

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// `dlen << 8` does not fit the signed 32-bit word.
    DataTooLong(u64),
    /// The oid length does not fit 16 bits.
    OidTooLong(usize),
    /// A zero timestamp marks misaligned data; a real record never has one.
    ZeroTimestamp,
    /// The code byte uses bit 7 or bit 0, which the writer never sets.
    BadCode(u8),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::DataTooLong(n) => write!(
                f,
                "data length {n} does not fit a trace record (maximum {MAX_DLEN})"
            ),
            EncodeError::OidTooLong(n) => write!(f, "oid of {n} bytes is longer than 65535"),
            EncodeError::ZeroTimestamp => write!(f, "a record cannot have timestamp 0"),
            EncodeError::BadCode(c) => write!(f, "code {c:#04x} sets bit 0 or bit 7"),
        }
    }
}

/// Encode one record into `buf` (appending).
pub fn encode(
    buf: &mut Vec<u8>,
    ts: u32,
    code: u8,
    oid: &[u8],
    tid1: u64,
    tid2: u64,
    dlen: u64,
) -> Result<(), EncodeError> {
    if ts == 0 {
        return Err(EncodeError::ZeroTimestamp);
    }
    if code & 0x81 != 0 {
        return Err(EncodeError::BadCode(code));
    }
    if dlen > u64::from(MAX_DLEN) {
        return Err(EncodeError::DataTooLong(dlen));
    }
    let oidlen = u16::try_from(oid.len()).map_err(|_| EncodeError::OidTooLong(oid.len()))?;
    let word = ((dlen as u32) << 8) | u32::from(code);
    buf.reserve(HEAD_SIZE + oid.len());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&word.to_be_bytes());
    buf.extend_from_slice(&oidlen.to_be_bytes());
    buf.extend_from_slice(&tid1.to_be_bytes());
    buf.extend_from_slice(&tid2.to_be_bytes());
    buf.extend_from_slice(oid);
    Ok(())
}

/// A buffered trace writer over any `Write`.
pub struct TraceWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    written: u64,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W) -> Self {
        TraceWriter {
            out,
            buf: Vec::with_capacity(64 * 1024),
            written: 0,
        }
    }

    /// Append one record; `oid` is an 8-byte big-endian oid.
    pub fn record(
        &mut self,
        ts: u32,
        code: u8,
        oid: u64,
        tid1: u64,
        tid2: u64,
        dlen: u64,
    ) -> io::Result<()> {
        self.record_raw(ts, code, &oid.to_be_bytes(), tid1, tid2, dlen)
    }

    /// Append one record with arbitrary oid bytes.
    pub fn record_raw(
        &mut self,
        ts: u32,
        code: u8,
        oid: &[u8],
        tid1: u64,
        tid2: u64,
        dlen: u64,
    ) -> io::Result<()> {
        encode(&mut self.buf, ts, code, oid, tid1, tid2, dlen)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.maybe_flush()
    }

    /// The restart record a client writes when it opens its cache.
    pub fn restart(&mut self, ts: u32) -> io::Result<()> {
        self.record_raw(ts, 0x00, b"", 0, 0, 0)
    }

    /// Raw bytes (e.g. the zeros a crash leaves behind, which readers skip 8 at a time).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= 60 * 1024 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Bytes handed to the writer so far.
    pub fn bytes_written(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// Flush everything and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_buf()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{parse, Parsed};
    use super::*;

    #[test]
    fn round_trips() {
        let mut w = TraceWriter::new(Vec::new());
        w.restart(10).unwrap();
        w.record(11, 0x52, 3, 7, 0, 134).unwrap();
        let b = w.finish().unwrap();
        assert_eq!(b.len(), 26 + 34);
        let Parsed::Record(r) = parse(&b[26..]) else {
            panic!("not a record")
        };
        assert_eq!(
            (r.ts, r.code(), r.oid_u64(), r.tid1, r.dlen()),
            (11, 0x52, Some(3), 7, 134)
        );
    }

    #[test]
    fn refuses_what_python_cannot_pack() {
        let mut b = Vec::new();
        assert_eq!(
            encode(&mut b, 1, 0x52, b"", 0, 0, 1 << 23),
            Err(EncodeError::DataTooLong(1 << 23))
        );
        assert_eq!(
            encode(&mut b, 0, 0x52, b"", 0, 0, 1),
            Err(EncodeError::ZeroTimestamp)
        );
        assert_eq!(
            encode(&mut b, 1, 0x53, b"", 0, 0, 1),
            Err(EncodeError::BadCode(0x53))
        );
        assert!(b.is_empty());
    }
}
