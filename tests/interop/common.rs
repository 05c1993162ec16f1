//! Shared helpers for interop tests: locating the virtualenv's Python and our binary,
//! and running Python snippets with arguments.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The pinned virtualenv: $ZEO_TEST_VENV, else `.venv` in the repository.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("ZEO_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = dir.join("bin/python");
    assert!(
        python.exists(),
        "interop tests need the Python virtualenv at {} (run `make test` or scripts/setup-venv.sh)",
        dir.display()
    );
    dir
}

/// The virtualenv's python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// Our `zeo` binary as built for this test run.
pub fn zeo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zeo"))
}

/// A fixture path under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Run `code` with the venv's python and `args` (sys.argv[1:]); panics with stderr
/// when it exits non-zero. Returns stdout.
pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = python_output(code, args);
    assert!(
        out.status.success(),
        "python failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed non-UTF-8")
}

/// Run `code` with the venv's python; return the raw output whatever the status.
pub fn python_output(code: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .env("TZ", std::env::var("TZ").unwrap_or_else(|_| "UTC".into()))
        .output()
        .expect("cannot run the virtualenv's python")
}
