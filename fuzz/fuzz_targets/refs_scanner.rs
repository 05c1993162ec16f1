//! Fuzz the persistent-reference scanner and the class-name reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::storage::refs::{pickle_class_name, references, scan_references};

fuzz_target!(|data: &[u8]| {
    let strong = references(data);
    let all = scan_references(data);
    if let (Ok(s), Ok(a)) = (&strong, &all) {
        let n = a.iter().filter(|r| r.form.is_strong_local()).count();
        assert!(s.len() <= n);
    }
    let _ = pickle_class_name(data);
});
