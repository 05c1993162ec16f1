//! Cache trace tools against Python: traces made by our writer and generator (several
//! shapes: small and large caches, restarts, zero-timestamp garbage, odd oid lengths,
//! version flags, unknown codes, a clock going backwards, a trailing partial record)
//! are fed to ZEO 6.2's `cache_stats` and `cache_simul` from the virtualenv and to
//! `zeo cache-stats` / `zeo cache-simul`; stdout (run time masked) and exit status
//! must be identical. Where Python crashes, Python's partial stdout must be a prefix of
//! ours and ours must finish with status 0 (docs/compatibility.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeo::cache::generate::{generate, GenOptions};
use zeo::cache::writer::TraceWriter;

use crate::common::{fixture, python, zeo_bin};

struct Out {
    stdout: String,
    status: i32,
    stderr: String,
}

fn mask(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    s.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("Read ") && line.contains(" trace records (") {
                if let Some(at) = line.rfind(" in ") {
                    return format!("{} in 0.0 seconds\n", &line[..at]);
                }
            }
            line.to_string()
        })
        .collect()
}

fn run(mut cmd: Command, stdin_data: Option<Vec<u8>>) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin_data.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("cannot start tool");
    let feeder = stdin_data.map(|d| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&d);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    Out {
        stdout: mask(&out.stdout),
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn py(tool: &str, args: &[&str], trace: &Path, tz: &str, stdin: Option<Vec<u8>>) -> Out {
    let mut c = Command::new(python());
    c.arg("-m")
        .arg(format!("ZEO.scripts.{tool}"))
        .args(args)
        .arg(trace)
        .env("TZ", tz)
        .env("COLUMNS", "80");
    run(c, stdin)
}

fn ours(tool: &str, args: &[&str], trace: &Path, tz: &str, stdin: Option<Vec<u8>>) -> Out {
    let sub = if tool == "cache_stats" {
        "cache-stats"
    } else {
        "cache-simul"
    };
    let mut c = Command::new(zeo_bin());
    c.arg(sub).args(args).arg(trace).env("TZ", tz);
    run(c, stdin)
}

const STATS_ARGS: &[&[&str]] = &[
    &[],
    &["-q"],
    &["-v", "-i", "1"],
    &["-h", "-s", "-S"],
    &["-i", "0.25"],
];
const SIMUL_ARGS: &[&[&str]] = &[
    &["-s", "0.2"],
    &["-s", "1", "-i", "1"],
    &["-s", "20", "-i", "5"],
    &["-s", "0.5", "-r", "0.3"],
];

/// Compare every tool invocation on `trace` under `tz`; returns failure descriptions.
fn compare_all(name: &str, trace: &Path, tz: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (tool, sets) in [("cache_stats", STATS_ARGS), ("cache_simul", SIMUL_ARGS)] {
        for args in sets {
            let p = py(tool, args, trace, tz, None);
            let o = ours(tool, args, trace, tz, None);
            if p.status != 0 {
                failures.push(format!(
                    "{name} {tool} {args:?} TZ={tz}: Python failed ({}): {}",
                    p.status,
                    p.stderr.lines().last().unwrap_or("")
                ));
                continue;
            }
            if p.stdout != o.stdout || p.status != o.status {
                let line = p
                    .stdout
                    .lines()
                    .zip(o.stdout.lines())
                    .position(|(a, b)| a != b);
                failures.push(format!(
                    "{name} {tool} {args:?} TZ={tz}: differs (exit {} vs {}, first differing line {:?}; {} vs {} lines)",
                    p.status,
                    o.status,
                    line.map(|l| l + 1),
                    p.stdout.lines().count(),
                    o.stdout.lines().count()
                ));
            }
        }
    }
    failures
}

fn shape(dir: &Path, name: &str, o: GenOptions) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    generate(&o, std::io::BufWriter::new(f)).unwrap();
    p
}

/// Hand-made oddities: odd oid lengths, the version flag, an unknown code, a clock
/// going backwards, zero-timestamp garbage and a trailing partial record.
fn odd_trace(dir: &Path) -> PathBuf {
    let t0 = 1_772_952_091u32;
    let mut w = TraceWriter::new(Vec::new());
    w.restart(t0).unwrap();
    w.record_raw(t0, 0x20, b"abc", 0, 0, 0).unwrap();
    w.record_raw(t0, 0x52, b"abc", 5, 0, 77).unwrap();
    w.record_raw(t0 + 1, 0x22, b"abc", 5, 0, 77).unwrap();
    w.record_raw(t0 + 1, 0x20, b"", 0, 0, 0).unwrap();
    w.record_raw(t0 + 2, 0x52, &[1; 12], 6, 0, 300).unwrap();
    w.record(t0 + 3, 0x20, 9, 0, 0, 0).unwrap();
    w.record(t0 + 3, 0x52, 9, 7, 0, 5000).unwrap();
    // Version flag set (never written by modern ZEO, still counted by readers).
    let mut v = Vec::new();
    zeo::cache::writer::encode(&mut v, t0 + 4, 0x22, &9u64.to_be_bytes(), 7, 0, 5000).unwrap();
    v[7] |= 0x80;
    w.raw(&v).unwrap();
    // An unknown code (0x30: a "load" for the simulator, unknown to cache_stats).
    w.record(t0 + 5, 0x30, 10, 0, 0, 0).unwrap();
    w.raw(&[0; 16]).unwrap();
    w.record(t0 + 400, 0x1c, 9, 8, 0, 0).unwrap();
    w.record(t0 + 400, 0x52, 9, 8, 0, 4000).unwrap();
    // The clock goes back 5 seconds (negative durations, interval re-basing).
    w.record(t0 + 395, 0x22, 9, 8, 0, 4000).unwrap();
    w.record(t0 + 2000, 0x26, 9, 0, 7, 0).unwrap();
    w.record(t0 + 2000, 0x10, 11, 0, 0, 0).unwrap();
    w.record(t0 + 2001, 0x1e, 9, 0, 0, 0).unwrap();
    w.record(t0 + 2001, 0x22, 12, 3, 0, 1).unwrap();
    // 20 trailing bytes: a partial head, counted in the byte total only.
    w.raw(&[7; 20]).unwrap();
    let p = dir.join("odd.trace");
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    p
}

#[test]
fn generated_and_odd_traces_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let small = shape(
        dir.path(),
        "small-cache.trace",
        GenOptions {
            records: 20_000,
            objects: 2_000,
            restarts: 2,
            garbage: 3,
            cache_size: 200_000,
            noncurrent_ratio: 0.02,
            ..GenOptions::default()
        },
    );
    let uniform = shape(
        dir.path(),
        "uniform-long.trace",
        GenOptions {
            records: 15_000,
            objects: 20_000,
            zipf: 0.0,
            size_median: 2_000.0,
            rate: 4.0,
            seed: 5,
            ..GenOptions::default()
        },
    );
    let restarts = shape(
        dir.path(),
        "restart-heavy.trace",
        GenOptions {
            records: 8_000,
            objects: 500,
            restarts: 20,
            garbage: 10,
            write_ratio: 0.2,
            inval_ratio: 0.2,
            rate: 100.0,
            cache_size: 100_000,
            seed: 7,
            ..GenOptions::default()
        },
    );
    let odd = odd_trace(dir.path());
    let mut failures = Vec::new();
    failures.extend(compare_all("small-cache", &small, "UTC"));
    failures.extend(compare_all("small-cache", &small, "Asia/Kolkata"));
    failures.extend(compare_all("uniform-long", &uniform, "America/New_York"));
    failures.extend(compare_all("restart-heavy", &restarts, "UTC"));
    failures.extend(compare_all("odd", &odd, "UTC"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gz_input_matches_python() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("t.trace.gz");
    let f = std::fs::File::create(&gz).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let o = GenOptions {
        records: 10_000,
        restarts: 1,
        garbage: 2,
        ..GenOptions::default()
    };
    generate(&o, &mut enc).unwrap();
    enc.finish().unwrap();
    for (tool, args) in [
        ("cache_stats", &["-h"][..]),
        ("cache_simul", &["-s", "0.3"][..]),
    ] {
        let p = py(tool, args, &gz, "UTC", None);
        let o = ours(tool, args, &gz, "UTC", None);
        assert_eq!(p.status, 0, "{}", p.stderr);
        assert_eq!((p.stdout, p.status), (o.stdout, o.status), "{tool} on .gz");
    }
}

/// Where Python dies, it must have printed a prefix of our output; ours completes.
fn check_improvement(what: &str, p: &Out, o: &Out) {
    assert_ne!(
        p.status, 0,
        "{what}: Python no longer crashes; update the docs"
    );
    assert_eq!(o.status, 0, "{what}: ours failed: {}", o.stderr);
    assert!(
        o.stdout.starts_with(&p.stdout),
        "{what}: Python's partial output is not a prefix of ours\n--- python\n{}\n--- ours\n{}",
        p.stdout,
        o.stdout
    );
}

#[test]
fn python_crashes_are_documented_improvements() {
    let dir = tempfile::tempdir().unwrap();
    let trace = fixture("cache/mixed-small.trace");
    let data = std::fs::read(&trace).unwrap();
    let stdin = Path::new("-");

    // cache_stats on a pipe: Python dies on tell(); ours equals the run on the file.
    let p = py("cache_stats", &[], stdin, "UTC", Some(data.clone()));
    let o = ours("cache_stats", &[], stdin, "UTC", Some(data.clone()));
    check_improvement("cache_stats pipe", &p, &o);
    assert!(p.stderr.contains("Illegal seek"));
    assert_eq!(
        o.stdout,
        ours("cache_stats", &[], &trace, "UTC", None).stdout
    );

    // cache_simul on a pipe with zero-timestamp garbage: Python cannot seek back.
    let g = shape(
        dir.path(),
        "garbage.trace",
        GenOptions {
            records: 3_000,
            garbage: 3,
            ..GenOptions::default()
        },
    );
    let gdata = std::fs::read(&g).unwrap();
    let p = py("cache_simul", &[], stdin, "UTC", Some(gdata.clone()));
    let o = ours("cache_simul", &[], stdin, "UTC", Some(gdata));
    check_improvement("cache_simul pipe with garbage", &p, &o);
    assert_eq!(o.stdout, ours("cache_simul", &[], &g, "UTC", None).stdout);

    // cache_simul with a cache too small for some objects: AssertionError in Python.
    let p = py("cache_simul", &["-s", "0.01"], &trace, "UTC", None);
    let o = ours("cache_simul", &["-s", "0.01"], &trace, "UTC", None);
    check_improvement("cache_simul -s 0.01", &p, &o);
    assert!(p.stderr.contains("AssertionError"));

    // A trailing restart record: TypeError in Python's report.
    let t0 = 1_772_952_091u32;
    let mut w = TraceWriter::new(Vec::new());
    w.restart(t0).unwrap();
    w.record(t0, 0x20, 1, 0, 0, 0).unwrap();
    w.record(t0, 0x52, 1, 7, 0, 100).unwrap();
    w.restart(t0 + 5).unwrap();
    let tr = dir.path().join("trailing-restart.trace");
    std::fs::write(&tr, w.finish().unwrap()).unwrap();
    let p = py("cache_simul", &[], &tr, "UTC", None);
    let o = ours("cache_simul", &[], &tr, "UTC", None);
    check_improvement("cache_simul trailing restart", &p, &o);
    assert!(p.stderr.contains("TypeError"));

    // No data records: ZeroDivisionError in Python's statistics block.
    let mut w = TraceWriter::new(Vec::new());
    w.restart(t0).unwrap();
    w.record(t0, 0x20, 1, 0, 0, 0).unwrap();
    let nd = dir.path().join("no-data.trace");
    std::fs::write(&nd, w.finish().unwrap()).unwrap();
    let p = py("cache_stats", &[], &nd, "UTC", None);
    let o = ours("cache_stats", &[], &nd, "UTC", None);
    check_improvement("cache_stats without data records", &p, &o);
    assert!(p.stderr.contains("ZeroDivisionError"));
    assert!(o
        .stdout
        .contains("Data recs:  0 (0.0%), average size 0 bytes\n"));
}

#[test]
fn usage_errors_match_python() {
    let trace = fixture("cache/mixed-small.trace");
    let t = trace.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("cache_stats", &[]),
        ("cache_stats", &["-q", "-v", t]),
        ("cache_stats", &["-i", "abc", t]),
        ("cache_stats", &["-i"]),
        ("cache_stats", &["--inter=2", "-x", t]),
        ("cache_stats", &["-vz", t]),
        ("cache_stats", &[t, "extra"]),
        ("cache_stats", &["/nonexistent/file"]),
        ("cache_stats", &["--verbose=1", t]),
        ("cache_simul", &[]),
        ("cache_simul", &["-s", "big", t]),
        ("cache_simul", &["-r", "x", t]),
        ("cache_simul", &["--s", "1", t]),
        ("cache_simul", &["-h"]),
        ("cache_simul", &["-s", "1", "-h", t]),
    ];
    let mut failures = Vec::new();
    for (tool, args) in cases {
        let mut pc = Command::new(python());
        pc.arg("-m")
            .arg(format!("ZEO.scripts.{tool}"))
            .args(*args)
            .env("COLUMNS", "80");
        let p = run(pc, None);
        let sub = if *tool == "cache_stats" {
            "cache-stats"
        } else {
            "cache-simul"
        };
        let mut oc = Command::new(zeo_bin());
        oc.arg(sub).args(*args);
        let o = run(oc, None);
        if (&p.stdout, &p.stderr, p.status) != (&o.stdout, &o.stderr, o.status) {
            failures.push(format!(
                "{tool} {args:?}:\n python ({}): {}{}\n ours ({}): {}{}",
                p.status, p.stdout, p.stderr, o.status, o.stdout, o.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
