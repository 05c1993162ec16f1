//! Undo ids: the opaque ids `undoLog` hands out and `undo` takes. Both engines use
//! FileStorage's form, base64 of the 8-byte tid without the trailing newline (Python's
//! `base64.encodebytes(tid)[:-1]`, e.g. `A/j4sRqqqqo=`), so clients cannot tell the
//! engines apart.

use super::tid::Tid;

/// The undo id of a transaction.
pub fn tid_to_undo_id(tid: Tid) -> Vec<u8> {
    b64encode(&tid.to_bytes())
}

/// The tid an undo id names; `None` unless it is base64 of exactly 8 bytes.
pub fn undo_id_to_tid(id: &[u8]) -> Option<Tid> {
    b64decode(id).and_then(|b| Tid::from_slice(&b))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Python's `base64.encodebytes` minus the newline).
pub fn b64encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if ch.len() > 1 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if ch.len() > 2 {
            B64[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

/// Decode standard base64 (whitespace ignored); None on invalid input.
pub fn b64decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    let mut pad = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        bits = (bits << 6) | v as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python() {
        // base64.encodebytes(bytes.fromhex('03f8f8b11aaaaaaa')).rstrip(b'\n')
        assert_eq!(
            tid_to_undo_id(Tid(0x03f8f8b11aaaaaaa)),
            b"A/j4sRqqqqo=".to_vec()
        );
        assert_eq!(
            undo_id_to_tid(b"A/j4sRqqqqo="),
            Some(Tid(0x03f8f8b11aaaaaaa))
        );
        assert_eq!(undo_id_to_tid(b"not base64!"), None);
        assert_eq!(undo_id_to_tid(b"A/j4*"), None);
        assert_eq!(undo_id_to_tid(b"AAAA"), None, "3 bytes is not a tid");
        assert_eq!(b64decode(&b64encode(b"ab")).unwrap(), b"ab".to_vec());
    }
}
