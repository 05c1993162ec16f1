//! Fuzz the Data.fs record reader: the open scan (with the index sanity check) and
//! the full transaction/record parser over arbitrary bytes after the magic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut img = b"FS30".to_vec();
    img.extend_from_slice(data);
    let _ = zeo::storage::filestorage::open::scan_image(&img);
    let _ = zeo::storage::filestorage::read::parse_image(&img);
});
