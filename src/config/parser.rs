//! The ZConfig text syntax, schema-free: text (plus its file name) to a tree of sections
//! and keys, each with the file and line it came from.
//!
//! Rules (as ZConfig's `cfgparser` and `substitution` apply them): lines are split on
//! `\n` and stripped; blank lines and lines starting with `#` are ignored (a `#` later in
//! a line is part of the value); `<type [name]>` opens a section, `<type [name]/>` is an
//! empty one, `</type>` closes it; section types and names are lower-cased; `key value`
//! lines keep the key as written (the schema layer lower-cases it) and the value after
//! the first run of blanks; `%define name value`, `%include path` (relative to the
//! including file, into the current section) and `%import package`; `$name`, `${name}`,
//! `$(ENV)` and `$$` in values, `%define`, `%include` and `%import` arguments.
//!
//! Invariants: pure apart from the [`Host`] (file reads for `%include`, environment for
//! `$(ENV)`); never panics; include depth is bounded; every error names file and line.

use super::units::{py_is_space, py_split, py_strip, Host};
use super::ConfigError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Rc<PathBuf>,
    pub line: usize,
}

impl Pos {
    /// An error at this position.
    pub fn error(&self, key: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(self.file.as_ref().clone()),
            line: (self.line > 0).then_some(self.line),
            key,
            message: message.into(),
        }
    }
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key as written.
    pub key: String,
    /// The value after substitution ('' when absent).
    pub value: String,
    pub pos: Pos,
}

/// A section (the document root is a section with an empty type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Lower-cased section type; empty for the root.
    pub type_: String,
    /// Lower-cased section name, if one was given.
    pub name: Option<String>,
    /// The opening line.
    pub pos: Pos,
    pub keys: Vec<KeyValue>,
    pub sections: Vec<Section>,
}

impl Section {
    /// How messages name this section: `<filestorage 1>`, `<zeo>`, `top level`.
    pub fn label(&self) -> String {
        match (&self.type_, &self.name) {
            (t, _) if t.is_empty() => "top level".to_string(),
            (t, Some(n)) => format!("<{t} {n}>"),
            (t, None) => format!("<{t}>"),
        }
    }
}

/// Packages whose `%import` is accepted: the components runzeo's schema already has.
pub const IMPORTABLE: &[&str] = &[
    "ZODB",
    "ZEO",
    "ZConfig.components.logger",
    "zdaemon",
    "ZConfig.components.basic",
];

/// How deep `%include` may nest (ZConfig only stops at Python's recursion limit).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// How many `%include`s one configuration may perform in all.
pub const MAX_INCLUDES: usize = 1000;
/// Longest value substitution may produce (defines can otherwise double per line).
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// How deep sections may nest.
pub const MAX_SECTION_DEPTH: usize = 64;

/// Parse `text`, read from `file`, into its root section.
pub fn parse(text: &str, file: &Path, host: &dyn Host) -> Result<Section, ConfigError> {
    let file = Rc::new(file.to_path_buf());
    let mut root = Section {
        type_: String::new(),
        name: None,
        pos: Pos {
            file: file.clone(),
            line: 0,
        },
        keys: Vec::new(),
        sections: Vec::new(),
    };
    let mut p = Parser {
        host,
        defines: HashMap::new(),
        depth: 0,
        includes: 0,
    };
    p.parse_into(text, file, &mut root)?;
    Ok(root)
}

struct Parser<'h> {
    host: &'h dyn Host,
    defines: HashMap<String, String>,
    depth: usize,
    includes: usize,
}

/// Split `key rest` the way ZConfig's `_keyvalue_rx` does: the key is the leading run
/// of characters that are neither blank nor parentheses (at least one), the value is
/// what follows the blanks after it.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let end = line
        .char_indices()
        .find(|&(_, c)| py_is_space(c) || c == '(' || c == ')')
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    let (key, rest) = line.split_at(end);
    Some((key, rest.trim_start_matches(py_is_space)))
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A legal `%define` name.
fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_name_start) && cs.all(is_name_char)
}

/// ZConfig substitution over `s`: `$$`, `$name`, `${name}` (defines, case-insensitive)
/// and `$(NAME)` (environment).
pub fn substitute(
    s: &str,
    defines: &HashMap<String, String>,
    host: &dyn Host,
) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(c) = after.chars().next() else {
            return Err("illegal lone '$' at end of source".to_string());
        };
        if c == '$' {
            out.push('$');
            rest = &after[1..];
            continue;
        }
        let (name, tail, env) = match c {
            '{' | '(' => {
                let close = if c == '{' { '}' } else { ')' };
                let inner = &after[1..];
                let n = inner
                    .find(|ch: char| !is_name_char(ch))
                    .unwrap_or(inner.len());
                let name = &inner[..n];
                if !name.chars().next().is_some_and(is_name_start) {
                    return Err(format!("'${c}' not followed by name"));
                }
                if !inner[n..].starts_with(close) {
                    return Err(format!("'${c}{name}' not followed by '{close}'"));
                }
                (name, &inner[n + 1..], c == '(')
            }
            _ => {
                if !is_name_start(c) {
                    return Err("'$' not followed by '$' or name".to_string());
                }
                let n = after
                    .find(|ch: char| !is_name_char(ch))
                    .unwrap_or(after.len());
                (&after[..n], &after[n..], false)
            }
        };
        let value = if env {
            host.env_var(name)
        } else {
            defines.get(&name.to_ascii_lowercase()).cloned()
        };
        match value {
            Some(v) => out.push_str(&v),
            None => return Err(format!("no replacement for '{name}'")),
        }
        if out.len() > MAX_VALUE_LEN {
            return Err(format!(
                "value longer than {MAX_VALUE_LEN} bytes after substitution"
            ));
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

impl Parser<'_> {
    fn replace(&self, s: &str, pos: &Pos) -> Result<String, ConfigError> {
        substitute(s, &self.defines, self.host).map_err(|m| pos.error(None, m))
    }

    /// Parse one file's text into `into` (the root, or the section an `%include` is in).
    fn parse_into(
        &mut self,
        text: &str,
        file: Rc<PathBuf>,
        into: &mut Section,
    ) -> Result<(), ConfigError> {
        // The open sections of this file; `into` is below them all.
        let mut stack: Vec<Section> = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let lineno = index + 1;
            let pos = Pos {
                file: file.clone(),
                line: lineno,
            };
            let line = py_strip(raw);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("</") {
                let Some(rest) = rest.strip_suffix('>') else {
                    return Err(pos.error(None, "malformed section end"));
                };
                let type_ = rest.trim_end_matches(py_is_space).to_lowercase();
                let Some(done) = stack.pop() else {
                    return Err(pos.error(None, "unexpected section end"));
                };
                if done.type_ != type_ {
                    return Err(pos.error(
                        None,
                        format!(
                            "unbalanced section end: {} closed by </{type_}>",
                            done.label()
                        ),
                    ));
                }
                stack.last_mut().unwrap_or(&mut *into).sections.push(done);
            } else if let Some(rest) = line.strip_prefix('<') {
                let Some(rest) = rest.strip_suffix('>') else {
                    return Err(pos.error(None, "malformed section start"));
                };
                let (rest, empty) = match rest.strip_suffix('/') {
                    Some(r) => (r, true),
                    None => (rest, false),
                };
                let text = rest.trim_end_matches(py_is_space);
                let (type_, name) = parse_section_header(text)
                    .ok_or_else(|| pos.error(None, "malformed section header"))?;
                if stack.len() >= MAX_SECTION_DEPTH {
                    return Err(pos.error(None, "sections nested too deeply"));
                }
                let section = Section {
                    type_: type_.to_lowercase(),
                    name: name.map(str::to_lowercase),
                    pos: pos.clone(),
                    keys: Vec::new(),
                    sections: Vec::new(),
                };
                if empty {
                    stack
                        .last_mut()
                        .unwrap_or(&mut *into)
                        .sections
                        .push(section);
                } else {
                    stack.push(section);
                }
            } else if let Some(rest) = line.strip_prefix('%') {
                let current = match stack.last_mut() {
                    Some(s) => s,
                    None => &mut *into,
                };
                self.directive(rest, &pos, current)?;
            } else {
                let (key, value) = split_key_value(line)
                    .ok_or_else(|| pos.error(None, "malformed configuration data"))?;
                let value = self.replace(value, &pos)?;
                let kv = KeyValue {
                    key: key.to_string(),
                    value,
                    pos,
                };
                stack.last_mut().unwrap_or(&mut *into).keys.push(kv);
            }
        }
        if let Some(open) = stack.last() {
            return Err(open
                .pos
                .error(None, format!("unclosed section {}", open.label())));
        }
        Ok(())
    }

    fn directive(
        &mut self,
        rest: &str,
        pos: &Pos,
        current: &mut Section,
    ) -> Result<(), ConfigError> {
        let (name, arg) = split_key_value(rest)
            .ok_or_else(|| pos.error(None, "missing or unrecognized directive"))?;
        if !matches!(name, "define" | "import" | "include") {
            return Err(pos.error(None, format!("unknown directive: '{name}'")));
        }
        if arg.is_empty() {
            return Err(pos.error(None, format!("missing argument to %{name} directive")));
        }
        match name {
            "define" => {
                let parts = py_split(arg);
                let defname = parts.first().copied().unwrap_or_default().to_lowercase();
                // The value is what follows the name and its blanks, kept as written.
                let raw = arg
                    .trim_start_matches(py_is_space)
                    .split_once(py_is_space)
                    .map(|(_, v)| v.trim_start_matches(py_is_space))
                    .unwrap_or("");
                if let Some(old) = self.defines.get(&defname) {
                    if old != raw {
                        return Err(pos.error(None, format!("cannot redefine '{defname}'")));
                    }
                }
                if !is_name(&defname) {
                    return Err(
                        pos.error(None, format!("not a substitution legal name: '{defname}'"))
                    );
                }
                let value = self.replace(raw, pos)?;
                self.defines.insert(defname, value);
            }
            "import" => {
                let pkg = self.replace(py_strip(arg), pos)?;
                if !IMPORTABLE.contains(&pkg.as_str()) {
                    return Err(pos.error(
                        None,
                        format!(
                            "cannot %import '{pkg}': zeo serve understands only the \
                             components of runzeo's own schema ({})",
                            IMPORTABLE.join(", ")
                        ),
                    ));
                }
            }
            _ => {
                let target = self.replace(py_strip(arg), pos)?;
                let path = resolve_include(&pos.file, &target).map_err(|m| pos.error(None, m))?;
                self.includes += 1;
                if self.includes > MAX_INCLUDES {
                    return Err(pos.error(
                        None,
                        format!("more than {MAX_INCLUDES} %include directives in all"),
                    ));
                }
                if self.depth >= MAX_INCLUDE_DEPTH {
                    return Err(pos.error(
                        None,
                        format!("%include nested more than {MAX_INCLUDE_DEPTH} deep"),
                    ));
                }
                let text = self.host.read_file(&path).map_err(|e| {
                    pos.error(None, format!("error opening file {}: {e}", path.display()))
                })?;
                self.depth += 1;
                let result = self.parse_into(&text, Rc::new(path), current);
                self.depth -= 1;
                result?;
            }
        }
        Ok(())
    }
}

/// `type` or `type name`: runs of non-blank, non-parenthesis characters.
fn parse_section_header(text: &str) -> Option<(&str, Option<&str>)> {
    let (type_, rest) = split_key_value(text)?;
    if rest.is_empty() {
        // `text` was exactly one word, or the word was followed by a parenthesis.
        return (type_.len() == text.len()).then_some((type_, None));
    }
    if type_.len() == text.len() || !text[type_.len()..].starts_with(py_is_space) {
        return None;
    }
    let (name, tail) = split_key_value(rest)?;
    tail.is_empty()
        .then_some(())
        .filter(|_| name.len() == rest.len())
        .map(|_| (type_, Some(name)))
}

/// The file an `%include` names: `file:` URLs and absolute paths as they are, relative
/// paths against the including file's directory.
fn resolve_include(including: &Path, target: &str) -> Result<PathBuf, String> {
    let path = if let Some(p) = target.strip_prefix("file://") {
        p
    } else if let Some(p) = target.strip_prefix("file:") {
        p
    } else if let Some((scheme, _)) = target.split_once("://") {
        return Err(format!(
            "cannot %include '{target}': only files are supported, not {scheme} URLs"
        ));
    } else {
        target
    };
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        including
            .parent()
            .map(|d| d.join(p))
            .unwrap_or_else(|| p.to_path_buf())
    };
    Ok(normalize(&joined))
}

/// Resolve `.` and `..` lexically, as URL joining does.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with in-memory files and a fixed environment.
    pub struct MemHost(pub Vec<(&'static str, &'static str)>);
    impl Host for MemHost {
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            self.0
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn env_var(&self, name: &str) -> Option<String> {
            (name == "ZEO_PORT").then(|| "9100".to_string())
        }
        fn is_dir(&self, _: &Path) -> bool {
            true
        }
        fn exists(&self, _: &Path) -> bool {
            true
        }
        fn user_home(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn p(text: &str) -> Result<Section, ConfigError> {
        parse(text, Path::new("etc/zeo.conf"), &MemHost(vec![]))
    }

    fn err(text: &str) -> (usize, String) {
        let e = p(text).expect_err("should fail");
        (e.line.unwrap_or(0), e.message)
    }

    #[test]
    fn sections_keys_comments() {
        let root = p(
            "# comment\n\n<ZEO>\n  Address  localhost:8100 # not a comment\n\
                      read-only\n</Zeo >\n<filestorage Main/>\n",
        )
        .unwrap();
        assert_eq!(root.sections.len(), 2);
        let zeo = &root.sections[0];
        assert_eq!(zeo.type_, "zeo");
        assert_eq!(zeo.name, None);
        assert_eq!(zeo.pos.line, 3);
        assert_eq!(zeo.keys[0].key, "Address");
        assert_eq!(zeo.keys[0].value, "localhost:8100 # not a comment");
        assert_eq!(zeo.keys[0].pos.line, 4);
        assert_eq!(zeo.keys[1].value, "");
        let fs = &root.sections[1];
        assert_eq!(
            (fs.type_.as_str(), fs.name.as_deref()),
            ("filestorage", Some("main"))
        );
        assert_eq!(fs.label(), "<filestorage main>");
    }

    #[test]
    fn odd_but_legal_lines() {
        let root = p("key(x) y\nk\tv  w\r\n<a\tb >\n</a>\n").unwrap();
        assert_eq!(root.keys[0].key, "key");
        assert_eq!(root.keys[0].value, "(x) y");
        assert_eq!(root.keys[1].value, "v  w");
        assert_eq!(root.sections[0].name.as_deref(), Some("b"));
    }

    #[test]
    fn syntax_errors_have_lines() {
        assert_eq!(err("<zeo>\n</zeo\n"), (2, "malformed section end".into()));
        assert_eq!(err("\n<zeo\n"), (2, "malformed section start".into()));
        assert_eq!(
            err("< zeo>\n</zeo>\n"),
            (1, "malformed section header".into())
        );
        assert_eq!(
            err("<a b c>\n</a>\n"),
            (1, "malformed section header".into())
        );
        assert_eq!(err("<>\n"), (1, "malformed section header".into()));
        assert_eq!(
            err("<a(b)>\n</a>\n"),
            (1, "malformed section header".into())
        );
        assert_eq!(err("</zeo>\n"), (1, "unexpected section end".into()));
        assert!(err("<a>\n</b>\n").1.starts_with("unbalanced section end"));
        assert_eq!(err("x\n<a>\nk v\n").0, 2);
        assert_eq!(err("(x) y\n"), (1, "malformed configuration data".into()));
        assert_eq!(err("%foo bar\n").1, "unknown directive: 'foo'");
        assert_eq!(err("%Define a b\n").1, "unknown directive: 'Define'");
        assert_eq!(err("% define a\n").1, "missing or unrecognized directive");
        assert_eq!(err("%define\n").1, "missing argument to %define directive");
        assert_eq!(
            err("%define 1x y\n").1,
            "not a substitution legal name: '1x'"
        );
        assert_eq!(err("%import ZODB\n%import relstorage\n").0, 2);
    }

    #[test]
    fn defines_and_substitution() {
        let root = p("%define Port 8100\n%define host  local host \n\
                      %define both $host:${PORT}\nboth $BOTH\nlit $$x\nenv $(ZEO_PORT)\n\
                      %define port 8100\n")
        .unwrap();
        assert_eq!(root.keys[0].value, "local host:8100");
        assert_eq!(root.keys[1].value, "$x");
        assert_eq!(root.keys[2].value, "9100");
        assert_eq!(
            err("%define a 1\n%define a 2\n"),
            (2, "cannot redefine 'a'".into())
        );
        // ZConfig compares the stored (substituted) value with the new raw text.
        assert_eq!(err("%define b 1\n%define a $b\n%define a $b\n").0, 3);
        assert_eq!(err("k $nope\n").1, "no replacement for 'nope'");
        assert_eq!(
            err("k\n\nk $\n"),
            (3, "illegal lone '$' at end of source".into())
        );
        assert_eq!(err("k ${ a}\n").1, "'${' not followed by name");
        assert_eq!(err("%define a 1\nk ${a\n").1, "'${a' not followed by '}'");
        assert_eq!(err("k $(NOPE)\n").1, "no replacement for 'NOPE'");
        assert_eq!(err("k $-\n").1, "'$' not followed by '$' or name");
        assert_eq!(err("k $(zeo_port)\n").1, "no replacement for 'zeo_port'");
    }

    #[test]
    fn includes_relative_to_including_file() {
        let host = MemHost(vec![
            ("etc/zeo.conf", ""),
            (
                "etc/parts/storage.conf",
                "<filestorage>\n%include ../keys.conf\n</filestorage>\n",
            ),
            ("etc/keys.conf", "path $dir/Data.fs\n"),
            ("/abs.conf", "x 1\n"),
            ("etc/open.conf", "<zeo>\n"),
            ("etc/self.conf", "%include self.conf\n"),
        ]);
        let root = parse(
            "%define dir /srv\n%include parts/storage.conf\n<zeo>\n%include /abs.conf\n</zeo>\n",
            Path::new("etc/zeo.conf"),
            &host,
        )
        .unwrap();
        let fs = &root.sections[0];
        assert_eq!(fs.keys[0].value, "/srv/Data.fs");
        assert_eq!(*fs.keys[0].pos.file, PathBuf::from("etc/keys.conf"));
        assert_eq!(fs.keys[0].pos.line, 1);
        assert_eq!(root.sections[1].keys[0].key, "x");
        let e = parse("%include open.conf\n", Path::new("etc/zeo.conf"), &host).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(Path::new("etc/open.conf")));
        assert!(e.message.starts_with("unclosed section"));
        let e = parse("%include missing.conf\n", Path::new("etc/zeo.conf"), &host).unwrap_err();
        assert!(e.message.contains("etc/missing.conf"), "{e}");
        let e = parse("%include self.conf\n", Path::new("etc/zeo.conf"), &host).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        let fan = MemHost(vec![("etc/f.conf", "%include f.conf\n%include f.conf\n")]);
        let e = parse("%include f.conf\n", Path::new("etc/zeo.conf"), &fan).unwrap_err();
        assert!(
            e.message.contains("nested") || e.message.contains("in all"),
            "{e}"
        );
        let mut doubling = String::from("%define a0 xxxxxxxx\n");
        for i in 1..40 {
            doubling.push_str(&format!("%define a{i} $a{}$a{}\n", i - 1, i - 1));
        }
        assert!(p(&doubling).unwrap_err().message.contains("longer than"));
        let e = parse("%include http://x/y\n", Path::new("etc/zeo.conf"), &host).unwrap_err();
        assert!(e.message.contains("http"), "{e}");
    }

    #[test]
    fn header_forms() {
        assert_eq!(parse_section_header("zeo"), Some(("zeo", None)));
        assert_eq!(
            parse_section_header("filestorage 1"),
            Some(("filestorage", Some("1")))
        );
        assert_eq!(parse_section_header("a  b"), Some(("a", Some("b"))));
        assert_eq!(parse_section_header("a(b"), None);
        assert_eq!(parse_section_header("a b(c"), None);
        assert_eq!(parse_section_header(""), None);
    }
}
