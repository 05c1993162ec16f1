//! Byte layout of Data.fs (spec filestorage.md §2): the file magic, the 23-byte
//! transaction header, the 42-byte data record header, and the checks readers apply.
//!
//! Everything here is a pure function over byte buffers. Invariants: decoding never
//! panics and never allocates from a length field; all length arithmetic on values read
//! from the file is checked (`None`/`Err` instead of overflow).

use crate::storage::tid::{Oid, Tid};

/// The 4-byte magic at offset 0 (protocol-3 pickles, Python 3 ZODB).
pub const MAGIC: &[u8; 4] = b"FS30";
/// Length of the fixed part of a transaction header (`>8sQcHHH`).
pub const TXN_HEADER_LEN: u64 = 23;
/// Length of a data record header (`>8s8sQQHQ`).
pub const DATA_HEADER_LEN: u64 = 42;
/// Status of a transaction written by vote but not yet finished.
pub const STATUS_CHECKPOINT: u8 = b'c';
/// Legacy "undone" status; records are skipped by readers.
pub const STATUS_UNDONE: u8 = b'u';

/// The fixed part of a transaction record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnHeader {
    pub tid: Tid,
    /// Record length excluding the trailing 8-byte copy.
    pub tlen: u64,
    pub status: u8,
    pub ulen: u16,
    pub dlen: u16,
    pub elen: u16,
}

impl TxnHeader {
    /// Decode from at least 23 bytes; `None` if the buffer is short.
    pub fn decode(b: &[u8]) -> Option<TxnHeader> {
        let b = b.get(..TXN_HEADER_LEN as usize)?;
        Some(TxnHeader {
            tid: Tid(be_u64(&b[0..8])),
            tlen: be_u64(&b[8..16]),
            status: b[16],
            ulen: be_u16(&b[17..19]),
            dlen: be_u16(&b[19..21]),
            elen: be_u16(&b[21..23]),
        })
    }

    pub fn encode(&self) -> [u8; 23] {
        let mut out = [0u8; 23];
        out[0..8].copy_from_slice(&self.tid.to_bytes());
        out[8..16].copy_from_slice(&self.tlen.to_be_bytes());
        out[16] = self.status;
        out[17..19].copy_from_slice(&self.ulen.to_be_bytes());
        out[19..21].copy_from_slice(&self.dlen.to_be_bytes());
        out[21..23].copy_from_slice(&self.elen.to_be_bytes());
        out
    }

    /// Header length including user, description and extension.
    pub fn header_len(&self) -> u64 {
        TXN_HEADER_LEN + self.ulen as u64 + self.dlen as u64 + self.elen as u64
    }

    /// Position just past the trailing length copy, if it does not overflow.
    pub fn end(&self, pos: u64) -> Option<u64> {
        pos.checked_add(self.tlen)?.checked_add(8)
    }
}

/// A data record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub oid: Oid,
    pub tid: Tid,
    pub prev: u64,
    pub tloc: u64,
    pub vlen: u16,
    pub plen: u64,
}

impl DataHeader {
    pub fn decode(b: &[u8]) -> Option<DataHeader> {
        let b = b.get(..DATA_HEADER_LEN as usize)?;
        Some(DataHeader {
            oid: Oid(be_u64(&b[0..8])),
            tid: Tid(be_u64(&b[8..16])),
            prev: be_u64(&b[16..24]),
            tloc: be_u64(&b[24..32]),
            vlen: be_u16(&b[32..34]),
            plen: be_u64(&b[34..42]),
        })
    }

    pub fn encode(&self) -> [u8; 42] {
        let mut out = [0u8; 42];
        out[0..8].copy_from_slice(&self.oid.to_bytes());
        out[8..16].copy_from_slice(&self.tid.to_bytes());
        out[16..24].copy_from_slice(&self.prev.to_be_bytes());
        out[24..32].copy_from_slice(&self.tloc.to_be_bytes());
        out[32..34].copy_from_slice(&self.vlen.to_be_bytes());
        out[34..42].copy_from_slice(&self.plen.to_be_bytes());
        out
    }

    /// Size of the whole record: 42 + plen, or 50 for a backpointer record.
    pub fn record_len(&self) -> Option<u64> {
        if self.plen == 0 {
            Some(DATA_HEADER_LEN + 8)
        } else {
            DATA_HEADER_LEN.checked_add(self.plen)
        }
    }
}

/// Append a data record with inline data to `out`.
pub fn encode_data_record(out: &mut Vec<u8>, h: &DataHeader, data: &[u8]) {
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(data);
}

/// Append a backpointer record (plen 0) to `out`.
pub fn encode_backpointer_record(out: &mut Vec<u8>, h: &DataHeader, back: u64) {
    let mut h = *h;
    h.plen = 0;
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(&back.to_be_bytes());
}

pub fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[8 - n..].copy_from_slice(&b[b.len() - n..]);
    u64::from_be_bytes(a)
}

pub fn be_u16(b: &[u8]) -> u16 {
    match b {
        [x, y, ..] => u16::from_be_bytes([*x, *y]),
        _ => 0,
    }
}

/// One data record parsed out of a complete transaction buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    /// Absolute position of the record.
    pub pos: u64,
    pub header: DataHeader,
    /// Offset of the data (or backpointer) inside the transaction buffer.
    pub body_off: usize,
    /// Backpointer when plen == 0.
    pub back: Option<u64>,
}

/// A complete transaction record parsed from a buffer holding exactly
/// `tlen + 8` bytes starting at absolute position `pos`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedTxn {
    pub pos: u64,
    pub header: TxnHeader,
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    pub extension: Vec<u8>,
    pub records: Vec<ParsedRecord>,
}

/// Why a transaction buffer is not a valid record (message for the user; the caller
/// adds file name and offset).
pub type FormatError = (u64, String);

/// Parse and check a whole transaction buffer (integrity rules §2.8 items 2–5).
/// `buf` must start at the header and have length `tlen + 8`.
pub fn parse_txn(buf: &[u8], pos: u64) -> Result<ParsedTxn, FormatError> {
    let h = TxnHeader::decode(buf).ok_or((pos, "short transaction header".to_string()))?;
    let tlen_usize =
        usize::try_from(h.tlen).map_err(|_| (pos, "transaction too long".to_string()))?;
    if buf.len() != tlen_usize.saturating_add(8) {
        return Err((
            pos,
            format!(
                "transaction buffer holds {} bytes, expected tlen {} + 8",
                buf.len(),
                h.tlen
            ),
        ));
    }
    let hl = h.header_len();
    if h.tlen < hl {
        return Err((
            pos,
            format!(
                "invalid transaction header: tlen {} shorter than header length {hl}",
                h.tlen
            ),
        ));
    }
    let trailer = be_u64(&buf[tlen_usize..]);
    if trailer != h.tlen {
        return Err((
            pos.saturating_add(h.tlen),
            format!("redundant transaction length {trailer} differs from tlen {} of the transaction at {pos}", h.tlen),
        ));
    }
    let u0 = TXN_HEADER_LEN as usize;
    let u1 = u0 + h.ulen as usize;
    let d1 = u1 + h.dlen as usize;
    let e1 = d1 + h.elen as usize;
    let mut txn = ParsedTxn {
        pos,
        header: h,
        user: buf[u0..u1].to_vec(),
        description: buf[u1..d1].to_vec(),
        extension: buf[d1..e1].to_vec(),
        records: Vec::new(),
    };
    if h.status == STATUS_UNDONE {
        return Ok(txn);
    }
    let mut off = e1;
    while off < tlen_usize {
        let rpos = pos + off as u64;
        let dh = DataHeader::decode(&buf[off..tlen_usize]).ok_or((
            rpos,
            "data record header crosses the end of its transaction".to_string(),
        ))?;
        let rlen = dh
            .record_len()
            .ok_or((rpos, "data record length overflows".to_string()))?;
        let rend = (off as u64)
            .checked_add(rlen)
            .filter(|&e| e <= h.tlen)
            .ok_or((
                rpos,
                format!(
                    "data record (plen {}) exceeds the transaction record ending at {}",
                    dh.plen,
                    pos + h.tlen
                ),
            ))?;
        check_record(&dh, rpos, pos)?;
        let body_off = off + DATA_HEADER_LEN as usize;
        let back = if dh.plen == 0 {
            let b = be_u64(&buf[body_off..body_off + 8]);
            if b >= rpos {
                return Err((
                    rpos,
                    format!("backpointer {b} does not point before the record"),
                ));
            }
            Some(b)
        } else {
            None
        };
        txn.records.push(ParsedRecord {
            pos: rpos,
            header: dh,
            body_off,
            back,
        });
        off = rend as usize;
    }
    Ok(txn)
}

/// Per-record rules: tloc equals the transaction position, prev points backwards,
/// no version.
pub fn check_record(dh: &DataHeader, rpos: u64, tpos: u64) -> Result<(), FormatError> {
    if dh.tloc != tpos {
        return Err((
            rpos,
            format!(
                "data record's transaction pointer {} is not the transaction position {tpos}",
                dh.tloc
            ),
        ));
    }
    if dh.vlen != 0 {
        return Err((
            rpos,
            format!(
                "data record has a version (vlen {}); versions are not supported",
                dh.vlen
            ),
        ));
    }
    if dh.prev >= rpos {
        return Err((
            rpos,
            format!(
                "previous-record pointer {} does not point before the record",
                dh.prev
            ),
        ));
    }
    Ok(())
}

/// `(module, name)` of the class pickle at the start of a record's data, as
/// `ZODB.utils.get_pickle_metadata` finds it: skip `\x80\x03`, then GLOBAL (`c`) or
/// MARK GLOBAL (`(c`), two newline-terminated strings.
pub fn class_name(data: &[u8]) -> Option<String> {
    let mut d = data;
    if d.starts_with(&[0x80]) {
        d = d.get(2..)?;
    }
    if d.starts_with(b"(c") {
        d = &d[2..];
    } else if d.starts_with(b"c") {
        d = &d[1..];
    } else {
        return None;
    }
    let nl = d.iter().position(|&b| b == b'\n')?;
    let module = std::str::from_utf8(&d[..nl]).ok()?;
    let rest = &d[nl + 1..];
    let nl2 = rest.iter().position(|&b| b == b'\n')?;
    let name = std::str::from_utf8(&rest[..nl2]).ok()?;
    Some(format!("{module}.{name}"))
}

/// Encode a whole transaction record (header with `status`, metadata, the
/// pre-encoded data records, trailing length).
pub fn encode_txn(
    tid: Tid,
    status: u8,
    user: &[u8],
    desc: &[u8],
    ext: &[u8],
    records: &[u8],
) -> Vec<u8> {
    let hl = TXN_HEADER_LEN as usize + user.len() + desc.len() + ext.len();
    let tlen = (hl + records.len()) as u64;
    let h = TxnHeader {
        tid,
        tlen,
        status,
        ulen: user.len() as u16,
        dlen: desc.len() as u16,
        elen: ext.len() as u16,
    };
    let mut out = Vec::with_capacity(hl + records.len() + 8);
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(user);
    out.extend_from_slice(desc);
    out.extend_from_slice(ext);
    out.extend_from_slice(records);
    out.extend_from_slice(&tlen.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = TxnHeader {
            tid: Tid(0x03f8f8b009999999),
            tlen: 154,
            status: b' ',
            ulen: 0,
            dlen: 25,
            elen: 0,
        };
        assert_eq!(TxnHeader::decode(&h.encode()), Some(h));
        assert_eq!(h.header_len(), 48);
        let d = DataHeader {
            oid: Oid(1),
            tid: Tid(2),
            prev: 3,
            tloc: 4,
            vlen: 0,
            plen: 64,
        };
        assert_eq!(DataHeader::decode(&d.encode()), Some(d));
        assert_eq!(d.record_len(), Some(106));
        assert_eq!(DataHeader { plen: 0, ..d }.record_len(), Some(50));
        assert_eq!(TxnHeader::decode(&[0u8; 22]), None);
    }

    #[test]
    fn class_names() {
        assert_eq!(
            class_name(b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.").as_deref(),
            Some("persistent.mapping.PersistentMapping")
        );
        assert_eq!(
            class_name(b"\x80\x03(cfoo\nBar\nq").as_deref(),
            Some("foo.Bar")
        );
        assert_eq!(class_name(b"\x80\x03}q"), None);
        assert_eq!(class_name(b""), None);
        assert_eq!(class_name(b"\x80"), None);
    }

    #[test]
    fn parse_txn_checks_trailer_and_records() {
        let mut recs = Vec::new();
        let dh = DataHeader {
            oid: Oid(0),
            tid: Tid(7),
            prev: 0,
            tloc: 4,
            vlen: 0,
            plen: 3,
        };
        encode_data_record(&mut recs, &dh, b"abc");
        let buf = encode_txn(Tid(7), b' ', b"u", b"d", b"", &recs);
        let t = parse_txn(&buf, 4).unwrap();
        assert_eq!(t.records.len(), 1);
        assert_eq!(t.records[0].pos, 4 + 25);
        let mut bad = buf.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(parse_txn(&bad, 4).is_err());
        // Wrong tloc.
        assert!(parse_txn(&buf, 5).is_err());
    }
}
