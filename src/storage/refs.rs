//! Persistent-reference scanner over object pickles (ZODB `referencesf`), for pack GC,
//! and class identification without unpickling (`get_pickle_metadata`).

/// Dotted class name from a record's class pickle when it starts with a GLOBAL
/// (`c module\nname\n`, optionally after `\x80\x03` and `(`), as ZODB's
/// `get_pickle_metadata` finds it; `None` for other shapes.
pub fn pickle_class_name(data: &[u8]) -> Option<String> {
    let mut d = data;
    if d.starts_with(b"\x80") {
        d = d.get(2..)?;
    }
    if d.starts_with(b"(") {
        d = &d[1..];
    }
    let d = d.strip_prefix(b"c")?;
    let mut parts = d.splitn(3, |&b| b == b'\n');
    let module = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    parts.next()?;
    Some(format!("{module}.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_name_from_global() {
        assert_eq!(
            pickle_class_name(b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.").as_deref(),
            Some("persistent.mapping.PersistentMapping")
        );
        assert_eq!(pickle_class_name(b"\x80\x03}q\x00."), None);
        assert_eq!(pickle_class_name(b"\x80"), None);
        assert_eq!(pickle_class_name(b"cfoo\nbar"), None);
    }
}
