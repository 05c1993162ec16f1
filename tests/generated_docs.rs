//! The checked-in man pages (man/) and completions (completions/) must equal what the
//! clap definitions render now. Regenerate with `make generated`
//! (ZEO_UPDATE_GENERATED=1 cargo test --test generated_docs).

use std::path::Path;

fn check(dir: &str, files: Vec<(String, Vec<u8>)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let update = std::env::var_os("ZEO_UPDATE_GENERATED").is_some();
    let mut stale = Vec::new();
    for (name, contents) in &files {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, contents).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    // No leftovers from removed subcommands.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                if update {
                    std::fs::remove_file(e.path()).unwrap();
                } else {
                    stale.push(format!("{} (no longer generated)", e.path().display()));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale; run `make generated` and commit:\n{}",
        stale.join("\n")
    );
}

#[test]
fn man_pages_are_fresh() {
    check("man", zeo::cli::docs::man_pages());
}

#[test]
fn completions_are_fresh() {
    check("completions", zeo::cli::docs::completions());
}
