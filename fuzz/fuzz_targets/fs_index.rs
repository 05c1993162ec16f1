//! Fuzz the `Data.fs.index` reader (Python's fsIndex pickle stream); anything it
//! accepts must re-encode to an index that reads back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::storage::filestorage::index::Index;

fuzz_target!(|data: &[u8]| {
    if let Ok((ix, pos)) = Index::from_file_bytes(data) {
        let again = Index::from_file_bytes(&ix.to_file_bytes(pos)).expect("re-encoded index must parse");
        assert_eq!(again, (ix, pos));
    }
});
