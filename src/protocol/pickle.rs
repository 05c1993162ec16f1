//! The restricted pickle codec of ZEO's `Z` encoding (spec zeo-protocol.md §4.1).
//!
//! Decoding accepts pickles with a `PROTO 2` or `PROTO 3` header using only the
//! opcodes ZEO peers emit (listed in [`ACCEPTED_OPCODES`]: the §4.1 set plus the
//! memo opcodes the stdlib pickler adds), and resolves only an explicit allowlist
//! of globals ([`GlobalPolicy`]): `builtins.set`/`frozenset` and
//! `ZopeUndo.Prefix.Prefix` from clients; additionally `ZODB.POSException._recon`
//! and the POSException classes when reading a Python server's replies. Nothing is
//! ever called: allowed globals become inert [`Value`] nodes.
//!
//! Invariants: the decoder never panics and never allocates more than a small
//! multiple of its input (values live in an arena of at most one node per opcode;
//! materialising memo references is charged against a budget proportional to the
//! input, so memo "billion laughs" fail cleanly); results nest at most
//! [`MAX_DEPTH`] levels.
//!
//! Encoding emits protocol 3 exactly as zodbpickle's fast-mode pickler does (no
//! memo), so server frames are byte-identical to the Python server's.

use super::value::{Value, MAX_DEPTH};
use super::ProtocolError;
use std::collections::HashMap;

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
    /// `ZopeUndo.Prefix.Prefix`.
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
enum GlobalKind {
    SetLike,
    NewObjClass,
    Recon,
    ExceptionClass,
}

fn classify_global(policy: GlobalPolicy, module: &str, name: &str) -> Option<GlobalKind> {
    match (module, name) {
        ("builtins" | "__builtin__", "set" | "frozenset") => Some(GlobalKind::SetLike),
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

type NodeId = usize;

#[derive(Debug)]
enum Node {
    Scalar(Value),
    Tuple(Vec<NodeId>),
    List(Vec<NodeId>),
    Dict(Vec<(NodeId, NodeId)>),
    Set {
        frozen: bool,
        items: Vec<NodeId>,
    },
    Object {
        module: String,
        name: String,
        args: Vec<NodeId>,
        state: Option<NodeId>,
    },
    /// Placeholder left after a non-shared scalar was moved out.
    Taken,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    policy: GlobalPolicy,
    nodes: Vec<Node>,
    shared: Vec<bool>,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: HashMap<u32, NodeId>,
    budget: usize,
}

/// Decode one complete pickle (the whole buffer) into a [`Value`].
pub fn decode(data: &[u8], policy: GlobalPolicy) -> Result<Value, ProtocolError> {
    let mut d = Decoder {
        data,
        pos: 0,
        policy,
        nodes: Vec::new(),
        shared: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget: data.len().saturating_mul(2).saturating_add(1024),
    };
    let root = d.run()?;
    d.materialize(root, 1, false)
}

impl<'a> Decoder<'a> {
    fn err(&self, what: impl Into<String>, at: usize) -> ProtocolError {
        ProtocolError::malformed(format!("pickle: {}", what.into()), at)
    }

    fn take(&mut self, n: usize, op: &str, at: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(e) => {
                let s = &self.data[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(
                format!(
                    "truncated: {op} needs {n} bytes, {} left",
                    self.data.len() - self.pos
                ),
                at,
            )),
        }
    }

    fn u8(&mut self, op: &str, at: usize) -> Result<u8, ProtocolError> {
        Ok(self.take(1, op, at)?[0])
    }
    fn u32le(&mut self, op: &str, at: usize) -> Result<u32, ProtocolError> {
        let b = self.take(4, op, at)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self, at: usize) -> Result<String, ProtocolError> {
        let rest = &self.data[self.pos..];
        let limit = rest.len().min(256);
        let Some(nl) = rest[..limit].iter().position(|&c| c == b'\n') else {
            return Err(self.err("GLOBAL name not terminated by a newline", at));
        };
        let s = std::str::from_utf8(&rest[..nl])
            .map_err(|_| self.err("GLOBAL name is not UTF-8", at))?
            .to_string();
        self.pos += nl + 1;
        Ok(s)
    }

    fn push_node(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.shared.push(false);
        let id = self.nodes.len() - 1;
        self.stack.push(id);
        id
    }

    fn pop(&mut self, op: &str, at: usize) -> Result<NodeId, ProtocolError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err(format!("{op} found a MARK where a value was expected"), at));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(format!("{op} on an empty stack"), at))
    }

    fn top(&self, op: &str, at: usize) -> Result<NodeId, ProtocolError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err(format!("{op} found a MARK where a value was expected"), at));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err(format!("{op} on an empty stack"), at))
    }

    fn pop_mark(&mut self, op: &str, at: usize) -> Result<Vec<NodeId>, ProtocolError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(format!("{op} without a MARK"), at))?;
        Ok(self.stack.split_off(m))
    }

    fn global_of(&self, id: NodeId) -> Option<(&str, &str)> {
        match &self.nodes[id] {
            Node::Scalar(Value::Global { module, name }) => Some((module, name)),
            _ => None,
        }
    }

    fn run(&mut self) -> Result<NodeId, ProtocolError> {
        if self.data.first() != Some(&0x80) {
            return Err(self.err("missing PROTO header (ZEO sends protocol 3 pickles)", 0));
        }
        loop {
            let at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(self.err("truncated: no STOP opcode", at));
            };
            self.pos += 1;
            match op {
                0x80 => {
                    let p = self.u8("PROTO", at)?;
                    if at != 0 {
                        return Err(self.err("PROTO opcode after the start", at));
                    }
                    if !(2..=3).contains(&p) {
                        return Err(self.err(
                            format!("unsupported pickle protocol {p} (ZEO uses protocol 3)"),
                            at,
                        ));
                    }
                }
                b'.' => {
                    let root = self.pop("STOP", at)?;
                    if !self.stack.is_empty() || !self.marks.is_empty() {
                        return Err(self.err("STOP with values left on the stack", at));
                    }
                    if self.pos != self.data.len() {
                        return Err(self.err(
                            format!("{} trailing bytes after STOP", self.data.len() - self.pos),
                            self.pos,
                        ));
                    }
                    return Ok(root);
                }
                b'(' => self.marks.push(self.stack.len()),
                b')' => {
                    self.push_node(Node::Tuple(Vec::new()));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLE1/2/3", at)?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items));
                }
                b't' => {
                    let items = self.pop_mark("TUPLE", at)?;
                    self.push_node(Node::Tuple(items));
                }
                b'K' => {
                    let v = self.u8("BININT1", at)?;
                    self.push_node(Node::Scalar(Value::Int(v as i128)));
                }
                b'M' => {
                    let b = self.take(2, "BININT2", at)?;
                    let v = u16::from_le_bytes([b[0], b[1]]);
                    self.push_node(Node::Scalar(Value::Int(v as i128)));
                }
                b'J' => {
                    let v = self.u32le("BININT", at)? as i32;
                    self.push_node(Node::Scalar(Value::Int(v as i128)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8("LONG1", at)? as usize
                    } else {
                        self.u32le("LONG4", at)? as usize
                    };
                    if n > 16 {
                        return Err(self.err(format!("integer of {n} bytes is too large"), at));
                    }
                    let b = self.take(n, "LONG", at)?;
                    let mut v: i128 = 0;
                    for (i, &c) in b.iter().enumerate() {
                        v |= (c as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push_node(Node::Scalar(Value::Int(v)));
                }
                0x88 => {
                    self.push_node(Node::Scalar(Value::Bool(true)));
                }
                0x89 => {
                    self.push_node(Node::Scalar(Value::Bool(false)));
                }
                b'N' => {
                    self.push_node(Node::Scalar(Value::None));
                }
                b'X' => {
                    let n = self.u32le("BINUNICODE", at)? as usize;
                    let b = self.take(n, "BINUNICODE", at)?;
                    let s = std::str::from_utf8(b)
                        .map_err(|_| self.err("BINUNICODE string is not valid UTF-8", at))?;
                    self.push_node(Node::Scalar(Value::Str(s.to_string())));
                }
                b'C' | b'B' => {
                    let n = if op == b'C' {
                        self.u8("SHORT_BINBYTES", at)? as usize
                    } else {
                        self.u32le("BINBYTES", at)? as usize
                    };
                    let b = self.take(n, "BINBYTES", at)?;
                    self.push_node(Node::Scalar(Value::Bytes(b.to_vec())));
                }
                b'G' => {
                    let b = self.take(8, "BINFLOAT", at)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push_node(Node::Scalar(Value::Float(f64::from_be_bytes(a))));
                }
                b'}' => {
                    self.push_node(Node::Dict(Vec::new()));
                }
                b']' => {
                    self.push_node(Node::List(Vec::new()));
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop("SETITEM", at)?;
                        let k = self.pop("SETITEM", at)?;
                        vec![k, v]
                    } else {
                        self.pop_mark("SETITEMS", at)?
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items", at));
                    }
                    let target = self.top("SETITEM(S)", at)?;
                    let Node::Dict(d) = &mut self.nodes[target] else {
                        return Err(self.err("SETITEM(S) on something that is not a dict", at));
                    };
                    d.extend(items.chunks(2).map(|p| (p[0], p[1])));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop("APPEND", at)?]
                    } else {
                        self.pop_mark("APPENDS", at)?
                    };
                    let target = self.top("APPEND(S)", at)?;
                    let Node::List(l) = &mut self.nodes[target] else {
                        return Err(self.err("APPEND(S) on something that is not a list", at));
                    };
                    l.extend(items);
                }
                b'c' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    if classify_global(self.policy, &module, &name).is_none() {
                        return Err(ProtocolError::ForbiddenGlobal { module, name });
                    }
                    self.push_node(Node::Scalar(Value::Global { module, name }));
                }
                b'R' => {
                    let args = self.pop("REDUCE", at)?;
                    let func = self.pop("REDUCE", at)?;
                    let node = self.reduce(func, args, at)?;
                    self.push_node(node);
                }
                0x81 => {
                    let args = self.pop("NEWOBJ", at)?;
                    let cls = self.pop("NEWOBJ", at)?;
                    let Some((module, name)) = self.global_of(cls) else {
                        return Err(self.err("NEWOBJ of something that is not a class", at));
                    };
                    if classify_global(self.policy, module, name) != Some(GlobalKind::NewObjClass) {
                        return Err(
                            self.err(format!("NEWOBJ of {module}.{name} is not allowed"), at)
                        );
                    }
                    let (module, name) = (module.to_string(), name.to_string());
                    let Node::Tuple(args) = &self.nodes[args] else {
                        return Err(self.err("NEWOBJ arguments are not a tuple", at));
                    };
                    let args = args.clone();
                    self.mark_shared(&args);
                    self.push_node(Node::Object {
                        module,
                        name,
                        args,
                        state: None,
                    });
                }
                b'b' => {
                    let state = self.pop("BUILD", at)?;
                    let target = self.top("BUILD", at)?;
                    let Node::Object { state: s, .. } = &mut self.nodes[target] else {
                        return Err(self.err("BUILD on something that is not an object", at));
                    };
                    if s.is_some() {
                        return Err(self.err("BUILD applied twice to one object", at));
                    }
                    *s = Some(state);
                }
                b'q' | b'r' => {
                    let idx = if op == b'q' {
                        self.u8("BINPUT", at)? as u32
                    } else {
                        self.u32le("LONG_BINPUT", at)?
                    };
                    let id = self.top("BINPUT", at)?;
                    self.shared[id] = true;
                    self.memo.insert(idx, id);
                }
                b'h' | b'j' => {
                    let idx = if op == b'h' {
                        self.u8("BINGET", at)? as u32
                    } else {
                        self.u32le("LONG_BINGET", at)?
                    };
                    let id = *self.memo.get(&idx).ok_or_else(|| {
                        self.err(format!("BINGET of unknown memo slot {idx}"), at)
                    })?;
                    self.stack.push(id);
                }
                other => {
                    return Err(self.err(
                        format!("opcode 0x{other:02x} is not accepted in ZEO messages"),
                        at,
                    ))
                }
            }
        }
    }

    fn reduce(&mut self, func: NodeId, args: NodeId, at: usize) -> Result<Node, ProtocolError> {
        let Some((module, name)) = self.global_of(func) else {
            return Err(self.err("REDUCE of something that is not a global", at));
        };
        let (module, name) = (module.to_string(), name.to_string());
        let Node::Tuple(argv) = &self.nodes[args] else {
            return Err(self.err("REDUCE arguments are not a tuple", at));
        };
        let argv = argv.clone();
        match classify_global(self.policy, &module, &name) {
            Some(GlobalKind::SetLike) => {
                let items = match argv.as_slice() {
                    [] => Vec::new(),
                    [it] => match &self.nodes[*it] {
                        Node::List(v) | Node::Tuple(v) | Node::Set { items: v, .. } => v.clone(),
                        _ => return Err(self.err(format!("{name}() of a non-sequence"), at)),
                    },
                    _ => return Err(self.err(format!("{name}() takes at most one argument"), at)),
                };
                self.mark_shared(&items);
                Ok(Node::Set {
                    frozen: name == "frozenset",
                    items,
                })
            }
            Some(GlobalKind::Recon) => {
                let [cls, state] = argv.as_slice() else {
                    return Err(self.err("_recon needs (class, state)", at));
                };
                let Some((m, n)) = self.global_of(*cls) else {
                    return Err(self.err("_recon of something that is not a class", at));
                };
                let (m, n, state) = (m.to_string(), n.to_string(), *state);
                self.mark_shared(&[state]);
                Ok(Node::Object {
                    module: m,
                    name: n,
                    args: Vec::new(),
                    state: Some(state),
                })
            }
            _ => Err(self.err(format!("calling {module}.{name} is not allowed"), at)),
        }
    }

    /// Children copied out of a node now have two parents: clone, don't move.
    fn mark_shared(&mut self, ids: &[NodeId]) {
        for &i in ids {
            self.shared[i] = true;
        }
    }

    fn charge(&mut self, units: usize) -> Result<(), ProtocolError> {
        self.budget = self.budget.checked_sub(units).ok_or_else(|| {
            self.err(
                "memo references expand beyond the size limit",
                self.data.len(),
            )
        })?;
        Ok(())
    }

    fn many(
        &mut self,
        ids: &[NodeId],
        depth: usize,
        clone: bool,
    ) -> Result<Vec<Value>, ProtocolError> {
        let mut out = Vec::with_capacity(ids.len());
        for &i in ids {
            out.push(self.materialize(i, depth + 1, clone)?);
        }
        Ok(out)
    }

    /// Build the `Value` of node `id`. Nodes reachable through a memo reference
    /// (`clone`, or marked shared) are copied; all others have exactly one parent
    /// and are moved out of the arena.
    fn materialize(
        &mut self,
        id: NodeId,
        depth: usize,
        clone: bool,
    ) -> Result<Value, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(self.err(
                format!("values nested deeper than {MAX_DEPTH} levels"),
                self.data.len(),
            ));
        }
        self.charge(1)?;
        let shared = clone || self.shared[id];
        // Non-shared nodes have exactly one parent, so they can be moved out.
        let node = if shared {
            None
        } else {
            Some(std::mem::replace(&mut self.nodes[id], Node::Taken))
        };
        let node_ref = match &node {
            Some(n) => n,
            None => &self.nodes[id],
        };
        match node_ref {
            Node::Taken => Err(self.err("internal: value used twice", self.data.len())),
            Node::Scalar(v) => {
                if shared {
                    let size = match v {
                        Value::Bytes(b) => b.len(),
                        Value::Str(s) => s.len(),
                        _ => 0,
                    };
                    let v = v.clone();
                    self.charge(size)?;
                    Ok(v)
                } else {
                    match node {
                        Some(Node::Scalar(v)) => Ok(v),
                        _ => Err(self.err("internal: scalar vanished", self.data.len())),
                    }
                }
            }
            Node::Tuple(ids) => {
                let ids = ids.clone();
                Ok(Value::Tuple(self.many(&ids, depth, shared)?))
            }
            Node::List(ids) => {
                let ids = ids.clone();
                Ok(Value::List(self.many(&ids, depth, shared)?))
            }
            Node::Set { frozen, items } => {
                let (frozen, ids) = (*frozen, items.clone());
                let items = self.many(&ids, depth, shared)?;
                Ok(if frozen {
                    Value::FrozenSet(items)
                } else {
                    Value::Set(items)
                })
            }
            Node::Dict(pairs) => {
                let pairs = pairs.clone();
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.materialize(k, depth + 1, shared)?;
                    let v = self.materialize(v, depth + 1, shared)?;
                    out.push((k, v));
                }
                Ok(Value::Dict(out))
            }
            Node::Object {
                module,
                name,
                args,
                state,
            } => {
                let (module, name, args, state) =
                    (module.clone(), name.clone(), args.clone(), *state);
                let args = self.many(&args, depth, shared)?;
                let state = match state {
                    Some(s) => Some(Box::new(self.materialize(s, depth + 1, shared)?)),
                    None => None,
                };
                Ok(Value::Object {
                    module,
                    name,
                    args,
                    state,
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Encoder

/// Encode `v` as a protocol-3 pickle exactly as zodbpickle's fast-mode pickler does.
pub fn encode(v: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, 3]);
    encode_into(v, &mut out, 1)?;
    out.push(b'.');
    Ok(out)
}

fn encode_int(i: i128, out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            encode_int(i, &mut out);
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
