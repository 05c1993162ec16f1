//! runzeo's `-X path/to/key=value` overrides (ZConfig's command-line option bag) applied
//! to a parsed tree before the schema is.
//!
//! Rules as ZConfig applies them: each path segment but the last names a section by
//! its name or its type (case-insensitive), the first matching section in file order
//! takes the override; the last segment is a key whose values in the file are replaced;
//! an override that matches no section is an error; `//` and a missing `=` are errors.

use super::parser::{KeyValue, Pos, Section};
use super::ConfigError;
use std::path::PathBuf;
use std::rc::Rc;

/// Where override errors point.
const ORIGIN: &str = "<command-line option>";

fn error(spec: &str, message: &str) -> ConfigError {
    ConfigError {
        file: None,
        line: None,
        key: Some(format!("-X {spec}")),
        message: message.to_string(),
    }
}

/// Apply every `spec` (`path/to/key=value`) to `root`.
pub fn apply(root: &mut Section, specs: &[String]) -> Result<(), ConfigError> {
    let origin = Rc::new(PathBuf::from(ORIGIN));
    let mut items: Vec<(Vec<String>, String, &str)> = Vec::new();
    for spec in specs {
        let Some((path, value)) = spec.split_once('=') else {
            return Err(error(
                spec,
                "invalid configuration specifier (expected path=value)",
            ));
        };
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(error(spec, "'//' is not allowed in an option path"));
        }
        items.push((segments, value.to_string(), spec));
    }
    let left = apply_in(root, items, &origin)?;
    if let Some((_, _, spec)) = left.first() {
        return Err(error(spec, "matches no section of the configuration file"));
    }
    Ok(())
}

type Item<'s> = (Vec<String>, String, &'s str);

/// Apply `items` within `section`; returns those no section here took.
fn apply_in<'s>(
    section: &mut Section,
    items: Vec<Item<'s>>,
    origin: &Rc<PathBuf>,
) -> Result<Vec<Item<'s>>, ConfigError> {
    let (keys, mut nested): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|(p, _, _)| p.len() == 1);
    for (path, _, _) in &keys {
        let lower = path[0].to_ascii_lowercase();
        section
            .keys
            .retain(|kv| kv.key.to_ascii_lowercase() != lower);
    }
    for (path, value, _) in keys {
        section.keys.push(KeyValue {
            key: path[0].clone(),
            value,
            pos: Pos {
                file: origin.clone(),
                line: 0,
            },
        });
    }
    for child in &mut section.sections {
        if nested.is_empty() {
            break;
        }
        let (mine, rest): (Vec<Item>, Vec<Item>) = nested.into_iter().partition(|(p, _, _)| {
            let seg = p[0].to_lowercase();
            child.name.as_deref() == Some(seg.as_str()) || child.type_ == seg
        });
        nested = rest;
        if !mine.is_empty() {
            let inner = mine
                .into_iter()
                .map(|(p, v, s)| (p[1..].to_vec(), v, s))
                .collect();
            let left = apply_in(child, inner, origin)?;
            if let Some((_, _, spec)) = left.first() {
                return Err(error(spec, "matches no section of the configuration file"));
            }
        }
    }
    Ok(nested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parser::parse;
    use crate::config::RealHost;
    use std::path::Path;

    fn tree() -> Section {
        parse(
            "<zeo>\naddress 8100\n</zeo>\n<filestorage 1>\npath a.fs\n</filestorage>\n\
             <filestorage Two>\npath b.fs\n</filestorage>\n",
            Path::new("z.conf"),
            &RealHost,
        )
        .unwrap()
    }

    #[test]
    fn overrides_keys_by_type_and_name() {
        let mut t = tree();
        apply(
            &mut t,
            &[
                "zeo/address=9000".into(),
                "ZEO/read-only=true".into(),
                "two/PATH=c.fs".into(),
                "filestorage/create=yes".into(),
            ],
        )
        .unwrap();
        let zeo = &t.sections[0];
        assert_eq!(zeo.keys.len(), 2);
        assert_eq!(zeo.keys[0].value, "9000");
        assert_eq!(zeo.keys[1].key, "read-only");
        assert_eq!(t.sections[1].keys[1].value, "yes");
        assert_eq!(t.sections[2].keys[0].value, "c.fs");
    }

    #[test]
    fn override_errors() {
        for bad in ["zeo", "zeo//address=1", "nosuch/address=1", "zeo/ssl/key=x"] {
            let mut t = tree();
            assert!(apply(&mut t, &[bad.into()]).is_err(), "{bad}");
        }
    }
}
