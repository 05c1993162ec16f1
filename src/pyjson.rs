//! JSON as Python's `json` module reads and writes it: the `ruok` document (written by the
//! server, read by `zeo up --nagios`) and the rate status file shared with zeo-nagios.
//!
//! [`parse`] is a pure function over untrusted text (server reply, status file): it
//! never panics, nests at most [`MAX_DEPTH`] levels and keeps object keys in document
//! order (later duplicates replace earlier values in place, as a Python dict does). It
//! accepts what `json.loads` accepts, including `NaN`, `Infinity` and `-Infinity`.
//! [`dumps`] writes what `json.dumps(value)` writes with default arguments (separators
//! `", "` and `": "`, `ensure_ascii`), and [`float_repr`] is Python's `repr(float)`, so a
//! status file written by either program is byte-for-byte the same. [`write_str`] is
//! the one JSON string escaper of the crate (also used, without `ensure_ascii`, by
//! `config::json` for `--print-config`).

use std::fmt::Write as _;

/// Deepest nesting [`parse`] accepts (the status documents nest two levels).
pub const MAX_DEPTH: usize = 64;

/// A JSON value; objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Integers that fit in an i128 (Python's are unbounded; larger ones become floats).
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value under `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Set `key` of an object (replacing in place, or appending as a dict does).
    pub fn set(&mut self, key: &str, value: Json) {
        if let Json::Obj(fields) = self {
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => fields.push((key.to_string(), value)),
            }
        }
    }

    /// The value as a number, for rate arithmetic.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Int(i) => Some(*i as f64),
            Json::Float(f) => Some(*f),
            Json::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// Python's `str()` of the decoded value (what an f-string prints).
    pub fn py_str(&self) -> String {
        match self {
            Json::Str(s) => s.clone(),
            other => other.py_repr(),
        }
    }

    /// Python's `repr()` of the decoded value.
    pub fn py_repr(&self) -> String {
        match self {
            Json::Null => "None".into(),
            Json::Bool(true) => "True".into(),
            Json::Bool(false) => "False".into(),
            Json::Int(i) => i.to_string(),
            Json::Float(f) => float_repr(*f),
            Json::Str(s) => str_repr(s),
            Json::Arr(items) => {
                let inner: Vec<String> = items.iter().map(Json::py_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Json::Obj(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}: {}", str_repr(k), v.py_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}

/// Why a document is not JSON: what and at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub message: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Parse one JSON document (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("extra data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of JSON")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'n') if self.eat(b"null") => Ok(Json::Null),
            Some(b't') if self.eat(b"true") => Ok(Json::Bool(true)),
            Some(b'f') if self.eat(b"false") => Ok(Json::Bool(false)),
            Some(b'N') if self.eat(b"NaN") => Ok(Json::Float(f64::NAN)),
            Some(b'I') if self.eat(b"Infinity") => Ok(Json::Float(f64::INFINITY)),
            Some(b'-') if self.eat(b"-Infinity") => Ok(Json::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expecting a JSON value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut v = Json::Obj(Vec::new());
        self.ws();
        if self.eat(b"}") {
            return Ok(v);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expecting a property name in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return Err(self.err("expecting ':' delimiter"));
            }
            self.ws();
            let value = self.value(depth + 1)?;
            v.set(&key, value);
            self.ws();
            if self.eat(b"}") {
                return Ok(v);
            }
            if !self.eat(b",") {
                return Err(self.err("expecting ',' delimiter"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b"]") {
            return Ok(Json::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat(b"]") {
                return Ok(Json::Arr(items));
            }
            if !self.eat(b",") {
                return Err(self.err("expecting ',' delimiter"));
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid \\u escape"))?;
            v = v * 16 + n;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain characters up to the next quote or backslash.
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // `start..i` ends before an ASCII byte or at the end, so it is whole UTF-8.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default());
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xd800..0xdc00).contains(&c) && self.eat(b"\\u") {
                                let save = self.i;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save - 2;
                                }
                            }
                            // Lone surrogates (legal in Python strings) cannot be held
                            // in a Rust String: replace them.
                            out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid \\escape"));
                        }
                    }
                }
                Some(_) => return Err(self.err("invalid control character in string")),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        self.eat(b"-");
        let int_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("expecting a JSON value")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') && matches!(self.s.get(self.i + 1), Some(b'0'..=b'9')) {
            float = true;
            self.i += 1;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if matches!(self.peek(), Some(b'0'..=b'9')) {
                float = true;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            } else {
                self.i = save;
            }
        }
        debug_assert!(self.i > int_start);
        // The scanned bytes are ASCII digits, signs, '.', 'e'.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if !float {
            if let Ok(i) = text.parse::<i128>() {
                return Ok(Json::Int(i));
            }
        }
        text.parse::<f64>()
            .map(Json::Float)
            .map_err(|_| self.err("invalid number"))
    }
}

/// `json.dumps(value)` with Python's default arguments.
pub fn dumps(v: &Json) -> String {
    let mut out = String::new();
    dump_into(&mut out, v);
    out
}

fn dump_into(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Json::Float(f) if f.is_nan() => out.push_str("NaN"),
        Json::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Json::Float(f) => out.push_str(&float_repr(*f)),
        Json::Str(s) => write_str(out, s, true),
        Json::Arr(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                dump_into(out, item);
            }
            out.push(']');
        }
        Json::Obj(fields) => {
            out.push('{');
            for (n, (k, item)) in fields.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_str(out, k, true);
                out.push_str(": ");
                dump_into(out, item);
            }
            out.push('}');
        }
    }
}

/// Append `s` as a JSON string literal exactly as Python's `json.dumps(s,
/// ensure_ascii=...)` writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other
/// characters below U+0020 as `\u00XX`; with `ensure_ascii` everything outside
/// printable ASCII (DEL included) as `\uXXXX` (surrogate pairs above U+FFFF), without
/// it such characters are written as they are.
pub fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c if !ensure_ascii && c >= ' ' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when
/// the decimal exponent is in -4..16 (always with a fractional part), else scientific
/// with a signed two-digit-minimum exponent (`1e+16`, `1.5e-05`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "-1.2345e3".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    out
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (f, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (123.456, "123.456"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1763751234.123456, "1763751234.123456"),
            (1e300, "1e+300"),
            (-2.5e-300, "-2.5e-300"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn write_str_matches_python_in_both_modes() {
        // json.dumps(s) and json.dumps(s, ensure_ascii=False) in Python 3.11.
        let s = "q\"\\\n\r\t\u{1}\u{8}\u{c}\u{1f}\u{7f}é😀 ~";
        let mut ascii = String::new();
        write_str(&mut ascii, s, true);
        assert_eq!(
            ascii,
            r#""q\"\\\n\r\t\u0001\b\f\u001f\u007f\u00e9\ud83d\ude00 ~""#
        );
        let mut raw = String::new();
        write_str(&mut raw, s, false);
        assert_eq!(raw, "\"q\\\"\\\\\\n\\r\\t\\u0001\\b\\f\\u001f\u{7f}é😀 ~\"");
    }

    #[test]
    fn str_repr_matches_python() {
        assert_eq!(str_repr("1"), "'1'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("tab\there\n"), "'tab\\there\\n'");
        assert_eq!(str_repr("\u{1}é"), "'\\x01é'");
    }

    #[test]
    fn round_trip_of_a_ruok_document() {
        let doc = r#"{"1": {"connections": 0, "loads": 3, "lock_time": null, "start": "Sat Nov 21 17:24:20 2026", "timeout-thread-is-alive": "stub", "last-transaction": "03f1a2b3c4d5e6f7", "x": 1.5, "ok": true}}"#;
        let v = parse(doc).unwrap();
        assert_eq!(dumps(&v), doc);
        assert_eq!(v.get("1").unwrap().get("loads"), Some(&Json::Int(3)));
    }

    #[test]
    fn strings_and_escapes() {
        let v = parse(r#" ["a\"b\\c\/\n\u00e9\ud83d\ude00", "\u0001"] "#).unwrap();
        assert_eq!(
            v,
            Json::Arr(vec![
                Json::Str("a\"b\\c/\né😀".into()),
                Json::Str("\u{1}".into())
            ])
        );
        assert_eq!(dumps(&v), r#"["a\"b\\c/\n\u00e9\ud83d\ude00", "\u0001"]"#);
    }

    #[test]
    fn numbers_and_specials() {
        assert_eq!(parse("-12").unwrap(), Json::Int(-12));
        assert_eq!(parse("1.25e2").unwrap(), Json::Float(125.0));
        assert_eq!(parse("1E-2").unwrap(), Json::Float(0.01));
        assert!(matches!(parse("NaN").unwrap(), Json::Float(f) if f.is_nan()));
        assert_eq!(parse("-Infinity").unwrap(), Json::Float(f64::NEG_INFINITY));
        assert_eq!(dumps(&Json::Float(f64::INFINITY)), "Infinity");
        assert_eq!(
            parse("123456789012345678901234567890123456789012").unwrap(),
            Json::Float(1.2345678901234568e41)
        );
    }

    #[test]
    fn duplicate_keys_replace_in_place() {
        let v = parse(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(dumps(&v), r#"{"a": 3, "b": 2}"#);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            "",
            "{",
            "[1,",
            "{\"a\" 1}",
            "{1: 2}",
            "\"abc",
            "01",
            "1.",
            "-",
            "[1 2]",
            "{\"a\": 1} x",
            "\"\\x\"",
            "\"\\u12\"",
            "tru",
            "\"a\u{1}\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).is_err());
    }

    /// Thousands of mutated, truncated and random documents: errors, never panics.
    #[test]
    fn robustness_against_mutated_input() {
        let seed_docs = [
            r#"{"1": {"connections": 0, "loads": 3, "lock_time": null, "start": "Sat Nov 21", "last-transaction": "0000000000000000", "r": -1.5e-7}}"#,
            r#"[1, [2, [3, {"a": "\u00e9\ud83d\ude00\n"}]], true, false, NaN, -Infinity]"#,
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\",:\\u0123456789.eE+-ntfNI \n\xc3\xa9";
        for round in 0..6000 {
            let base = seed_docs[round % seed_docs.len()].as_bytes();
            let mut bytes = base.to_vec();
            match next() % 4 {
                0 => bytes.truncate((next() as usize) % (base.len() + 1)),
                1 => {
                    for _ in 0..(1 + next() % 4) {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = alphabet[(next() as usize) % alphabet.len()];
                    }
                }
                2 => {
                    let i = (next() as usize) % (bytes.len() + 1);
                    let b = alphabet[(next() as usize) % alphabet.len()];
                    bytes.insert(i, b);
                }
                _ => {
                    bytes = (0..(next() % 64))
                        .map(|_| alphabet[(next() as usize) % alphabet.len()])
                        .collect();
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(v) = parse(&text) {
                // Whatever parses must survive a dump and re-parse.
                let again = dumps(&v);
                assert!(parse(&again).is_ok(), "{again}");
            }
        }
    }
}
