//! ZEO's own conformance tests (ZEO.tests.testZEO / testConnection classes and
//! ZODB's blob suites) against the real `zeo serve` binary, through
//! tests/conformance/run_conformance.py, which substitutes `zeo serve` for ZEO's
//! test-server launcher. Fails on any failure not listed, with its reason, in
//! docs/compatibility.md ("Server conformance" / "Expected failures"), and on a
//! listed failure that now passes.

use crate::common::{python, zeo_bin};
use std::path::Path;
use std::process::Command;

/// Run the harness with `python` (whose ZEO's tests are run) and `args` (group
/// selection, jobs) with `--check`; fail the test on any unexpected outcome or when
/// fewer than `min_passed` tests passed (the run must really have run tests).
pub fn run_conformance(python: &Path, args: &[&str], min_passed: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(python)
        .arg(repo.join("tests/conformance/run_conformance.py"))
        .args(["--server", "zeo", "--check"])
        .args(args)
        .args(["--test-timeout", "30", "--group-timeout", "200"])
        .arg("--zeo-bin")
        .arg(zeo_bin())
        .arg("--json")
        .arg(dir.path().join("outcomes.json"))
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "conformance run with {} failed ({}):\n{stdout}\n--- stderr\n{}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().rev().find(|l| l.starts_with("conformance:"));
    let passed: usize = last
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= min_passed,
        "too few conformance tests passed: {last:?}"
    );
}

/// ZEO 6.2's test classes, every group (`--ci`).
#[test]
fn upstream_conformance_against_zeo_serve() {
    run_conformance(&python(), &["--ci", "--jobs", "2"], 400);
}
