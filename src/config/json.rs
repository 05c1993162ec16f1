//! A minimal JSON value and writer for `--print-config` (the crate has no JSON
//! dependency). Non-finite floats are written as the strings "inf", "-inf", "nan";
//! non-UTF-8 paths lossily. Strings are escaped by [`crate::pyjson::write_str`] as
//! Python's `json.dumps(..., ensure_ascii=False)` does (non-ASCII kept as UTF-8).

use crate::pyjson::write_str;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys in insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: &str) -> Json {
        Json::Str(s.to_string())
    }
    pub fn path(p: &Path) -> Json {
        Json::Str(p.to_string_lossy().into_owned())
    }
    pub fn obj(fields: Vec<(&str, Json)>) -> Json {
        Json::Obj(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// Pretty-printed with two-space indentation.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) if f.is_nan() => out.push_str("\"nan\""),
            Json::Float(f) if f.is_infinite() => {
                out.push_str(if *f > 0.0 { "\"inf\"" } else { "\"-inf\"" })
            }
            Json::Float(f) => {
                let _ = write!(out, "{f:?}");
            }
            Json::Str(s) => write_str(out, s, false),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    write_str(out, k, false);
                    out.push_str(": ");
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json() {
        let j = Json::obj(vec![
            ("a", Json::Int(-1)),
            ("b", Json::Float(1.0)),
            ("c", Json::str("q\"\\\n\u{1}\u{8}\u{7f}é")),
            ("d", Json::Arr(vec![Json::Null, Json::Bool(true)])),
            ("e", Json::Arr(vec![])),
            ("f", Json::Float(f64::INFINITY)),
        ]);
        assert_eq!(
            j.pretty(),
            "{\n  \"a\": -1,\n  \"b\": 1.0,\n  \"c\": \"q\\\"\\\\\\n\\u0001\\b\u{7f}é\",\n  \"d\": [\n    null,\n    true\n  ],\n  \"e\": [],\n  \"f\": \"inf\"\n}"
        );
    }
}
