//! The restricted pickle decoder: an arena stack machine over the accepted
//! opcodes (see the module docs of `pickle`).

use super::{classify_global, GlobalKind, GlobalPolicy};
use crate::protocol::value::{Value, MAX_DEPTH};
use crate::protocol::ProtocolError;
use std::collections::HashMap;

type NodeId = usize;

#[derive(Clone, Debug)]
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
        nodes: Vec::with_capacity((data.len() / 4).min(64) + 4),
        shared: Vec::with_capacity((data.len() / 4).min(64) + 4),
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
            Some(GlobalKind::DictLike) => {
                let pairs = match argv.as_slice() {
                    [] => Vec::new(),
                    [it] => match &self.nodes[*it] {
                        Node::Dict(d) => d.clone(),
                        Node::List(v) | Node::Tuple(v) => {
                            let mut pairs = Vec::with_capacity(v.len());
                            for item in v {
                                match &self.nodes[*item] {
                                    Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                                        pairs.push((kv[0], kv[1]))
                                    }
                                    _ => {
                                        return Err(
                                            self.err("dict() of something that is not pairs", at)
                                        )
                                    }
                                }
                            }
                            pairs
                        }
                        _ => return Err(self.err("dict() of a non-sequence", at)),
                    },
                    _ => return Err(self.err("dict() takes at most one argument", at)),
                };
                let ids: Vec<NodeId> = pairs.iter().flat_map(|(k, v)| [*k, *v]).collect();
                self.mark_shared(&ids);
                Ok(Node::Dict(pairs))
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
        // Non-shared nodes have exactly one parent, so they are moved out of the
        // arena; shared ones (memo) are copied, charged against the budget.
        let node = if shared {
            let n = self.nodes[id].clone();
            if let Node::Scalar(Value::Bytes(b)) = &n {
                self.charge(b.len())?;
            } else if let Node::Scalar(Value::Str(t)) = &n {
                self.charge(t.len())?;
            }
            n
        } else {
            std::mem::replace(&mut self.nodes[id], Node::Taken)
        };
        match node {
            Node::Taken => Err(self.err("internal: value used twice", self.data.len())),
            Node::Scalar(v) => Ok(v),
            Node::Tuple(ids) => Ok(Value::Tuple(self.many(&ids, depth, shared)?)),
            Node::List(ids) => Ok(Value::List(self.many(&ids, depth, shared)?)),
            Node::Set { frozen, items } => {
                let items = self.many(&items, depth, shared)?;
                Ok(if frozen {
                    Value::FrozenSet(items)
                } else {
                    Value::Set(items)
                })
            }
            Node::Dict(pairs) => {
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
