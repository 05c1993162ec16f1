//! The trace record layout (docs/cache-trace-format.md) and a pure parser over a byte
//! buffer.
//!
//! A record is a 26-byte big-endian head (`ts` u32, `word` i32, `oidlen` u16, `tid1`,
//! `tid2`) followed by `oidlen` oid bytes. `parse` never reads past the buffer and never
//! allocates: it returns how many more bytes it needs instead.

/// Size of the fixed record head.
pub const HEAD_SIZE: usize = 26;

/// How far the reader moves on after a head whose timestamp is zero (misaligned data),
/// when it re-synchronises like Python's seek-back.
pub const MISALIGNED_SKIP: usize = 8;

/// Mask of the event code in the word's low byte (drops the version bit and bit 0).
pub const CODE_MASK: u32 = 0x7e;

/// Version flag in the word's low byte.
pub const VERSION_FLAG: u32 = 0x80;

/// Largest data length the signed 32-bit word can carry.
pub const MAX_DLEN: u32 = (1 << 23) - 1;

/// One complete trace record, borrowing its oid from the buffer it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Seconds since the epoch (unsigned, as ZEO 6.2 reads it).
    pub ts: u32,
    /// The raw 32-bit word: `(dlen << 8) + code byte`.
    pub word: u32,
    /// "Start tid" slot.
    pub tid1: u64,
    /// "End tid" slot.
    pub tid2: u64,
    /// The oid bytes (8 for real records, empty for restarts).
    pub oid: &'a [u8],
}

impl Record<'_> {
    /// The data length field: `(word & 0x7fffff00) >> 8`.
    pub fn dlen(&self) -> u32 {
        (self.word & 0x7fff_ff00) >> 8
    }

    /// The raw low byte of the word (before masking).
    pub fn raw_code(&self) -> u8 {
        (self.word & 0xff) as u8
    }

    /// The event code masked with `0x7e`, as both Python tools use it.
    pub fn code(&self) -> u8 {
        (self.word & CODE_MASK) as u8
    }

    /// Whether the (obsolete) version flag is set.
    pub fn has_version(&self) -> bool {
        self.word & VERSION_FLAG != 0
    }

    /// Encoded length of this record.
    pub fn len(&self) -> usize {
        HEAD_SIZE + self.oid.len()
    }

    /// Never true: a record always has its 26-byte head.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The oid as an integer when it is exactly 8 bytes.
    pub fn oid_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.oid).ok().map(u64::from_be_bytes)
    }
}

/// Result of trying to parse one record at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete record of `Record::len()` bytes.
    Record(Record<'a>),
    /// A head with a zero timestamp: misaligned data; the oid is not read.
    ZeroTimestamp,
    /// The buffer ends inside the head or the oid: at least this many bytes are needed
    /// in total (from the start of the buffer).
    NeedMore(usize),
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// What the head at the start of a buffer says about its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Total record length (26 when fewer than 26 bytes are available to tell).
    Len(usize),
    /// A zero timestamp: misaligned data.
    ZeroTimestamp,
}

/// The length of the record at the start of `buf`, from its head alone.
pub fn peek_len(buf: &[u8]) -> Peek {
    if buf.len() < HEAD_SIZE {
        return Peek::Len(HEAD_SIZE);
    }
    if buf[..4] == [0, 0, 0, 0] {
        return Peek::ZeroTimestamp;
    }
    Peek::Len(HEAD_SIZE + usize::from(u16::from_be_bytes([buf[8], buf[9]])))
}

/// Parse the record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEAD_SIZE {
        return Parsed::NeedMore(HEAD_SIZE);
    }
    let ts = be_u32(buf, 0);
    if ts == 0 {
        return Parsed::ZeroTimestamp;
    }
    let word = be_u32(buf, 4);
    let oidlen = usize::from(u16::from_be_bytes([buf[8], buf[9]]));
    let total = HEAD_SIZE + oidlen;
    let Some(oid) = buf.get(HEAD_SIZE..total) else {
        return Parsed::NeedMore(total);
    };
    Parsed::Record(Record {
        ts,
        word,
        tid1: be_u64(buf, 10),
        tid2: be_u64(buf, 18),
        oid,
    })
}

/// The explanation `cache_stats` prints for a masked code, if it knows the code.
pub fn explain(code: u8) -> Option<&'static str> {
    Some(match code {
        0x00 => "_setup_trace (initialization)",
        0x10 => "invalidate (miss)",
        0x1a => "invalidate (hit, version)",
        0x1c => "invalidate (hit, saving non-current)",
        0x1e => "invalidate (hit, discarding current or non-current)",
        0x20 => "load (miss)",
        0x22 => "load (hit)",
        0x24 => "load (non-current, miss)",
        0x26 => "load (non-current, hit)",
        0x50 => "store (version)",
        0x52 => "store (current, non-version)",
        0x54 => "store (non-current)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ts: u32, word: u32, oidlen: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&word.to_be_bytes());
        v.extend_from_slice(&oidlen.to_be_bytes());
        v.extend_from_slice(&1u64.to_be_bytes());
        v.extend_from_slice(&2u64.to_be_bytes());
        v
    }

    #[test]
    fn parses_a_full_record() {
        let mut b = head(5, (134 << 8) | 0x52, 8);
        b.extend_from_slice(&7u64.to_be_bytes());
        let Parsed::Record(r) = parse(&b) else {
            panic!("not a record")
        };
        assert_eq!(
            (r.ts, r.dlen(), r.code(), r.tid1, r.tid2),
            (5, 134, 0x52, 1, 2)
        );
        assert_eq!(r.oid_u64(), Some(7));
        assert_eq!(r.len(), 34);
    }

    #[test]
    fn masks_code_and_version() {
        let b = head(5, 0x80 | 0x23, 0);
        let Parsed::Record(r) = parse(&b) else {
            panic!("not a record")
        };
        assert_eq!(r.code(), 0x22);
        assert!(r.has_version());
        assert_eq!(r.raw_code(), 0xa3);
        // Bit 31 is ignored by the dlen mask.
        let b = head(5, 0x8000_0100, 0);
        let Parsed::Record(r) = parse(&b) else {
            panic!("not a record")
        };
        assert_eq!(r.dlen(), 1);
    }

    #[test]
    fn short_input_needs_more() {
        assert_eq!(parse(&[1; 25]), Parsed::NeedMore(26));
        let b = head(5, 0x20, 8);
        assert_eq!(parse(&b), Parsed::NeedMore(34));
        assert_eq!(parse(&head(0, 0x20, 8)), Parsed::ZeroTimestamp);
    }

    #[test]
    fn explains_known_codes_only() {
        assert_eq!(explain(0x22), Some("load (hit)"));
        assert_eq!(explain(0x30), None);
    }
}
