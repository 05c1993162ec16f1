//! A small re-implementation of the parts of Python's `argparse` (3.11) that
//! `cache_stats.py` and `cache_simul.py` use, so that `zeo cache-stats` and
//! `zeo cache-simul` accept exactly the same command lines and print byte-identical
//! usage errors: long-option abbreviations, `--opt=value`, clustered short flags
//! (`-vs`), attached values (`-i5`), `--`, negative numbers as values, one positional,
//! a mutually exclusive pair, and the order in which argparse reports errors.
//!
//! Invariant: parsing never panics; every failure is an `ArgError` holding the exact
//! message argparse prints after `prog: error: `.

use std::ffi::{OsStr, OsString};

use super::format::py_str_repr;

/// What an option does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `store_true` / `store_false`: no value.
    Flag,
    /// Takes exactly one value.
    Value,
    /// `-h`/`--help` of a parser with normal help: print help, exit 0.
    Help,
}

/// One option: its key for the caller and its option strings in declaration order.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    pub key: &'static str,
    pub strings: &'static [&'static str],
    pub kind: Kind,
}

/// A parser description.
pub struct Spec {
    /// Options in declaration order (argparse lists ambiguous matches in this order).
    pub opts: &'static [Opt],
    /// Name of the single required positional.
    pub positional: &'static str,
    /// Keys of two mutually exclusive options, if any.
    pub exclusive: Option<(&'static str, &'static str)>,
}

/// The receiver of parsed values, called in command-line order like argparse's actions.
pub trait Handler {
    /// A flag was given.
    fn flag(&mut self, key: &str);
    /// A value option was given; `Err` is argparse's message tail, e.g.
    /// `invalid float value: 'x'`.
    fn value(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// The positional was given (the trace file is opened here, as FileType does).
    fn positional(&mut self, value: &OsStr) -> Result<(), String>;
}

/// Outcome of a parse that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Ok,
    /// `-h`/`--help` seen (parsers with normal help only).
    Help,
}

/// A usage error: the text after `prog: error: `.
#[derive(Debug, PartialEq, Eq)]
pub struct ArgError(pub String);

#[derive(Clone, Debug)]
enum Class {
    /// A positional-looking argument.
    Arg,
    /// The `--` marker.
    Dashes,
    /// An option: index into opts (None = unknown), the option string, explicit value.
    Opt(Option<usize>, String, Option<String>),
}

impl Spec {
    fn lookup(&self, s: &str) -> Option<usize> {
        self.opts.iter().position(|o| o.strings.contains(&s))
    }

    fn name(&self, i: usize) -> String {
        self.opts[i].strings.join("/")
    }

    fn all_strings(&self) -> impl Iterator<Item = (usize, &'static str)> + '_ {
        self.opts
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.strings.iter().map(move |s| (i, *s)))
    }

    /// argparse's `_parse_optional`.
    fn classify(&self, arg: &str) -> Result<Class, ArgError> {
        if arg.is_empty() || !arg.starts_with('-') {
            return Ok(Class::Arg);
        }
        if let Some(i) = self.lookup(arg) {
            return Ok(Class::Opt(Some(i), arg.to_string(), None));
        }
        if arg.len() == 1 {
            return Ok(Class::Arg);
        }
        if let Some((opt, val)) = arg.split_once('=') {
            if let Some(i) = self.lookup(opt) {
                return Ok(Class::Opt(Some(i), opt.to_string(), Some(val.to_string())));
            }
        }
        let tuples = self.option_tuples(arg);
        if tuples.len() > 1 {
            let names: Vec<&str> = tuples.iter().map(|t| t.1).collect();
            return Err(ArgError(format!(
                "ambiguous option: {arg} could match {}",
                names.join(", ")
            )));
        }
        if let Some((i, s, explicit)) = tuples.into_iter().next() {
            return Ok(Class::Opt(Some(i), s.to_string(), explicit));
        }
        if is_negative_number(arg) || arg.contains(' ') {
            return Ok(Class::Arg);
        }
        Ok(Class::Opt(None, arg.to_string(), None))
    }

    /// argparse's `_get_option_tuples` (abbreviations and attached short values).
    fn option_tuples(&self, arg: &str) -> Vec<(usize, &'static str, Option<String>)> {
        let mut out = Vec::new();
        if arg.starts_with("--") {
            let (prefix, explicit) = match arg.split_once('=') {
                Some((p, v)) => (p, Some(v.to_string())),
                None => (arg, None),
            };
            for (i, s) in self.all_strings() {
                if s.starts_with(prefix) {
                    out.push((i, s, explicit.clone()));
                }
            }
        } else {
            let short = arg.get(..2).unwrap_or(arg);
            let short_explicit = arg.get(2..).unwrap_or("").to_string();
            for (i, s) in self.all_strings() {
                if s == short {
                    out.push((i, s, Some(short_explicit.clone())));
                } else if s.starts_with(arg) {
                    out.push((i, s, None));
                }
            }
        }
        out
    }

    /// Parse `args` (without the program name), calling `h` in argparse's order.
    pub fn parse(&self, args: &[OsString], h: &mut dyn Handler) -> Result<Parsed, ArgError> {
        let texts: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // Classify everything first: argparse reports ambiguity before anything else.
        let mut classes = Vec::with_capacity(args.len());
        let mut after_dashes = false;
        for t in &texts {
            if after_dashes {
                classes.push(Class::Arg);
            } else if t == "--" {
                after_dashes = true;
                classes.push(Class::Dashes);
            } else {
                classes.push(self.classify(t)?);
            }
        }
        let mut st = State {
            spec: self,
            args,
            texts: &texts,
            classes: &classes,
            positional_done: false,
            seen: Vec::new(),
            extras: Vec::new(),
        };
        let opt_indices: Vec<usize> = (0..classes.len())
            .filter(|&i| matches!(classes[i], Class::Opt(..)))
            .collect();
        let mut start = 0;
        while let Some(&next_opt) = opt_indices.iter().find(|&&i| i >= start) {
            if start != next_opt {
                let end = st.consume_positionals(start, h)?;
                if end > start {
                    start = end;
                    continue;
                }
            }
            if start != next_opt {
                st.extras.extend(texts[start..next_opt].iter().cloned());
                start = next_opt;
            }
            match st.consume_optional(start, h)? {
                Step::Next(i) => start = i,
                Step::Help => return Ok(Parsed::Help),
            }
        }
        let stop = st.consume_positionals(start, h)?;
        st.extras
            .extend(texts[stop.min(texts.len())..].iter().cloned());
        if !st.positional_done {
            return Err(ArgError(format!(
                "the following arguments are required: {}",
                self.positional
            )));
        }
        if !st.extras.is_empty() {
            return Err(ArgError(format!(
                "unrecognized arguments: {}",
                st.extras.join(" ")
            )));
        }
        Ok(Parsed::Ok)
    }
}

enum Step {
    Next(usize),
    Help,
}

struct State<'a> {
    spec: &'a Spec,
    args: &'a [OsString],
    texts: &'a [String],
    classes: &'a [Class],
    positional_done: bool,
    seen: Vec<usize>,
    extras: Vec<String>,
}

impl State<'_> {
    /// Match the positional (`-*A-*`) at `start`; returns the index after it.
    fn consume_positionals(
        &mut self,
        start: usize,
        h: &mut dyn Handler,
    ) -> Result<usize, ArgError> {
        if self.positional_done {
            return Ok(start);
        }
        let mut i = start;
        while matches!(self.classes.get(i), Some(Class::Dashes)) {
            i += 1;
        }
        if !matches!(self.classes.get(i), Some(Class::Arg)) {
            return Ok(start);
        }
        let value_at = i;
        i += 1;
        while matches!(self.classes.get(i), Some(Class::Dashes)) {
            i += 1;
        }
        self.positional_done = true;
        h.positional(&self.args[value_at])
            .map_err(|m| ArgError(format!("argument {}: {m}", self.spec.positional)))?;
        Ok(i)
    }

    fn take(
        &mut self,
        opt: usize,
        value: Option<&str>,
        h: &mut dyn Handler,
    ) -> Result<bool, ArgError> {
        let spec = self.spec;
        let o = spec.opts[opt];
        match (o.kind, value) {
            (Kind::Help, _) => return Ok(true),
            (Kind::Flag, _) => h.flag(o.key),
            (Kind::Value, Some(v)) => h
                .value(o.key, v)
                .map_err(|m| ArgError(format!("argument {}: {m}", spec.name(opt))))?,
            (Kind::Value, None) => {
                return Err(ArgError(format!(
                    "argument {}: expected one argument",
                    spec.name(opt)
                )))
            }
        }
        if let Some((a, b)) = spec.exclusive {
            let other = if o.key == a {
                Some(b)
            } else if o.key == b {
                Some(a)
            } else {
                None
            };
            if let Some(other) = other {
                if let Some(&j) = self.seen.iter().find(|&&j| spec.opts[j].key == other) {
                    return Err(ArgError(format!(
                        "argument {}: not allowed with argument {}",
                        spec.name(opt),
                        spec.name(j)
                    )));
                }
            }
        }
        self.seen.push(opt);
        Ok(false)
    }

    /// argparse's `consume_optional` for the option at `start`.
    fn consume_optional(&mut self, start: usize, h: &mut dyn Handler) -> Result<Step, ArgError> {
        let Class::Opt(first, ref first_str, ref first_explicit) = self.classes[start] else {
            return Ok(Step::Next(start + 1));
        };
        let Some(mut opt) = first else {
            self.extras.push(self.texts[start].clone());
            return Ok(Step::Next(start + 1));
        };
        let mut option_string = first_str.clone();
        let mut explicit = first_explicit.clone();
        // Flags of a cluster (`-vsh`) are taken only once the whole cluster parsed.
        let mut pending: Vec<usize> = Vec::new();
        let (last_value, stop): (Option<String>, usize) = loop {
            let kind = self.spec.opts[opt].kind;
            let takes_value = kind == Kind::Value;
            match explicit.take() {
                Some(ex) => {
                    let long = option_string.as_bytes().get(1) == Some(&b'-');
                    if !takes_value && !long && !ex.is_empty() {
                        pending.push(opt);
                        let first_char: String = ex.chars().take(1).collect();
                        let rest: String = ex.chars().skip(1).collect();
                        option_string = format!("-{first_char}");
                        match self.spec.lookup(&option_string) {
                            Some(next) => {
                                opt = next;
                                explicit = if rest.is_empty() { None } else { Some(rest) };
                            }
                            None => {
                                return Err(ArgError(format!(
                                    "argument {}: ignored explicit argument {}",
                                    self.spec.name(opt),
                                    py_str_repr(&ex)
                                )))
                            }
                        }
                    } else if takes_value {
                        break (Some(ex), start + 1);
                    } else {
                        return Err(ArgError(format!(
                            "argument {}: ignored explicit argument {}",
                            self.spec.name(opt),
                            py_str_repr(&ex)
                        )));
                    }
                }
                None => {
                    if takes_value {
                        // The value must be the next argument and must look positional.
                        match self.classes.get(start + 1) {
                            Some(Class::Arg) => {
                                break (Some(self.texts[start + 1].clone()), start + 2)
                            }
                            _ => break (None, start + 1),
                        }
                    }
                    break (None, start + 1);
                }
            }
        };
        if self.spec.opts[opt].kind == Kind::Value && last_value.is_none() {
            return Err(ArgError(format!(
                "argument {}: expected one argument",
                self.spec.name(opt)
            )));
        }
        for p in pending {
            if self.take(p, None, h)? {
                return Ok(Step::Help);
            }
        }
        if self.take(opt, last_value.as_deref(), h)? {
            return Ok(Step::Help);
        }
        Ok(Step::Next(stop))
    }
}

/// argparse's `^-\d+$|^-\d*\.\d+$`.
fn is_negative_number(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('-') else {
        return false;
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    match rest.split_once('.') {
        None => !rest.is_empty() && digits(rest),
        Some((a, b)) => digits(a) && !b.is_empty() && digits(b),
    }
}

/// The message `FileType` gives when a file cannot be opened:
/// `can't open 'x': [Errno 2] No such file or directory: 'x'`.
pub fn cant_open(name: &OsStr, err: &std::io::Error) -> String {
    let n = py_str_repr(&name.to_string_lossy());
    match err.raw_os_error() {
        Some(code) => {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            let suffix = format!(" (os error {code})");
            let text = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("can't open {n}: [Errno {code}] {text}: {n}")
        }
        None => format!("can't open {n}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt {
            key: "verbose",
            strings: &["--verbose", "-v"],
            kind: Kind::Flag,
        },
        Opt {
            key: "quiet",
            strings: &["--quiet", "-q"],
            kind: Kind::Flag,
        },
        Opt {
            key: "sizes",
            strings: &["--sizes", "-s"],
            kind: Kind::Flag,
        },
        Opt {
            key: "nostats",
            strings: &["--no-stats", "-S"],
            kind: Kind::Flag,
        },
        Opt {
            key: "interval",
            strings: &["--interval", "-i"],
            kind: Kind::Value,
        },
        Opt {
            key: "size",
            strings: &["--size"],
            kind: Kind::Value,
        },
    ];
    const SPEC: Spec = Spec {
        opts: OPTS,
        positional: "tracefile",
        exclusive: Some(("verbose", "quiet")),
    };

    #[derive(Default)]
    struct Rec(Vec<String>);
    impl Handler for Rec {
        fn flag(&mut self, key: &str) {
            self.0.push(key.to_string());
        }
        fn value(&mut self, key: &str, v: &str) -> Result<(), String> {
            if v == "bad" {
                return Err(format!("invalid float value: {}", py_str_repr(v)));
            }
            self.0.push(format!("{key}={v}"));
            Ok(())
        }
        fn positional(&mut self, v: &OsStr) -> Result<(), String> {
            self.0.push(format!("pos={}", v.to_string_lossy()));
            Ok(())
        }
    }

    fn run(args: &[&str]) -> Result<Vec<String>, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let mut r = Rec::default();
        SPEC.parse(&args, &mut r).map(|_| r.0).map_err(|e| e.0)
    }

    #[test]
    fn basic_forms() {
        assert_eq!(run(&["-v", "f"]).unwrap(), ["verbose", "pos=f"]);
        assert_eq!(run(&["f", "-i5"]).unwrap(), ["pos=f", "interval=5"]);
        assert_eq!(run(&["-i=5", "f"]).unwrap(), ["interval=5", "pos=f"]);
        assert_eq!(run(&["--int=5", "f"]).unwrap(), ["interval=5", "pos=f"]);
        assert_eq!(
            run(&["--inter", "5", "f"]).unwrap(),
            ["interval=5", "pos=f"]
        );
        assert_eq!(
            run(&["-vsi", "2", "f"]).unwrap(),
            ["verbose", "sizes", "interval=2", "pos=f"]
        );
        assert_eq!(run(&["-i", "-5", "f"]).unwrap(), ["interval=-5", "pos=f"]);
        assert_eq!(run(&["--", "-f"]).unwrap(), ["pos=-f"]);
        assert_eq!(run(&["-"]).unwrap(), ["pos=-"]);
    }

    #[test]
    fn errors_like_argparse() {
        assert_eq!(
            run(&["-v", "-q", "f"]).unwrap_err(),
            "argument --quiet/-q: not allowed with argument --verbose/-v"
        );
        assert_eq!(
            run(&["-qv", "f"]).unwrap_err(),
            "argument --verbose/-v: not allowed with argument --quiet/-q"
        );
        assert_eq!(
            run(&[]).unwrap_err(),
            "the following arguments are required: tracefile"
        );
        assert_eq!(run(&["f", "g"]).unwrap_err(), "unrecognized arguments: g");
        assert_eq!(run(&["-z", "f"]).unwrap_err(), "unrecognized arguments: -z");
        assert_eq!(
            run(&["f", "-i"]).unwrap_err(),
            "argument --interval/-i: expected one argument"
        );
        assert_eq!(
            run(&["-i", "-v", "f"]).unwrap_err(),
            "argument --interval/-i: expected one argument"
        );
        assert_eq!(
            run(&["-i", "bad", "f"]).unwrap_err(),
            "argument --interval/-i: invalid float value: 'bad'"
        );
        assert_eq!(
            run(&["--s", "f"]).unwrap_err(),
            "ambiguous option: --s could match --sizes, --size"
        );
        assert_eq!(
            run(&["-vz", "f"]).unwrap_err(),
            "argument --verbose/-v: ignored explicit argument 'z'"
        );
        assert_eq!(
            run(&["--verbose=1", "f"]).unwrap_err(),
            "argument --verbose/-v: ignored explicit argument '1'"
        );
    }

    #[test]
    fn negative_numbers() {
        assert!(is_negative_number("-1"));
        assert!(is_negative_number("-.5"));
        assert!(is_negative_number("-1.5"));
        assert!(!is_negative_number("-1."));
        assert!(!is_negative_number("-a"));
    }

    #[test]
    fn cant_open_message() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            cant_open(OsStr::new("x"), &e),
            "can't open 'x': [Errno 2] No such file or directory: 'x'"
        );
    }
}
