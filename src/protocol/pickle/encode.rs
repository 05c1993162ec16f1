//! The protocol-3 pickle encoder, byte-compatible with zodbpickle's fast mode.

use crate::protocol::value::{Value, MAX_DEPTH};
use crate::protocol::ProtocolError;

/// Encode `v` as a protocol-3 pickle exactly as zodbpickle's fast-mode pickler does.
/// Encode a tuple given as borrowed items (the message envelope) without
/// building a `Value` for it first.
pub fn encode_tuple(items: &[&Value]) -> Result<Vec<u8>, ProtocolError> {
    // Capped: the hint over-estimates small ints, and a huge list may grow as it goes.
    let size = items
        .iter()
        .map(|v| size_hint(v, 2))
        .fold(0usize, usize::saturating_add)
        .min(1 << 24);
    let mut out = Vec::with_capacity(size + 8);
    out.extend_from_slice(&[0x80, 3]);
    match items.len() {
        0 => out.push(b')'),
        1..=3 => {
            for x in items {
                encode_into(x, &mut out, 2)?;
            }
            out.push(0x84 + items.len() as u8);
        }
        _ => {
            out.push(b'(');
            for x in items {
                encode_into(x, &mut out, 2)?;
            }
            out.push(b't');
        }
    }
    out.push(b'.');
    Ok(out)
}

/// About the encoded size of `v`, looking `levels` deep into sequences (so a reply
/// such as loadBefore's `(data, start, end)` gets one allocation of the right size).
fn size_hint(v: &Value, levels: u8) -> usize {
    match v {
        Value::Bytes(b) => b.len() + 5,
        Value::Str(s) => s.len() + 5,
        Value::Tuple(items) | Value::List(items) if levels > 0 => items
            .iter()
            .map(|x| size_hint(x, levels - 1))
            .fold(2usize, usize::saturating_add),
        _ => 16,
    }
}

pub fn encode(v: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, 3]);
    encode_into(v, &mut out, 1)?;
    out.push(b'.');
    Ok(out)
}

pub(super) fn encode_int(i: i128, out: &mut Vec<u8>) {
    if (0..=0xff).contains(&i) {
        out.push(b'K');
        out.push(i as u8);
    } else if (0..=0xffff).contains(&i) {
        out.push(b'M');
        out.extend_from_slice(&(i as u16).to_le_bytes());
    } else if i >= i32::MIN as i128 && i <= i32::MAX as i128 {
        out.push(b'J');
        out.extend_from_slice(&(i as i32).to_le_bytes());
    } else {
        // Minimal little-endian two's complement.
        let bytes = i.to_le_bytes();
        let mut n = 16;
        while n > 1 {
            let last = bytes[n - 1];
            let prev_sign = bytes[n - 2] & 0x80;
            if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
                n -= 1;
            } else {
                break;
            }
        }
        out.push(0x8a);
        out.push(n as u8);
        out.extend_from_slice(&bytes[..n]);
    }
}

fn encode_len32(op: u8, b: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let n = u32::try_from(b.len()).map_err(|_| {
        ProtocolError::bad("a value over 4 GiB cannot be sent with pickle protocol 3")
    })?;
    out.push(op);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn encode_items(xs: &[Value], out: &mut Vec<u8>, depth: usize) -> Result<(), ProtocolError> {
    for x in xs {
        encode_into(x, out, depth + 1)?;
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
        Value::None => out.push(b'N'),
        Value::Bool(true) => out.push(0x88),
        Value::Bool(false) => out.push(0x89),
        Value::Int(i) => encode_int(*i, out),
        Value::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => encode_len32(b'X', s.as_bytes(), out)?,
        Value::Bytes(b) if b.len() < 256 => {
            out.push(b'C');
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        Value::Bytes(b) => encode_len32(b'B', b, out)?,
        Value::Tuple(xs) => match xs.len() {
            0 => out.push(b')'),
            1..=3 => {
                encode_items(xs, out, depth)?;
                out.push(0x84 + xs.len() as u8);
            }
            _ => {
                out.push(b'(');
                encode_items(xs, out, depth)?;
                out.push(b't');
            }
        },
        Value::List(xs) => {
            out.push(b']');
            for batch in xs.chunks(1000) {
                if batch.len() == 1 {
                    encode_into(&batch[0], out, depth + 1)?;
                    out.push(b'a');
                } else {
                    out.push(b'(');
                    encode_items(batch, out, depth)?;
                    out.push(b'e');
                }
            }
        }
        Value::Dict(pairs) => {
            out.push(b'}');
            for batch in pairs.chunks(1000) {
                if batch.len() == 1 {
                    encode_into(&batch[0].0, out, depth + 1)?;
                    encode_into(&batch[0].1, out, depth + 1)?;
                    out.push(b's');
                } else {
                    out.push(b'(');
                    for (k, x) in batch {
                        encode_into(k, out, depth + 1)?;
                        encode_into(x, out, depth + 1)?;
                    }
                    out.push(b'u');
                }
            }
        }
        Value::Set(xs) | Value::FrozenSet(xs) => {
            let name = if matches!(v, Value::Set(_)) {
                "set"
            } else {
                "frozenset"
            };
            encode_global("builtins", name, out);
            encode_into(&Value::List(xs.clone()), out, depth + 1)?;
            out.push(0x85);
            out.push(b'R');
        }
        Value::Global { module, name } => encode_global(module, name, out),
        Value::Object {
            module,
            name,
            args,
            state,
        } => {
            encode_global(module, name, out);
            encode_into(&Value::Tuple(args.clone()), out, depth + 1)?;
            out.push(0x81);
            if let Some(s) = state {
                encode_into(s, out, depth + 1)?;
                out.push(b'b');
            }
        }
    }
    Ok(())
}

fn encode_global(module: &str, name: &str, out: &mut Vec<u8>) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}
