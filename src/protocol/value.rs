//! The `Value` tree shared by the pickle and msgpack codecs: the Python values that
//! travel in ZEO messages, with exactly the type distinctions the clients check
//! (spec zeo-protocol.md §4.3): bytes vs str, tuple vs list, bool vs int, `None`,
//! float, and dicts as ordered pairs (wire order is kept and reproduced).
//!
//! Invariants: a `Value` produced by a decoder nests at most [`MAX_DEPTH`] levels
//! deep (so recursive walks and drops cannot overflow the stack); integers are
//! `i128`, which covers every msgpack integer and every pickle `LONG` a ZEO peer sends
//! (transaction ids are `id(txn)`); larger integers are refused by the decoders.

use std::fmt;

/// Deepest nesting a decoder accepts (ZEO messages nest at most ~7 levels).
pub const MAX_DEPTH: usize = 100;

/// A decoded (or to-be-encoded) Python value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A dict in wire (insertion) order.
    Dict(Vec<(Value, Value)>),
    /// `builtins.set(...)` (pickle only; msgpack has no sets).
    Set(Vec<Value>),
    /// `builtins.frozenset(...)` (pickle only).
    FrozenSet(Vec<Value>),
    /// A reference to an allowed global (`module`, `name`), e.g. the class argument
    /// of `ZODB.POSException._recon`.
    Global {
        module: String,
        name: String,
    },
    /// An instance of an allowed class, built by `NEWOBJ`/`REDUCE` (+ `BUILD`):
    /// `ZopeUndo.Prefix.Prefix` in `undoInfo` specifications, or an exception
    /// rebuilt with `_recon` in a Python server's `MultipleUndoErrors` reply.
    Object {
        module: String,
        name: String,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }
    pub fn int(i: impl Into<i128>) -> Value {
        Value::Int(i.into())
    }
    /// A dict with string keys, in the given order.
    pub fn str_dict<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }
    /// `Some(x)` as `x`, `None` as Python `None`.
    pub fn opt(v: Option<Value>) -> Value {
        v.unwrap_or(Value::None)
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// An int (a bool counts as 0/1, as in Python).
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }
    /// Python truthiness for the scalar types a flag can have.
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Global { .. } | Value::Object { .. } => true,
        }
    }
    /// Items of a tuple or list (msgpack turns every array into a tuple, so
    /// consumers that accept "a sequence" use this).
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// Look a string key up in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global { .. } => "global",
            Value::Object { .. } => "object",
        }
    }

    /// Nesting depth (a scalar is 1).
    pub fn depth(&self) -> usize {
        let kids = |v: &[Value]| v.iter().map(Value::depth).max().unwrap_or(0);
        match self {
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => 1 + kids(v),
            Value::Dict(d) => {
                1 + d
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            Value::Object { args, state, .. } => {
                1 + kids(args).max(state.as_ref().map(|s| s.depth()).unwrap_or(0))
            }
            _ => 1,
        }
    }

    /// Number of nodes, counting at most up to `limit` (returns `> limit` early).
    pub fn count_nodes(&self, limit: usize) -> usize {
        fn walk(v: &Value, n: &mut usize, limit: usize) {
            *n += 1;
            if *n > limit {
                return;
            }
            match v {
                Value::Tuple(xs) | Value::List(xs) | Value::Set(xs) | Value::FrozenSet(xs) => {
                    for x in xs {
                        walk(x, n, limit);
                        if *n > limit {
                            return;
                        }
                    }
                }
                Value::Dict(d) => {
                    for (k, x) in d {
                        walk(k, n, limit);
                        walk(x, n, limit);
                        if *n > limit {
                            return;
                        }
                    }
                }
                Value::Object { args, state, .. } => {
                    for x in args {
                        walk(x, n, limit);
                    }
                    if let Some(s) = state {
                        walk(s, n, limit);
                    }
                }
                _ => {}
            }
        }
        let mut n = 0;
        walk(self, &mut n, limit);
        n
    }
}

fn write_bytes_repr(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    f.write_str("b'")?;
    for &c in b {
        match c {
            b'\\' => f.write_str("\\\\")?,
            b'\'' => f.write_str("\\'")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            0x20..=0x7e => write!(f, "{}", c as char)?,
            _ => write!(f, "\\x{c:02x}")?,
        }
    }
    f.write_str("'")
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, xs: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{x}")?;
    }
    f.write_str(close)
}

/// Python-`repr`-like rendering, for logs and error messages.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bytes(b) => write_bytes_repr(f, b),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Tuple(xs) if xs.len() == 1 => write!(f, "({},)", xs[0]),
            Value::Tuple(xs) => write_seq(f, "(", xs, ")"),
            Value::List(xs) => write_seq(f, "[", xs, "]"),
            Value::Set(xs) => write_seq(f, "{", xs, "}"),
            Value::FrozenSet(xs) => write_seq(f, "frozenset({", xs, "})"),
            Value::Dict(d) => {
                f.write_str("{")?;
                for (i, (k, v)) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Global { module, name } => write!(f, "<global {module}.{name}>"),
            Value::Object {
                module,
                name,
                args,
                state,
            } => {
                write!(f, "{module}.{name}")?;
                write_seq(f, "(", args, ")")?;
                if let Some(s) = state {
                    write!(f, "<state {s}>")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_like_display() {
        let v = Value::Tuple(vec![
            Value::Int(1),
            Value::Bool(false),
            Value::str("register"),
            Value::Tuple(vec![Value::bytes(vec![0u8, b'a'])]),
        ]);
        assert_eq!(v.to_string(), "(1, False, \"register\", (b'\\x00a',))");
    }

    #[test]
    fn depth_and_nodes() {
        let v = Value::List(vec![Value::Tuple(vec![Value::None]), Value::Int(3)]);
        assert_eq!(v.depth(), 3);
        assert_eq!(v.count_nodes(100), 4);
        assert!(v.count_nodes(2) > 2);
    }

    #[test]
    fn dict_lookup_and_truthiness() {
        let d = Value::str_dict([("oid", Value::bytes(vec![0; 8])), ("x", Value::Int(0))]);
        assert_eq!(d.get("oid").and_then(Value::as_bytes), Some(&[0u8; 8][..]));
        assert!(d.get("nope").is_none());
        assert!(!Value::Int(0).truthy());
        assert!(Value::Int(2).truthy());
        assert_eq!(Value::Bool(true).as_int(), Some(1));
    }
}
