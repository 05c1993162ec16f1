//! Unit tests of the open scan: robustness on garbage, progress reports.

use super::*;

/// Random and mutated images: scan and the sanity check return, never panic.
#[test]
fn scan_never_panics_on_garbage() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/filestorage/undo.fs"
    ))
    .unwrap();
    assert!(scan_image(&base).is_ok());
    for _ in 0..5000 {
        let mut b = base.clone();
        for _ in 0..1 + rnd() % 6 {
            let i = (rnd() % b.len() as u64) as usize;
            b[i] = rnd() as u8;
        }
        if rnd() % 3 == 0 {
            b.truncate((rnd() % b.len() as u64) as usize);
        }
        let _ = scan_image(&b);
        let _ = crate::storage::filestorage::read::parse_image(&b);
    }
    for n in 0..200 {
        let mut b = MAGIC.to_vec();
        b.extend((0..n * 3).map(|_| rnd() as u8));
        let _ = scan_image(&b);
    }
}

/// An open that rebuilds the index reports its start and end; an open with a
/// valid index and a short tail, or of a new file, reports nothing.
#[test]
fn open_reports_index_rebuild_progress() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = Options {
        progress: Some(ProgressFn(Arc::new(|p| panic!("reported {p:?}")))),
        ..Options::default()
    };
    let fresh = FileStorage::open(dir.path().join("new.fs"), quiet).unwrap();
    fresh.close_impl().unwrap();
    let path = dir.path().join("Data.fs");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/filestorage/undo.fs"
        ),
        &path,
    )
    .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let opts = Options {
        progress: Some(ProgressFn(Arc::new(move |p| sink.lock().unwrap().push(p)))),
        ..Options::default()
    };
    let fs = FileStorage::open(&path, opts.clone()).unwrap();
    fs.close_impl().unwrap();
    drop(fs);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    let total = size - 4;
    assert_eq!(
        got,
        [
            OpenStep::Scanning(ScanProgress {
                rebuilding: true,
                done: 0,
                total
            }),
            OpenStep::Scanning(ScanProgress {
                rebuilding: true,
                done: total,
                total
            }),
            OpenStep::WritingIndex,
        ]
    );
    // Reports come every `step` bytes, at transaction boundaries, increasing.
    let data = std::fs::read(&path).unwrap();
    let (f, mut index) = (super::super::io::MemFile::new(data.clone()), Index::new());
    let mut reports = Vec::new();
    let r = scan_with_progress(
        &f,
        &path,
        data.len() as u64,
        4,
        Tid::ZERO,
        &mut index,
        None,
        500,
        &mut |d| reports.push(d),
    )
    .unwrap();
    assert!(reports.len() >= (data.len() - 4) / 500 / 2, "{reports:?}");
    assert!(
        reports.windows(2).all(|w| w[1] >= w[0] + 500),
        "{reports:?}"
    );
    assert!(reports.iter().all(|&d| d < r.end));
    // A large index file is announced before it is read (this one is garbage:
    // ignored, so the index is rebuilt).
    let index_path = suffixed(&path, ".index");
    std::fs::File::create(&index_path)
        .unwrap()
        .set_len(PROGRESS_STEP)
        .unwrap();
    let fs = FileStorage::open(&path, opts.clone()).unwrap();
    fs.close_impl().unwrap();
    drop(fs);
    let got = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(
        got.first(),
        Some(&OpenStep::LoadingIndex {
            bytes: PROGRESS_STEP
        })
    );
    assert_eq!(got.last(), Some(&OpenStep::WritingIndex), "{got:?}");
    // The index written at close is used now: no rebuild, nothing reported.
    let fs = FileStorage::open(&path, opts).unwrap();
    fs.close_impl().unwrap();
    assert!(seen.lock().unwrap().is_empty());
}
