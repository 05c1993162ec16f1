//! The msgpack codec of ZEO's `M` encoding (spec zeo-protocol.md §4.2), with the
//! conventions of msgpack-python as ZEO configures it: `use_bin_type=True`
//! (bytes ↔ bin, str ↔ str), `raw=False`, `use_list=False` (every array decodes to
//! a tuple), no ext types; integers and containers in their smallest form, floats
//! as float 64.
//!
//! Invariants: decoding never panics; nesting is limited to [`MAX_DEPTH`]; a
//! declared array/map/string length is checked against the bytes remaining before
//! anything is allocated (each element needs at least one byte), so a "bomb" with a
//! huge declared length fails at once.

use super::value::{Value, MAX_DEPTH};
use super::ProtocolError;

/// Decode one complete msgpack object (the whole buffer).
pub fn decode(data: &[u8]) -> Result<Value, ProtocolError> {
    let mut d = Decoder { data, pos: 0 };
    let v = d.value(1)?;
    if d.pos != data.len() {
        return Err(ProtocolError::malformed(
            format!("msgpack: {} trailing bytes", data.len() - d.pos),
            d.pos,
        ));
    }
    Ok(v)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, what: impl Into<String>, at: usize) -> ProtocolError {
        ProtocolError::malformed(format!("msgpack: {}", what.into()), at)
    }

    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8], ProtocolError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(e) => {
                let s = &self.data[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(
                format!(
                    "truncated: {n} bytes needed, {} left",
                    self.data.len() - self.pos
                ),
                at,
            )),
        }
    }

    fn uint(&mut self, n: usize, at: usize) -> Result<u64, ProtocolError> {
        let b = self.take(n, at)?;
        Ok(b.iter().fold(0u64, |acc, &c| (acc << 8) | c as u64))
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn value(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels"), at));
        }
        let tag = self.take(1, at)?[0];
        Ok(match tag {
            0x00..=0x7f => Value::Int(tag as i128),
            0xe0..=0xff => Value::Int((tag as i8) as i128),
            0x80..=0x8f => return self.map((tag & 0x0f) as usize, depth, at),
            0x90..=0x9f => return self.array((tag & 0x0f) as usize, depth, at),
            0xa0..=0xbf => return self.string((tag & 0x1f) as usize, at),
            0xc0 => Value::None,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.uint(1 << (tag - 0xc4), at)? as usize;
                Value::Bytes(self.take(n, at)?.to_vec())
            }
            0xca => {
                let b = self.take(4, at)?;
                Value::Float(f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64)
            }
            0xcb => Value::Float(f64::from_bits(self.uint(8, at)?)),
            0xcc..=0xcf => Value::Int(self.uint(1 << (tag - 0xcc), at)? as i128),
            0xd0 => Value::Int(self.uint(1, at)? as u8 as i8 as i128),
            0xd1 => Value::Int(self.uint(2, at)? as u16 as i16 as i128),
            0xd2 => Value::Int(self.uint(4, at)? as u32 as i32 as i128),
            0xd3 => Value::Int(self.uint(8, at)? as i64 as i128),
            0xd9..=0xdb => {
                let n = self.uint(1 << (tag - 0xd9), at)? as usize;
                return self.string(n, at);
            }
            0xdc | 0xdd => {
                let n = self.uint(if tag == 0xdc { 2 } else { 4 }, at)? as usize;
                return self.array(n, depth, at);
            }
            0xde | 0xdf => {
                let n = self.uint(if tag == 0xde { 2 } else { 4 }, at)? as usize;
                return self.map(n, depth, at);
            }
            0xc1 => return Err(self.err("reserved type byte 0xc1", at)),
            0xc7..=0xc9 | 0xd4..=0xd8 => return Err(self.err("ext types are not used by ZEO", at)),
        })
    }

    fn string(&mut self, n: usize, at: usize) -> Result<Value, ProtocolError> {
        let b = self.take(n, at)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.to_string())),
            Err(_) => Err(self.err("str is not valid UTF-8", at)),
        }
    }

    fn array(&mut self, n: usize, depth: usize, at: usize) -> Result<Value, ProtocolError> {
        if n > self.remaining() {
            return Err(self.err(
                format!(
                    "array of {n} elements declared but only {} bytes left",
                    self.remaining()
                ),
                at,
            ));
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Tuple(items))
    }

    fn map(&mut self, n: usize, depth: usize, at: usize) -> Result<Value, ProtocolError> {
        if n.saturating_mul(2) > self.remaining() {
            return Err(self.err(
                format!(
                    "map of {n} entries declared but only {} bytes left",
                    self.remaining()
                ),
                at,
            ));
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Dict(pairs))
    }
}

/// Encode `v` as msgpack-python does with `use_bin_type=True`. Sets, globals and
/// objects have no msgpack form and are refused (the Python server answers such a
/// value with `ValueError("Couldn't pickle response")`).
/// Encode an array given as borrowed items (the message envelope).
pub fn encode_tuple(items: &[&Value]) -> Result<Vec<u8>, ProtocolError> {
    let size: usize = items
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => b.len() + 5,
            _ => 16,
        })
        .sum();
    let mut out = Vec::with_capacity(size + 4);
    encode_len(&mut out, items.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
    for x in items {
        encode_into(x, &mut out, 2)?;
    }
    Ok(out)
}

pub fn encode(v: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(64);
    encode_into(v, &mut out, 1)?;
    Ok(out)
}

fn encode_len(out: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, tags: [u8; 3]) {
    match fix {
        Some((base, max)) if n <= max => out.push(base | n as u8),
        _ if tags[0] != 0 && n <= 0xff => {
            out.push(tags[0]);
            out.push(n as u8);
        }
        _ if n <= 0xffff => {
            out.push(tags[1]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(tags[2]);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

fn check_len(n: usize) -> Result<(), ProtocolError> {
    if n > u32::MAX as usize {
        return Err(ProtocolError::bad(
            "a value over 4 GiB cannot be sent with msgpack",
        ));
    }
    Ok(())
}

fn encode_into(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::bad(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::None => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(i) => {
            let i = *i;
            if (0..=0x7f).contains(&i) {
                out.push(i as u8);
            } else if (-32..0).contains(&i) {
                out.push(i as i8 as u8);
            } else if (0..=0xff).contains(&i) {
                out.extend_from_slice(&[0xcc, i as u8]);
            } else if (0..=0xffff).contains(&i) {
                out.push(0xcd);
                out.extend_from_slice(&(i as u16).to_be_bytes());
            } else if (0..=0xffff_ffff).contains(&i) {
                out.push(0xce);
                out.extend_from_slice(&(i as u32).to_be_bytes());
            } else if (0..=u64::MAX as i128).contains(&i) {
                out.push(0xcf);
                out.extend_from_slice(&(i as u64).to_be_bytes());
            } else if i >= -128 {
                out.extend_from_slice(&[0xd0, i as i8 as u8]);
            } else if i >= -32768 {
                out.push(0xd1);
                out.extend_from_slice(&(i as i16).to_be_bytes());
            } else if i >= i32::MIN as i128 {
                out.push(0xd2);
                out.extend_from_slice(&(i as i32).to_be_bytes());
            } else if i >= i64::MIN as i128 {
                out.push(0xd3);
                out.extend_from_slice(&(i as i64).to_be_bytes());
            } else {
                return Err(ProtocolError::bad(format!(
                    "integer {i} does not fit in msgpack"
                )));
            }
        }
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => {
            check_len(s.len())?;
            encode_len(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            check_len(b.len())?;
            encode_len(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
            out.extend_from_slice(b);
        }
        Value::Tuple(xs) | Value::List(xs) => {
            check_len(xs.len())?;
            encode_len(out, xs.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
            for x in xs {
                encode_into(x, out, depth + 1)?;
            }
        }
        Value::Dict(pairs) => {
            check_len(pairs.len())?;
            encode_len(out, pairs.len(), Some((0x80, 15)), [0, 0xde, 0xdf]);
            for (k, x) in pairs {
                encode_into(k, out, depth + 1)?;
                encode_into(x, out, depth + 1)?;
            }
        }
        Value::Set(_) | Value::FrozenSet(_) | Value::Global { .. } | Value::Object { .. } => {
            return Err(ProtocolError::bad(format!(
                "a {} cannot be encoded in msgpack",
                v.type_name()
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_bytes() {
        let hb = [
            0x94, 0xff, 0x00, 0xa6, b'.', b'r', b'e', b'p', b'l', b'y', 0xc0,
        ];
        let v = decode(&hb).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Int(-1),
                Value::Int(0),
                Value::str(".reply"),
                Value::None
            ])
        );
        assert_eq!(encode(&v).unwrap(), hb);
    }

    #[test]
    fn int_forms() {
        for (i, want) in [
            (0i128, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0xcc, 0x80]),
            (-1, vec![0xff]),
            (-33, vec![0xd0, 0xdf]),
            (65536, vec![0xce, 0, 1, 0, 0]),
            (1 << 40, vec![0xcf, 0, 0, 1, 0, 0, 0, 0, 0]),
            (-(1 << 40), vec![0xd3, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0]),
        ] {
            assert_eq!(encode(&Value::Int(i)).unwrap(), want, "{i}");
            assert_eq!(decode(&want).unwrap(), Value::Int(i));
        }
    }

    #[test]
    fn bombs_fail_cleanly() {
        // array32 declaring 4 billion elements
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x00]).is_err());
        // map32 likewise
        assert!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
        // bin32 declaring 4 GB
        assert!(decode(&[0xc6, 0xff, 0xff, 0xff, 0xff]).is_err());
        // a million nested fixarrays of one element
        let deep = vec![0x91u8; 1_000_000];
        let e = decode(&deep).unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
        // ext types and the reserved byte
        assert!(decode(&[0xd4, 1, 2]).is_err());
        assert!(decode(&[0xc1]).is_err());
    }
}
