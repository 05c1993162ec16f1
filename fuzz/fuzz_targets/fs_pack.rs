//! Fuzz FileStorage pack over arbitrary Data.fs images: open may refuse, pack may
//! fail (with GC and without), but nothing panics. The first input byte picks the
//! mode and the pack time offset.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::storage::filestorage::{FileStorage, Options};
use zeo::storage::Storage;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dir = std::env::temp_dir().join(format!("zeo-fuzz-pack-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join("Data.fs");
    for suffix in ["", ".index", ".old", ".pack"] {
        let _ = std::fs::remove_file(dir.join(format!("Data.fs{suffix}")));
    }
    let mut img = b"FS30".to_vec();
    img.extend_from_slice(rest);
    if std::fs::write(&p, &img).is_err() {
        return;
    }
    if let Ok(s) = FileStorage::open(&p, Options::default()) {
        let t = 1.7e9 + f64::from(mode >> 1) * 1e6;
        let _ = s.pack(t, mode & 1 == 0);
    }
});
