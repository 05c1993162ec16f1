//! Persistent-reference scanner over object pickles (ZODB `referencesf`), for pack
//! GC, plus class identification of a record (`get_pickle_metadata`).
//!
//! A data record is two pickles (class, state) written by one pickler, so memo
//! slots set in the first are used by the second (spec filestorage.md §11). The
//! scanner is a pickle stack machine for protocols 0–3 that builds no objects:
//! it keeps only what can become a persistent id (bytes, strings, tuples, lists,
//! globals, memo entries of them) and records every id `BINPERSID`/`PERSID` sees.
//!
//! Invariants: never panics on any input; memory is bounded by the input (at most
//! one node per opcode; tuple nesting is limited so dropping cannot overflow the
//! stack; lists are emptied at the end so memo cycles cannot leak); an unparsable
//! pickle is an error (a pack must then fail rather than lose objects).

use super::tid::Oid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// Deepest tuple nesting accepted (ZODB ids nest 3 levels).
const MAX_TUPLE_DEPTH: u32 = 200;

/// Why a record could not be scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefsError {
    /// Offset in the record data.
    pub offset: usize,
    pub what: String,
}

impl fmt::Display for RefsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot scan object pickle for references at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for RefsError {}

/// The shape of a persistent id (spec filestorage.md §11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefForm {
    /// `oid` alone (target class has `__getnewargs__`): strong.
    Oid,
    /// `(oid, class)`: strong.
    OidClass,
    /// `['w', (oid,)]` or `['w', (oid, database)]`.
    Weak,
    /// `['n', (database, oid)]`: cross-database strong reference without class.
    MultiDb,
    /// `['m', (database, oid, class)]`.
    MultiDbClass,
    /// `[oid]`.
    LegacyWeak,
}

impl RefForm {
    /// The name used by the fixtures (`oid`, `oid_class`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RefForm::Oid => "oid",
            RefForm::OidClass => "oid_class",
            RefForm::Weak => "weak",
            RefForm::MultiDb => "multi_db",
            RefForm::MultiDbClass => "multi_db_class",
            RefForm::LegacyWeak => "legacy_weak",
        }
    }
    /// Whether `referencesf` (and so pack GC) follows it.
    pub fn is_strong_local(self) -> bool {
        matches!(self, RefForm::Oid | RefForm::OidClass)
    }
}

/// One persistent id found in a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentRef {
    pub form: RefForm,
    /// The oid bytes as written (normally 8).
    pub oid: Vec<u8>,
    /// Dotted class name, when the id carries a class (GLOBAL or a memo copy).
    pub class: Option<String>,
    /// The other database's name (multi-database and cross-database weak refs).
    pub database: Option<String>,
    /// 0: found in the class pickle, 1: in the state pickle.
    pub pickle: u8,
}

#[derive(Debug)]
enum Node {
    Bytes(Vec<u8>),
    Str(String),
    Tuple(Vec<Rc<Node>>, u32),
    List(RefCell<Vec<Rc<Node>>>),
    /// `module.name`
    Global(String),
    Other,
}

impl Node {
    fn tuple_depth(&self) -> u32 {
        match self {
            Node::Tuple(_, d) => *d,
            _ => 0,
        }
    }
}

/// A raw persistent id as the unpickler saw it.
struct RawPid {
    pid: Rc<Node>,
    pickle: u8,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Rc<Node>>,
    marks: Vec<usize>,
    memo: HashMap<u32, Rc<Node>>,
    lists: Vec<Rc<Node>>,
    pids: Vec<RawPid>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        // Break any cycles made through the memo.
        for l in &self.lists {
            if let Node::List(items) = &**l {
                items.borrow_mut().clear();
            }
        }
    }
}

fn other() -> Rc<Node> {
    Rc::new(Node::Other)
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            lists: Vec::new(),
            pids: Vec::new(),
        }
    }

    fn err(&self, at: usize, what: impl Into<String>) -> RefsError {
        RefsError {
            offset: at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8], RefsError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(e) => {
                let s = &self.data[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(at, "truncated pickle")),
        }
    }
    fn u8(&mut self, at: usize) -> Result<u8, RefsError> {
        Ok(self.take(1, at)?[0])
    }
    fn u32(&mut self, at: usize) -> Result<u32, RefsError> {
        let b = self.take(4, at)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self, at: usize) -> Result<&'a [u8], RefsError> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| self.err(at, "unterminated text argument"))?;
        self.pos += nl + 1;
        Ok(&rest[..nl])
    }

    fn push(&mut self, n: Node) {
        let rc = Rc::new(n);
        if matches!(&*rc, Node::List(_)) {
            self.lists.push(rc.clone());
        }
        self.stack.push(rc);
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, at: usize) -> Result<Rc<Node>, RefsError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err(at, "stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(at, "stack underflow"))
    }

    fn top(&self, at: usize) -> Result<Rc<Node>, RefsError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err(at, "stack underflow"));
        }
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| self.err(at, "stack underflow"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Rc<Node>>, RefsError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(at, "no MARK on the stack"))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn tuple(&mut self, items: Vec<Rc<Node>>, at: usize) -> Result<(), RefsError> {
        let depth = 1 + items.iter().map(|i| i.tuple_depth()).max().unwrap_or(0);
        if depth > MAX_TUPLE_DEPTH {
            return Err(self.err(at, "tuples nested too deeply"));
        }
        self.push(Node::Tuple(items, depth));
        Ok(())
    }

    fn append(&mut self, items: Vec<Rc<Node>>, at: usize) -> Result<(), RefsError> {
        let target = self.top(at)?;
        if let Node::List(l) = &*target {
            l.borrow_mut().extend(items);
        }
        // noload: appending to anything else (e.g. an object) is ignored.
        Ok(())
    }

    fn memo_get(&mut self, idx: u32, at: usize) -> Result<(), RefsError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(at, format!("memo slot {idx} was never set")))?;
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, idx: u32, at: usize) -> Result<(), RefsError> {
        let v = self.top(at)?;
        self.memo.insert(idx, v);
        Ok(())
    }

    /// Run one pickle up to its STOP.
    fn run(&mut self, pickle: u8) -> Result<(), RefsError> {
        self.stack.clear();
        self.marks.clear();
        loop {
            let at = self.pos;
            let op = self.u8(at)?;
            match op {
                0x80 => {
                    let p = self.u8(at)?;
                    if p > 3 {
                        return Err(self.err(at, format!("pickle protocol {p} is not supported")));
                    }
                }
                b'.' => return Ok(()),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.stack.pop();
                    } else {
                        self.pop_mark(at)?;
                    }
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let t = self.top(at)?;
                    self.stack.push(t);
                }
                // Numbers and constants: value irrelevant.
                b'F' | b'I' | b'L' => {
                    self.line(at)?;
                    self.push(Node::Other);
                }
                b'J' => {
                    self.take(4, at)?;
                    self.push(Node::Other);
                }
                b'K' => {
                    self.take(1, at)?;
                    self.push(Node::Other);
                }
                b'M' => {
                    self.take(2, at)?;
                    self.push(Node::Other);
                }
                b'G' => {
                    self.take(8, at)?;
                    self.push(Node::Other);
                }
                0x8a => {
                    let n = self.u8(at)? as usize;
                    self.take(n, at)?;
                    self.push(Node::Other);
                }
                0x8b => {
                    let n = self.u32(at)? as usize;
                    self.take(n, at)?;
                    self.push(Node::Other);
                }
                b'N' | 0x88 | 0x89 => self.push(Node::Other),
                // Strings.
                b'S' => {
                    let l = self.line(at)?;
                    let inner = match l {
                        [q, mid @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => mid,
                        _ => return Err(self.err(at, "STRING argument is not quoted")),
                    };
                    self.push(Node::Bytes(unescape_py_string(inner)));
                }
                b'T' | b'B' => {
                    let n = self.u32(at)? as usize;
                    let b = self.take(n, at)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                b'U' | b'C' => {
                    let n = self.u8(at)? as usize;
                    let b = self.take(n, at)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                b'V' => {
                    let l = self.line(at)?;
                    self.push(Node::Str(String::from_utf8_lossy(l).into_owned()));
                }
                b'X' => {
                    let n = self.u32(at)? as usize;
                    let b = self.take(n, at)?;
                    self.push(Node::Str(String::from_utf8_lossy(b).into_owned()));
                }
                // Containers.
                b')' => self.tuple(Vec::new(), at)?,
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.tuple(items, at)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.tuple(items, at)?;
                }
                b']' => self.push(Node::List(RefCell::new(Vec::new()))),
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.push(Node::List(RefCell::new(items)));
                }
                b'a' => {
                    let v = self.pop(at)?;
                    self.append(vec![v], at)?;
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.append(items, at)?;
                }
                b'}' => self.push(Node::Other),
                b'd' => {
                    self.pop_mark(at)?;
                    self.push(Node::Other);
                }
                b's' => {
                    self.pop(at)?;
                    self.pop(at)?;
                    self.top(at)?;
                }
                b'u' => {
                    self.pop_mark(at)?;
                    self.top(at)?;
                }
                // Globals and object construction (noload: placeholders).
                b'c' => {
                    let m = self.line(at)?;
                    let n = self.line(at)?;
                    let name = format!(
                        "{}.{}",
                        String::from_utf8_lossy(m),
                        String::from_utf8_lossy(n)
                    );
                    self.push(Node::Global(name));
                }
                b'i' => {
                    self.line(at)?;
                    self.line(at)?;
                    self.pop_mark(at)?;
                    self.push(Node::Other);
                }
                b'o' => {
                    self.pop_mark(at)?;
                    self.push(Node::Other);
                }
                b'R' | 0x81 => {
                    self.pop(at)?;
                    self.pop(at)?;
                    self.push(Node::Other);
                }
                b'b' => {
                    self.pop(at)?;
                    self.top(at)?;
                }
                0x82 => {
                    self.take(1, at)?;
                    self.push(Node::Other);
                }
                0x83 => {
                    self.take(2, at)?;
                    self.push(Node::Other);
                }
                0x84 => {
                    self.take(4, at)?;
                    self.push(Node::Other);
                }
                // Persistent ids.
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.pids.push(RawPid { pid, pickle });
                    self.stack.push(other());
                }
                b'P' => {
                    let l = self.line(at)?;
                    let pid = Rc::new(Node::Str(String::from_utf8_lossy(l).into_owned()));
                    self.pids.push(RawPid { pid, pickle });
                    self.stack.push(other());
                }
                // Memo.
                b'p' => {
                    let l = self.line(at)?;
                    let idx = parse_decimal(l).ok_or_else(|| self.err(at, "bad PUT index"))?;
                    self.memo_put(idx, at)?;
                }
                b'q' => {
                    let idx = self.u8(at)? as u32;
                    self.memo_put(idx, at)?;
                }
                b'r' => {
                    let idx = self.u32(at)?;
                    self.memo_put(idx, at)?;
                }
                b'g' => {
                    let l = self.line(at)?;
                    let idx = parse_decimal(l).ok_or_else(|| self.err(at, "bad GET index"))?;
                    self.memo_get(idx, at)?;
                }
                b'h' => {
                    let idx = self.u8(at)? as u32;
                    self.memo_get(idx, at)?;
                }
                b'j' => {
                    let idx = self.u32(at)?;
                    self.memo_get(idx, at)?;
                }
                _ => {
                    return Err(self.err(at, format!("unknown pickle opcode 0x{op:02x}")));
                }
            }
        }
    }
}

fn parse_decimal(l: &[u8]) -> Option<u32> {
    std::str::from_utf8(l).ok()?.trim().parse().ok()
}

/// Undo the escapes of a protocol-0 `STRING` argument (`repr` of a Python 2 str).
fn unescape_py_string(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let c = s[i + 1];
            i += 2;
            match c {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'x' if i + 2 <= s.len() => {
                    let h = std::str::from_utf8(&s[i..i + 2])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.extend_from_slice(b"\\x"),
                    }
                }
                b'0'..=b'7' => {
                    let mut v = (c - b'0') as u32;
                    let mut n = 1;
                    while n < 3 && i < s.len() && (b'0'..=b'7').contains(&s[i]) {
                        v = v * 8 + (s[i] - b'0') as u32;
                        i += 1;
                        n += 1;
                    }
                    out.push(v as u8);
                }
                other => out.push(other),
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Run both pickles of a record and map each raw persistent id, in order, while
/// the machine (and so the contents of list ids) is still alive.
fn map_pids<T>(
    data: &[u8],
    mut f: impl FnMut(&RawPid) -> Result<Option<T>, RefsError>,
) -> Result<Vec<T>, RefsError> {
    let mut m = Machine::new(data);
    m.run(0)?;
    m.run(1)?;
    let mut out = Vec::with_capacity(m.pids.len());
    for raw in &m.pids {
        if let Some(t) = f(raw)? {
            out.push(t);
        }
    }
    Ok(out)
}

fn oid_bytes(n: &Node) -> Option<Vec<u8>> {
    match n {
        Node::Bytes(b) => Some(b.clone()),
        // referencesf encodes text oids back to bytes (ASCII).
        Node::Str(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn text(n: &Node) -> Option<String> {
    match n {
        Node::Str(s) => Some(s.clone()),
        Node::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn class_of(n: &Node) -> Option<String> {
    match n {
        Node::Global(g) => Some(g.clone()),
        _ => None,
    }
}

fn to_oid(b: &[u8], at: &str) -> Result<Oid, RefsError> {
    Oid::from_slice(b).ok_or_else(|| RefsError {
        offset: 0,
        what: format!(
            "{at}: persistent reference oid has {} bytes, not 8",
            b.len()
        ),
    })
}

/// `ZODB.serialize.referencesf`: the strong, same-database references of a
/// record (both pickles), in pickle order, duplicates kept. Weak and
/// cross-database references (list-form ids) are skipped.
pub fn references(data: &[u8]) -> Result<Vec<Oid>, RefsError> {
    map_pids(data, |raw| {
        let oid = match &*raw.pid {
            Node::Tuple(items, _) => match items.first() {
                Some(first) => oid_bytes(first),
                None => None,
            },
            Node::List(_) => return Ok(None),
            other => oid_bytes(other),
        };
        match oid {
            Some(b) => Ok(Some(to_oid(&b, "referencesf")?)),
            None => Err(RefsError {
                offset: 0,
                what: "a persistent id is neither an oid, a tuple nor a list".into(),
            }),
        }
    })
}

/// Every persistent id of a record with its form (all forms of spec §11.2).
pub fn scan_references(data: &[u8]) -> Result<Vec<PersistentRef>, RefsError> {
    let bad = |what: &str| RefsError {
        offset: 0,
        what: format!("unrecognised persistent id: {what}"),
    };
    map_pids(data, |raw| {
        let pickle = raw.pickle;
        let r = match &*raw.pid {
            Node::Bytes(_) | Node::Str(_) => PersistentRef {
                form: RefForm::Oid,
                oid: oid_bytes(&raw.pid).unwrap_or_default(),
                class: None,
                database: None,
                pickle,
            },
            Node::Tuple(items, _) => {
                let oid = items
                    .first()
                    .and_then(|o| oid_bytes(o))
                    .ok_or_else(|| bad("tuple without an oid"))?;
                PersistentRef {
                    form: RefForm::OidClass,
                    oid,
                    class: items.get(1).and_then(|c| class_of(c)),
                    database: None,
                    pickle,
                }
            }
            Node::List(items) => {
                let items = items.borrow();
                match items.as_slice() {
                    [single] => PersistentRef {
                        form: RefForm::LegacyWeak,
                        oid: oid_bytes(single).ok_or_else(|| bad("[x] without an oid"))?,
                        class: None,
                        database: None,
                        pickle,
                    },
                    [kind, args] => {
                        let kind = text(kind).ok_or_else(|| bad("list kind is not a string"))?;
                        let Node::Tuple(a, _) = &**args else {
                            return Err(bad("list arguments are not a tuple"));
                        };
                        let arg = |i: usize| a.get(i).map(|x| &**x);
                        match (kind.as_str(), a.len()) {
                            ("w", 1 | 2) => PersistentRef {
                                form: RefForm::Weak,
                                oid: arg(0).and_then(oid_bytes).ok_or_else(|| bad("weak"))?,
                                class: None,
                                database: arg(1).and_then(text),
                                pickle,
                            },
                            ("m", 3) => PersistentRef {
                                form: RefForm::MultiDbClass,
                                oid: arg(1).and_then(oid_bytes).ok_or_else(|| bad("m"))?,
                                class: arg(2).and_then(class_of),
                                database: arg(0).and_then(text),
                                pickle,
                            },
                            ("n", 2) => PersistentRef {
                                form: RefForm::MultiDb,
                                oid: arg(1).and_then(oid_bytes).ok_or_else(|| bad("n"))?,
                                class: None,
                                database: arg(0).and_then(text),
                                pickle,
                            },
                            (k, n) => return Err(bad(&format!("['{k}', <{n} items>]"))),
                        }
                    }
                    _ => return Err(bad("list of unexpected length")),
                }
            }
            _ => return Err(bad("not an oid, tuple or list")),
        };
        Ok(Some(r))
    })
}

/// `ZODB.utils.get_pickle_metadata` as a dotted name: the class of a record from
/// its class pickle, without unpickling (`None` when it cannot be told).
pub fn pickle_class_name(data: &[u8]) -> Option<String> {
    let body = if data.first() == Some(&0x80) {
        data.get(2..)?
    } else {
        data
    };
    let prefix = if body.starts_with(b"(c") {
        2
    } else if body.starts_with(b"c") {
        1
    } else {
        0
    };
    if prefix > 0 {
        let mut parts = body[prefix..].splitn(3, |&c| c == b'\n');
        let module = std::str::from_utf8(parts.next()?).ok()?;
        let name = std::str::from_utf8(parts.next()?).ok()?;
        parts.next()?;
        return Some(format!("{module}.{name}"));
    }
    // Other formats: ((module, name), args) / (module, name) / (class, newargs).
    let mut m = Machine::new(data);
    m.run(0).ok()?;
    let top = m.stack.last()?.clone();
    let Node::Tuple(items, _) = &*top else {
        return None;
    };
    let pair = |n: &Node| match n {
        Node::Tuple(p, _) if p.len() == 2 => Some(format!("{}.{}", text(&p[0])?, text(&p[1])?)),
        _ => None,
    };
    match items.first().map(|x| &**x) {
        Some(first @ Node::Tuple(..)) => pair(first),
        Some(Node::Global(g)) => Some(g.clone()),
        Some(_) => pair(&top),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_name_fast_path_and_tuple_forms() {
        let d = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01.";
        assert_eq!(
            pickle_class_name(d).as_deref(),
            Some("persistent.mapping.PersistentMapping")
        );
        // ((module, name), None)
        let d = b"\x80\x03X\x03\x00\x00\x00modX\x03\x00\x00\x00Cls\x86N\x86.";
        assert_eq!(pickle_class_name(d).as_deref(), Some("mod.Cls"));
        assert_eq!(pickle_class_name(b""), None);
        assert_eq!(pickle_class_name(b"\x80\x03c"), None);
    }

    #[test]
    fn memo_shared_across_the_two_pickles() {
        // class pickle memoizes the GLOBAL in slot 0; state refers to (oid, BINGET 0).
        let mut d = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.".to_vec();
        d.extend(
            b"\x80\x03}q\x01(X\x01\x00\x00\x00aC\x08\x00\x00\x00\x00\x00\x00\x00\x05h\x00\x86Qu.",
        );
        let refs = scan_references(&d).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].form, RefForm::OidClass);
        assert_eq!(
            refs[0].class.as_deref(),
            Some("persistent.mapping.PersistentMapping")
        );
        assert_eq!(references(&d).unwrap(), vec![Oid(5)]);
        // Reading the state alone fails: memo slot 0 is unknown.
        assert!(references(&d[d.iter().position(|&c| c == b'.').unwrap() + 1..]).is_err());
    }

    #[test]
    fn memo_cycles_do_not_leak_or_hang() {
        // [] put 0; get 0 append (list contains itself); then a second pickle.
        let d = b"\x80\x03]q\x00h\x00a.\x80\x03N.";
        assert_eq!(references(d).unwrap(), vec![]);
    }

    #[test]
    fn protocol_0_and_1_records() {
        // Protocol 0: class via GLOBAL, state dict with a persistent id (STRING oid, class).
        let d =
            b"cfoo\nBar\np0\n.(dp1\nS'a'\n(S'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x07'\ng0\ntQs.";
        assert_eq!(references(d).unwrap(), vec![Oid(7)]);
        let r = scan_references(d).unwrap();
        assert_eq!(r[0].class.as_deref(), Some("foo.Bar"));
        // PERSID with a text id.
        let d = b"cfoo\nBar\n.P12345678\n.";
        assert_eq!(
            references(d).unwrap(),
            vec![Oid(u64::from_be_bytes(*b"12345678"))]
        );
    }
}
