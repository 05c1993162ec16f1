//! The in-memory oid → position index and Python's `Data.fs.index` file format
//! (spec filestorage.md §5.2).
//!
//! Memory layout: a map from the 6-byte oid prefix to a vector of `u64` entries
//! `(suffix << 48) | position`, sorted by suffix — 8 bytes per object, like the
//! buckets of Python's fsIndex but without per-object allocation. Sequential oids
//! append at the end of their bucket. Invariant: positions are < 2^48 (the index
//! file format caps them there); suffixes within a bucket are strictly increasing.
//!
//! The index file is a stream of protocol-3 pickles written without memo opcodes:
//! the end position (an int), one `(prefix, bucket bytes)` tuple per prefix in
//! ascending order, then `None`. The reader is a tiny pure unpickler that accepts
//! only those shapes and never panics; anything else makes the file unusable (the
//! caller then scans the data file, as Python does).

use std::collections::BTreeMap;

use crate::storage::tid::Oid;

const POS_MASK: u64 = (1 << 48) - 1;
/// Largest position the index (and its file format) can hold.
pub const MAX_POS: u64 = POS_MASK;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    buckets: BTreeMap<u64, Vec<u64>>,
    len: u64,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, oid: Oid) -> Option<u64> {
        let b = self.buckets.get(&(oid.0 >> 16))?;
        let suffix = oid.0 & 0xffff;
        b.binary_search_by_key(&suffix, |e| e >> 48)
            .ok()
            .map(|i| b[i] & POS_MASK)
    }

    /// Set the position of `oid`. `pos` must be < 2^48 (checked by callers that take
    /// positions from outside; here it is masked defensively).
    pub fn insert(&mut self, oid: Oid, pos: u64) {
        debug_assert!(pos <= POS_MASK);
        let suffix = oid.0 & 0xffff;
        let entry = (suffix << 48) | (pos & POS_MASK);
        let b = self.buckets.entry(oid.0 >> 16).or_default();
        match b.last() {
            Some(&last) if (last >> 48) < suffix => {
                b.push(entry);
                self.len += 1;
            }
            None => {
                b.push(entry);
                self.len += 1;
            }
            _ => match b.binary_search_by_key(&suffix, |e| e >> 48) {
                Ok(i) => b[i] = entry,
                Err(i) => {
                    b.insert(i, entry);
                    self.len += 1;
                }
            },
        }
    }

    /// Largest oid in the index.
    pub fn max_oid(&self) -> Option<Oid> {
        let (prefix, b) = self.buckets.iter().next_back()?;
        let last = b.last()?;
        Some(Oid((prefix << 16) | (last >> 48)))
    }

    /// Release spare vector capacity (after a bulk load).
    pub fn shrink(&mut self) {
        for b in self.buckets.values_mut() {
            b.shrink_to_fit();
        }
    }

    /// Bytes used by the entries (not counting map nodes).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.values().map(|b| b.capacity() * 8 + 48).sum()
    }

    /// All `(oid, position)` pairs in oid order starting at `from`.
    pub fn iter_from(&self, from: Oid) -> impl Iterator<Item = (Oid, u64)> + '_ {
        let start_prefix = from.0 >> 16;
        self.buckets
            .range(start_prefix..)
            .flat_map(move |(&prefix, b)| {
                b.iter().filter_map(move |&e| {
                    let oid = Oid((prefix << 16) | (e >> 48));
                    (oid >= from).then_some((oid, e & POS_MASK))
                })
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = (Oid, u64)> + '_ {
        self.iter_from(Oid(0))
    }

    /// Python's `Data.fs.index` bytes for this index, valid for end position `pos`.
    pub fn to_file_bytes(&self, pos: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.len as usize * 8 + self.buckets.len() * 24);
        out.extend_from_slice(&[0x80, 3]);
        pickle_int(&mut out, pos);
        out.push(b'.');
        for (&prefix, b) in &self.buckets {
            if b.is_empty() {
                continue;
            }
            out.extend_from_slice(&[0x80, 3, b'C', 6]);
            out.extend_from_slice(&prefix.to_be_bytes()[2..]);
            let n = b.len() * 8;
            if n < 256 {
                out.push(b'C');
                out.push(n as u8);
            } else {
                out.push(b'B');
                out.extend_from_slice(&(n as u32).to_le_bytes());
            }
            for e in b {
                out.extend_from_slice(&((e >> 48) as u16).to_be_bytes());
            }
            for e in b {
                out.extend_from_slice(&(e & POS_MASK).to_be_bytes()[2..]);
            }
            out.extend_from_slice(&[0x86, b'.']);
        }
        out.extend_from_slice(&[0x80, 3, b'N', b'.']);
        out
    }

    /// Parse an index file; returns the index and the end position it is valid for.
    pub fn from_file_bytes(buf: &[u8]) -> Result<(Index, u64), String> {
        let mut r = Reader { buf, off: 0 };
        r.proto()?;
        let pos = r.int()?;
        r.stop()?;
        let mut index = Index::new();
        let mut last_prefix: Option<u64> = None;
        loop {
            r.proto()?;
            match r.peek()? {
                b'N' => {
                    r.off += 1;
                    r.stop()?;
                    break;
                }
                _ => {
                    let prefix = r.bytes()?;
                    if prefix.len() != 6 {
                        return Err(format!(
                            "index key of {} bytes at offset {}, expected 6",
                            prefix.len(),
                            r.off
                        ));
                    }
                    let prefix = crate::storage::filestorage::format::be_u64(prefix);
                    let data = r.bytes()?;
                    if r.byte()? != 0x86 {
                        return Err(format!("expected TUPLE2 at offset {}", r.off - 1));
                    }
                    r.stop()?;
                    if last_prefix.is_some_and(|p| p >= prefix) {
                        return Err(format!("index prefixes not ascending at offset {}", r.off));
                    }
                    last_prefix = Some(prefix);
                    if data.len() % 8 != 0 {
                        return Err(format!(
                            "index bucket of {} bytes is not a multiple of 8",
                            data.len()
                        ));
                    }
                    let n = data.len() / 8;
                    let (keys, vals) = data.split_at(n * 2);
                    let mut v = Vec::with_capacity(n);
                    let mut next_min: u64 = 0;
                    for (k, p) in keys.chunks_exact(2).zip(vals.chunks_exact(6)) {
                        let s = u16::from_be_bytes([k[0], k[1]]) as u64;
                        if s < next_min {
                            return Err("index bucket keys are not sorted".into());
                        }
                        next_min = s + 1;
                        let pos = u64::from_be_bytes([0, 0, p[0], p[1], p[2], p[3], p[4], p[5]]);
                        v.push((s << 48) | pos);
                    }
                    index.len += n as u64;
                    if !v.is_empty() {
                        index.buckets.insert(prefix, v);
                    }
                }
            }
        }
        if r.off != buf.len() {
            return Err(format!(
                "{} trailing bytes after the index",
                buf.len() - r.off
            ));
        }
        Ok((index, pos))
    }
}

/// Pickle a non-negative int the way Python's pickler does at protocol 3.
fn pickle_int(out: &mut Vec<u8>, v: u64) {
    if v <= 0xff {
        out.extend_from_slice(&[b'K', v as u8]);
    } else if v <= 0xffff {
        out.push(b'M');
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v < 0x8000_0000 {
        out.push(b'J');
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        // LONG1: little-endian two's complement, minimal length.
        let mut bytes = v.to_le_bytes().to_vec();
        while bytes.len() > 1 && bytes[bytes.len() - 1] == 0 && bytes[bytes.len() - 2] & 0x80 == 0 {
            bytes.pop();
        }
        if bytes[bytes.len() - 1] & 0x80 != 0 {
            bytes.push(0);
        }
        out.push(0x8a);
        out.push(bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.off)
            .ok_or_else(|| format!("index file ends early at offset {}", self.off))?;
        self.off += 1;
        Ok(b)
    }
    fn peek(&mut self) -> Result<u8, String> {
        self.buf
            .get(self.off)
            .copied()
            .ok_or_else(|| format!("index file ends early at offset {}", self.off))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .off
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("index file ends early at offset {}", self.off))?;
        let s = &self.buf[self.off..end];
        self.off = end;
        Ok(s)
    }
    /// Skip memo-put opcodes a non-fast pickler might have written.
    fn skip_memo(&mut self) -> Result<(), String> {
        loop {
            match self.peek()? {
                b'q' => {
                    self.take(2)?;
                }
                b'r' => {
                    self.take(5)?;
                }
                _ => return Ok(()),
            }
        }
    }
    fn proto(&mut self) -> Result<(), String> {
        if self.byte()? != 0x80 {
            return Err(format!("expected PROTO at offset {}", self.off - 1));
        }
        let p = self.byte()?;
        if !(2..=4).contains(&p) {
            return Err(format!("unsupported pickle protocol {p}"));
        }
        Ok(())
    }
    fn stop(&mut self) -> Result<(), String> {
        self.skip_memo()?;
        if self.byte()? != b'.' {
            return Err(format!("expected STOP at offset {}", self.off - 1));
        }
        Ok(())
    }
    fn int(&mut self) -> Result<u64, String> {
        let v = match self.byte()? {
            b'K' => self.byte()? as u64,
            b'M' => {
                let b = self.take(2)?;
                u16::from_le_bytes([b[0], b[1]]) as u64
            }
            b'J' => {
                let b = self.take(4)?;
                let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                u64::try_from(v).map_err(|_| "negative index position".to_string())?
            }
            0x8a => {
                let n = self.byte()? as usize;
                let b = self.take(n)?;
                if n == 0 || b[n - 1] & 0x80 != 0 {
                    return Err("index position is not a positive int".into());
                }
                let mut v: u64 = 0;
                for (i, &x) in b.iter().enumerate() {
                    if x != 0 {
                        if i >= 8 {
                            return Err("index position too large".into());
                        }
                        v |= (x as u64) << (8 * i);
                    }
                }
                v
            }
            op => return Err(format!("expected an int, found opcode {op:#04x}")),
        };
        Ok(v)
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let s = match self.byte()? {
            b'C' => {
                let n = self.byte()? as usize;
                self.take(n)?
            }
            b'B' => {
                let b = self.take(4)?;
                let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                self.take(n)?
            }
            op => {
                return Err(format!(
                    "expected bytes, found opcode {op:#04x} at offset {}",
                    self.off - 1
                ))
            }
        };
        self.skip_memo()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_iterate() {
        let mut ix = Index::new();
        for i in (0..70_000u64).rev() {
            ix.insert(Oid(i), i * 3);
        }
        ix.insert(Oid(5), 1);
        assert_eq!(ix.len(), 70_000);
        assert_eq!(ix.get(Oid(5)), Some(1));
        assert_eq!(ix.get(Oid(69_999)), Some(69_999 * 3));
        assert_eq!(ix.get(Oid(70_000)), None);
        assert_eq!(ix.max_oid(), Some(Oid(69_999)));
        let v: Vec<_> = ix.iter_from(Oid(65_535)).take(2).collect();
        assert_eq!(
            v,
            vec![(Oid(65_535), 65_535 * 3), (Oid(65_536), 65_536 * 3)]
        );
    }

    #[test]
    fn empty_index_file_bytes() {
        let ix = Index::new();
        assert_eq!(
            ix.to_file_bytes(4),
            vec![0x80, 3, 0x4b, 4, 0x2e, 0x80, 3, 0x4e, 0x2e]
        );
        assert_eq!(
            Index::from_file_bytes(&ix.to_file_bytes(4)).unwrap(),
            (ix, 4)
        );
    }

    #[test]
    fn ints_round_trip() {
        for v in [
            0u64,
            255,
            256,
            65535,
            65536,
            0x7fff_ffff,
            0x8000_0000,
            1 << 40,
            MAX_POS,
        ] {
            let mut ix = Index::new();
            ix.insert(Oid(1), 4);
            let b = ix.to_file_bytes(v);
            assert_eq!(Index::from_file_bytes(&b).unwrap().1, v);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(Index::from_file_bytes(b"").is_err());
        assert!(Index::from_file_bytes(b"\x80\x03K\x04.").is_err());
        assert!(Index::from_file_bytes(b"\x80\x03K\x04.\x80\x03N.junk").is_err());
    }
}
