//! Fast hashing for the trace tools' in-memory maps, and an oid interner.
//!
//! The maps are keyed by values from the trace (oids, tids, offsets). A multiplicative
//! hash is fine here: the worst an adversarial trace can do is slow the tool down, and
//! the tools are run by the operator on their own traces. Iteration order of these
//! maps never reaches the output (outputs are sorted or summed).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiply-rotate hasher (the FxHash scheme).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut a = [0u8; 8];
            a[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(a));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(K);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown uses the top 7 bits and the low bits.
        self.0.rotate_left(20)
    }
}

/// A `HashMap` with the fast hasher.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Dense ids for oids: 8-byte oids (all real ones) take a fast path; any other length
/// is kept as bytes, so distinct byte strings stay distinct exactly as Python's dict
/// keys do.
#[derive(Default)]
pub struct OidInterner {
    /// Ids of the small oids (ZODB allocates oids from 0 upwards), by value.
    dense: Vec<u32>,
    by_u64: FastMap<u64, u32>,
    other: FastMap<Vec<u8>, u32>,
    count: u32,
}

/// Oids below this use the direct table (at most 16 MiB of it).
const DENSE_LIMIT: u64 = 1 << 22;
const UNSET: u32 = u32::MAX;

impl OidInterner {
    /// The id of `oid`, assigning the next one if new.
    pub fn intern(&mut self, oid: &[u8]) -> u32 {
        let next = self.count;
        let id = match <[u8; 8]>::try_from(oid) {
            Ok(a) if self.dense_ok(u64::from_be_bytes(a)) => {
                let v = u64::from_be_bytes(a);
                let i = v as usize;
                if i >= self.dense.len() {
                    let grown = (i + 1).max(self.dense.len() * 2).min(DENSE_LIMIT as usize);
                    self.dense.resize(grown, UNSET);
                }
                if self.dense[i] == UNSET {
                    // Seen before the table reached it? Then keep its id.
                    self.dense[i] = self.by_u64.get(&v).copied().unwrap_or(next);
                }
                self.dense[i]
            }
            Ok(a) => *self.by_u64.entry(u64::from_be_bytes(a)).or_insert(next),
            Err(_) => match self.other.get(oid) {
                Some(&id) => id,
                None => {
                    self.other.insert(oid.to_vec(), next);
                    next
                }
            },
        };
        if id == next {
            self.count += 1;
        }
        id
    }

    /// Whether `v` goes to the direct table: below the limit and near the part of
    /// the table already in use, so scattered garbage oids cannot make it huge.
    fn dense_ok(&self, v: u64) -> bool {
        v < DENSE_LIMIT && v < (self.dense.len() as u64) * 2 + 65_536
    }

    /// Number of distinct oids seen.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_distinguishes_lengths() {
        let mut i = OidInterner::default();
        let a = i.intern(&[0; 8]);
        let b = i.intern(&[0; 7]);
        let c = i.intern(&[0; 8]);
        let big = i.intern(&u64::MAX.to_be_bytes());
        // An oid first seen far beyond the table keeps its id once the table grows.
        let far = i.intern(&3_000_000u64.to_be_bytes());
        for v in 0..3_000_001u64 {
            if v % 65_536 == 0 {
                i.intern(&v.to_be_bytes());
            }
        }
        assert_eq!(i.intern(&3_000_000u64.to_be_bytes()), far);
        assert_eq!(i.intern(&u64::MAX.to_be_bytes()), big);
        assert_eq!(i.intern(&7u64.to_be_bytes()), i.intern(&7u64.to_be_bytes()));
        let d = i.intern(b"");
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_ne!(b, d);
        assert!(i.len() > 5);
    }
}
