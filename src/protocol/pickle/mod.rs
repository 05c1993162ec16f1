//! The restricted pickle codec of ZEO's `Z` encoding (spec zeo-protocol.md §4.1).
//!
//! Decoding accepts pickles with a `PROTO 2` or `PROTO 3` header using only the
//! opcodes ZEO peers emit (listed in [`ACCEPTED_OPCODES`]: the §4.1 set plus the
//! memo opcodes the stdlib pickler adds), and resolves only an explicit allowlist
//! of globals ([`GlobalPolicy`]): `builtins.set`/`frozenset`, `builtins.dict` (a
//! dict subclass pickled by its `__reduce__`, as in a transaction extension) and
//! `ZopeUndo.Prefix.Prefix` from clients; additionally `ZODB.POSException._recon`
//! and the POSException classes when reading a Python server's replies. Nothing is
//! ever called: allowed globals become inert [`Value`](crate::protocol::Value) nodes.
//!
//! Invariants: the decoder never panics and never allocates more than a small
//! multiple of its input (values live in an arena of at most one node per opcode;
//! materialising memo references is charged against a budget proportional to the
//! input, so memo "billion laughs" fail cleanly); results nest at most
//! [`MAX_DEPTH`](crate::protocol::value::MAX_DEPTH) levels.
//!
//! Encoding emits protocol 3 exactly as zodbpickle's fast-mode pickler does (no
//! memo), so server frames are byte-identical to the Python server's.

mod decode;
mod encode;

pub use decode::decode;
pub use encode::{encode, encode_tuple};

/// Opcodes the decoder accepts (besides `PROTO` at the start).
pub const ACCEPTED_OPCODES: &[&str] = &[
    "STOP",
    "MARK",
    "TUPLE",
    "TUPLE1",
    "TUPLE2",
    "TUPLE3",
    "EMPTY_TUPLE",
    "BININT1",
    "BININT2",
    "BININT",
    "LONG1",
    "LONG4",
    "NEWTRUE",
    "NEWFALSE",
    "NONE",
    "BINUNICODE",
    "SHORT_BINBYTES",
    "BINBYTES",
    "BINFLOAT",
    "EMPTY_DICT",
    "SETITEM",
    "SETITEMS",
    "EMPTY_LIST",
    "APPEND",
    "APPENDS",
    "GLOBAL",
    "REDUCE",
    "NEWOBJ",
    "BUILD",
    "BINPUT",
    "LONG_BINPUT",
    "BINGET",
    "LONG_BINGET",
];

/// Which globals a decoder may resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalPolicy {
    /// A server reading client messages: `builtins.set`, `builtins.frozenset`,
    /// `builtins.dict`, `ZopeUndo.Prefix.Prefix`.
    ClientMessages,
    /// A client reading server messages: the above plus `ZODB.POSException._recon`
    /// and the `ZODB.POSException` exception classes it rebuilds.
    ServerMessages,
}

const POS_EXCEPTIONS: &[&str] = &[
    "POSError",
    "POSKeyError",
    "ConflictError",
    "ReadConflictError",
    "BTreesConflictError",
    "DanglingReferenceError",
    "UndoError",
    "MultipleUndoErrors",
    "ReadOnlyError",
    "StorageError",
    "StorageTransactionError",
    "TransactionError",
    "ReadOnlyHistoryError",
    "Unsupported",
    "InvalidObjectReference",
];

/// What an allowed global may be used for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobalKind {
    SetLike,
    DictLike,
    NewObjClass,
    Recon,
    ExceptionClass,
}

pub(crate) fn classify_global(
    policy: GlobalPolicy,
    module: &str,
    name: &str,
) -> Option<GlobalKind> {
    match (module, name) {
        ("builtins" | "__builtin__", "set" | "frozenset") => Some(GlobalKind::SetLike),
        ("builtins" | "__builtin__", "dict") => Some(GlobalKind::DictLike),
        ("ZopeUndo.Prefix", "Prefix") => Some(GlobalKind::NewObjClass),
        ("ZODB.POSException", "_recon") if policy == GlobalPolicy::ServerMessages => {
            Some(GlobalKind::Recon)
        }
        ("ZODB.POSException", n)
            if policy == GlobalPolicy::ServerMessages && POS_EXCEPTIONS.contains(&n) =>
        {
            Some(GlobalKind::ExceptionClass)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::value::Value;
    use crate::protocol::ProtocolError;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn register_request_roundtrip() {
        let wire = hex("8003284b0189580800000072656769737465725801000000314b0086742e");
        let v = decode(&wire, GlobalPolicy::ClientMessages).unwrap();
        let want = Value::Tuple(vec![
            Value::Int(1),
            Value::Bool(false),
            Value::str("register"),
            Value::Tuple(vec![Value::str("1"), Value::Int(0)]),
        ]);
        assert_eq!(v, want);
        assert_eq!(encode(&v).unwrap(), wire);
    }

    #[test]
    fn ints_use_smallest_opcode() {
        for (i, want) in [
            (0i128, "4b00"),
            (255, "4bff"),
            (256, "4d0001"),
            (65536, "4a00000100"),
            (-1, "4affffffff"),
            (140459743145488, "8a06106e1855bf7f"),
            (-(1i128 << 40), "8a060000000000ff"),
            (1i128 << 31, "8a050000008000"),
        ] {
            let mut out = Vec::new();
            encode::encode_int(i, &mut out);
            assert_eq!(out, hex(want), "{i}");
            let mut p = vec![0x80, 3];
            p.extend(out);
            p.push(b'.');
            assert_eq!(
                decode(&p, GlobalPolicy::ClientMessages).unwrap(),
                Value::Int(i)
            );
        }
    }

    #[test]
    fn memo_shares_mutations_like_python() {
        // [] BINPUT 0, MARK 1 2 APPENDS, then BINGET 0 again: TUPLE2 of the same list.
        let p = hex("80035d710028 4b01 4b02 65 6800 86 2e"
            .replace(' ', "")
            .as_str());
        let v = decode(&p, GlobalPolicy::ClientMessages).unwrap();
        let l = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(v, Value::Tuple(vec![l.clone(), l]));
    }

    #[test]
    fn dict_subclass_reduced_to_builtins_dict() {
        // zodbpickle protocol 3 of `ext(foo=1)` where ext.__reduce__ returns
        // (dict, (tuple(items),)), as a transaction extension arrives.
        let p = hex(
            "8003636275696c74696e730a646963740a71005803000000666f6f71014b01\
                     8671028571038571045271052e",
        );
        let v = decode(&p, GlobalPolicy::ClientMessages).unwrap();
        assert_eq!(v, Value::Dict(vec![(Value::str("foo"), Value::Int(1))]));
        let empty = hex("8003636275696c74696e730a646963740a7100298571015271022e");
        assert_eq!(
            decode(&empty, GlobalPolicy::ClientMessages).unwrap(),
            Value::Dict(vec![])
        );
        // dict() of something that is not pairs is refused, not guessed at.
        let bad = hex("8003636275696c74696e730a646963740a4b0185522e");
        assert!(decode(&bad, GlobalPolicy::ClientMessages).is_err());
    }

    #[test]
    fn forbidden_globals() {
        for (m, n) in [("os", "system"), ("builtins", "eval"), ("posix", "system")] {
            let mut p = vec![0x80, 3, b'c'];
            p.extend(format!("{m}\n{n}\n").bytes());
            p.extend(b"X\x02\x00\x00\x00id\x85R.");
            assert_eq!(
                decode(&p, GlobalPolicy::ClientMessages),
                Err(ProtocolError::ForbiddenGlobal {
                    module: m.into(),
                    name: n.into()
                })
            );
        }
        let p = b"\x80\x03cZODB.POSException\n_recon\n.";
        assert!(decode(p, GlobalPolicy::ClientMessages).is_err());
        assert!(decode(p, GlobalPolicy::ServerMessages).is_ok());
    }

    #[test]
    fn memo_bomb_is_refused() {
        // A list that doubles itself through the memo 40 times.
        let mut p = vec![0x80, 3, b']', b'q', 0];
        for _ in 0..40 {
            p.extend([b'h', 0, 0x86, b'q', 0]);
        }
        p.push(b'.');
        let e = decode(&p, GlobalPolicy::ClientMessages).unwrap_err();
        assert!(
            e.to_string().contains("size limit") || e.to_string().contains("deeper"),
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut p = vec![0x80, 3, b'N'];
        p.extend(std::iter::repeat_n(0x85, 100_000));
        p.push(b'.');
        let e = decode(&p, GlobalPolicy::ClientMessages).unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
    }
}
