//! Reading one section's keys against the list the schema allows: ZConfig's key rules
//! (a key is `[a-zA-Z][-._a-zA-Z0-9]*`, case-insensitive, given at most once) and typed
//! getters whose errors name file, line, section and key.

use super::parser::{KeyValue, Section};
use super::ConfigError;
use std::collections::HashMap;

/// The keys of one section, checked against `allowed` (lower-case names).
pub struct Keys<'a> {
    section: &'a Section,
    map: HashMap<String, &'a KeyValue>,
}

fn is_basic_key(k: &str) -> bool {
    let mut cs = k.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Levenshtein distance, for "did you mean" hints (keys are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `<zeo> key 'adress'`: how messages name a key.
pub fn key_label(section: &Section, key: &str) -> String {
    format!("{} key '{key}'", section.label())
}

impl<'a> Keys<'a> {
    pub fn new(section: &'a Section, allowed: &[&str]) -> Result<Self, ConfigError> {
        let mut map = HashMap::new();
        for kv in &section.keys {
            let label = Some(key_label(section, &kv.key));
            if !is_basic_key(&kv.key) {
                return Err(kv.pos.error(label, "not a valid key name"));
            }
            let lower = kv.key.to_ascii_lowercase();
            if !allowed.contains(&lower.as_str()) {
                let hint = if allowed.is_empty() {
                    "unknown key (this section takes no keys)".to_string()
                } else if let Some(near) = allowed.iter().find(|a| distance(a, &lower) <= 2) {
                    format!("unknown key (did you mean '{near}'?)")
                } else {
                    format!("unknown key (known keys: {})", allowed.join(", "))
                };
                return Err(kv.pos.error(label, hint));
            }
            if let Some(first) = map.insert(lower, kv) {
                return Err(kv.pos.error(
                    label,
                    format!("given more than once (first on line {})", first.pos.line),
                ));
            }
        }
        Ok(Keys { section, map })
    }

    pub fn raw(&self, name: &str) -> Option<&'a KeyValue> {
        self.map.get(name).copied()
    }

    /// Convert `name` with `f` if present.
    pub fn get<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(kv) => f(&kv.value).map(Some).map_err(|m| {
                kv.pos.error(
                    Some(key_label(self.section, &kv.key)),
                    format!("invalid value: {m}"),
                )
            }),
        }
    }

    /// Convert `name` with `f`, or `default` when absent.
    pub fn or<T>(
        &self,
        name: &str,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.get(name, f)?.unwrap_or(default))
    }

    /// Convert `name` with `f`; an error at the section start if absent.
    pub fn required<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.get(name, f)?
            .ok_or_else(|| self.error_at_section(name, "required key is missing"))
    }

    /// A string value as written.
    pub fn string(&self, name: &str) -> Option<String> {
        self.raw(name).map(|kv| kv.value.clone())
    }

    /// An error about key `name` (present or not), at its line or the section's.
    pub fn error(&self, name: &str, message: impl Into<String>) -> ConfigError {
        match self.raw(name) {
            Some(kv) => kv
                .pos
                .error(Some(key_label(self.section, &kv.key)), message),
            None => self.error_at_section(name, message),
        }
    }

    fn error_at_section(&self, name: &str, message: impl Into<String>) -> ConfigError {
        self.section
            .pos
            .error(Some(key_label(self.section, name)), message)
    }
}
