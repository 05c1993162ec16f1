//! `zeo up` against Python's runzeo (ZEO 6.2 from the virtualenv): the `--nagios` mode
//! prints the same lines and exits with the same status as the virtualenv's zeo-nagios
//! (OK, empty storage, unreachable, metrics, rates from a shared status file), and the
//! zeoup-style check with its write check leaves Data.fs unchanged.

use crate::common::{free_port, venv, zeo_bin, RunZeo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zeo::client::{Client, Options, ServerAddress};
use zeo::storage::{Oid, Tid};

/// A runzeo serving FileStorages named `names` (`NAME.fs`); stopped on drop.
struct Server {
    runzeo: RunZeo,
    port: u16,
}

impl Server {
    fn addr(&self) -> String {
        self.runzeo.addr()
    }
    fn data_fs(&self, name: &str) -> PathBuf {
        self.runzeo.path(&format!("{name}.fs"))
    }
    fn client(&self, storage: &str) -> Client {
        let mut c = Client::connect(&ServerAddress::Tcp(self.addr()), &Options::default())
            .expect("connect to runzeo");
        c.register(storage, false).unwrap();
        c
    }
}

fn start(names: &[&str], read_only: bool) -> Server {
    let storages: String = names
        .iter()
        .map(|n| format!("<filestorage {n}>\n  path {n}.fs\n</filestorage>\n"))
        .collect();
    let runzeo = RunZeo::start(&format!("  read-only {read_only}"), &storages);
    Server {
        port: runzeo.port,
        runzeo,
    }
}

/// Commit a PersistentMapping as the root object (oid 0) of a fresh storage.
fn commit_root(c: &mut Client) -> Tid {
    let data = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01.";
    c.commit(b"", &[(Oid(0), Tid::ZERO, data)]).unwrap()
}

fn python_nagios(args: &[&str]) -> Output {
    Command::new(venv().join("bin/zeo-nagios"))
        .args(args)
        .output()
        .unwrap()
}

fn our_nagios(args: &[&str]) -> Output {
    Command::new(zeo_bin())
        .args(["up", "--nagios"])
        .args(args)
        .output()
        .unwrap()
}

/// Run `argv0 args` with our binary linked under the name `argv0`.
fn as_tool(argv0: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(argv0);
    std::os::unix::fs::symlink(zeo_bin(), &link).unwrap();
    Command::new(&link).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Both programs print the same and exit the same; returns the shared output.
fn same(args: &[&str]) -> (String, Option<i32>) {
    let py = python_nagios(args);
    let ours = our_nagios(args);
    assert_eq!(
        (text(&ours), ours.status.code()),
        (text(&py), py.status.code()),
        "zeo up --nagios {args:?} differs from zeo-nagios (stderr: {})",
        String::from_utf8_lossy(&py.stderr)
    );
    (text(&py), py.status.code())
}

/// Replace the values of rate metrics (they depend on elapsed time) by `R`.
fn mask_rates(out: &str) -> String {
    let rates = [
        "aborts",
        "commits",
        "conflicts",
        "conflicts_resolved",
        "loads",
        "stores",
    ];
    out.lines()
        .map(|line| match line.rsplit_once('=') {
            Some((label, _)) if rates.iter().any(|r| label.trim_end().ends_with(r)) => {
                format!("{label}=R")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A status file with the float sample times masked (they are the run times).
fn masked_status(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"sameple-time\": ") {
        let start = i + "\"sameple-time\": ".len();
        out.push_str(&rest[..start]);
        out.push('T');
        let tail = &rest[start..];
        let end = tail.find([',', '}']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn nagios_mode_prints_what_zeo_nagios_prints() {
    let server = start(&["1", "other"], false);
    let addr = server.addr();

    // Both storages empty: WARNING for each, exit 1; with and without metrics.
    let (out, code) = same(&[&addr]);
    assert_eq!(
        (out.as_str(), code),
        ("Empty storage '1'\nEmpty storage 'other'\n", Some(1))
    );
    let (out, _) = same(&[&addr, "-m"]);
    assert!(
        out.starts_with("Empty storage '1'|active_txns=0\nEmpty storage 'other'\n| connections=0\n waiting=0\n other:active_txns=0"),
        "{out}"
    );

    // One storage committed: still a warning for the other.
    let mut c1 = server.client("1");
    commit_root(&mut c1);
    let (out, code) = same(&[&addr]);
    assert_eq!((out.as_str(), code), ("Empty storage 'other'\n", Some(1)));

    // Both committed: OK, exit 0; metrics with -m (c1 is a registered connection).
    let mut c2 = server.client("other");
    commit_root(&mut c2);
    let (out, code) = same(&[&addr]);
    assert_eq!((out.as_str(), code), ("OK\n", Some(0)));
    let (out, code) = same(&["-m", &addr]);
    assert_eq!(
        (out.as_str(), code),
        (
            "OK|active_txns=0\n| connections=1\n waiting=0\n other:active_txns=0\n other:connections=1\n other:waiting=0\n",
            Some(0)
        )
    );

    // Rates: each program keeps its own status file; a first run only writes it, the
    // second reports rates. Nothing happened in between, so every rate is exactly 0.0.
    let dir = tempfile::tempdir().unwrap();
    let py_status = dir.path().join("py.json");
    let our_status = dir.path().join("ours.json");
    let py_args = |unit: &str| {
        vec![
            "-m".to_string(),
            "-s".into(),
            py_status.display().to_string(),
            "-u".into(),
            unit.into(),
            addr.clone(),
        ]
    };
    let our_args = |unit: &str| {
        vec![
            "-m".to_string(),
            "-s".into(),
            our_status.display().to_string(),
            "-u".into(),
            unit.into(),
            addr.clone(),
        ]
    };
    let run_both = |unit: &str| {
        let pa = py_args(unit);
        let oa = our_args(unit);
        let py = python_nagios(&pa.iter().map(String::as_str).collect::<Vec<_>>());
        let ours = our_nagios(&oa.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(ours.status.code(), py.status.code());
        (text(&py), text(&ours))
    };
    let (py, ours) = run_both("minutes");
    assert_eq!(ours, py);
    assert!(!py.contains("loads="), "{py}");
    assert_eq!(
        std::fs::read_to_string(&our_status).unwrap(),
        std::fs::read_to_string(&py_status).unwrap(),
        "first status files differ"
    );
    let (py, ours) = run_both("seconds");
    assert_eq!(ours, py);
    assert!(
        py.contains("\n loads=0.0\n") && py.contains("\n other:stores=0.0"),
        "{py}"
    );
    assert_eq!(masked_status(&our_status), masked_status(&py_status));

    // Activity between runs: the rates now depend on the elapsed time; the lines,
    // labels and order still agree.
    for _ in 0..5 {
        c1.load_before(Oid(0), Tid::MAX).unwrap();
    }
    let (py, ours) = run_both("hours");
    assert!(
        py.contains(" loads=") && !py.contains(" loads=0.0\n"),
        "{py}"
    );
    assert_eq!(mask_rates(&ours), mask_rates(&py));
    assert_eq!(masked_status(&our_status), masked_status(&py_status));

    // One shared file: each program reads what the other wrote.
    let shared = dir.path().join("shared.json");
    let shared_s = shared.display().to_string();
    let args = ["-m", "-s", shared_s.as_str(), addr.as_str()];
    let first = python_nagios(&args);
    assert_eq!(first.status.code(), Some(0));
    let ours = our_nagios(&args);
    assert!(text(&ours).contains("\n loads=0.0\n"), "{}", text(&ours));
    let py = python_nagios(&args);
    assert!(text(&py).contains("\n loads=0.0\n"), "{}", text(&py));
    assert_eq!(text(&ours), text(&py));

    // Under the zeo-nagios name, the same output.
    let tool = as_tool("zeo-nagios", &["-m", &addr]);
    let py = python_nagios(&["-m", &addr]);
    assert_eq!(
        (text(&tool), tool.status.code()),
        (text(&py), py.status.code())
    );
}

#[test]
fn nagios_mode_reports_unreachable_servers_like_zeo_nagios() {
    let port = free_port();
    let (out, code) = same(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(
        (out.as_str(), code),
        ("Can't connect [Errno 111] Connection refused\n", Some(2))
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no.sock").display().to_string();
    let (out, code) = same(&[&sock]);
    assert_eq!(
        (out.as_str(), code),
        (
            "Can't connect [Errno 2] No such file or directory\n",
            Some(2)
        )
    );
    same(&["-m", &format!("[::1]:{port}")]);
    // A name that does not resolve: getaddrinfo's error, whatever this resolver says.
    let (out, code) = same(&["nosuchhost.invalid:8100"]);
    assert!(
        out.starts_with("Can't connect [Errno -") && code == Some(2),
        "{out}"
    );
}

fn zeo_up(args: &[&str]) -> Output {
    Command::new(zeo_bin())
        .arg("up")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn write_check_leaves_data_fs_unchanged() {
    let server = start(&["1"], false);
    let addr = server.addr();

    // Empty storage: no root object yet, a one-line failure, exit 1.
    let out = zeo_up(&["--nowrite", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage is empty") && err.lines().count() == 1,
        "{err}"
    );

    let mut c = server.client("1");
    let tid = commit_root(&mut c);
    let size = std::fs::metadata(server.data_fs("1")).unwrap().len();

    let out = zeo_up(&[&addr]);
    let stdout = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("OK: storage \"1\" at 127.0.0.1:")
            && stdout.contains("write check passed")
            && stdout.contains("total "),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
    // Nothing was committed: same file size, same last transaction.
    assert_eq!(std::fs::metadata(server.data_fs("1")).unwrap().len(), size);
    assert_eq!(c.last_transaction().unwrap(), tid);

    // Read-only check; the storage name in the address; zeoup's options and output.
    let out = zeo_up(&["--nowrite", &format!("{addr}:1")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out).contains("write check"), "{}", text(&out));
    let port = server.port.to_string();
    let out = as_tool("zeoup", &["-h", "127.0.0.1", "-p", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = text(&out);
    assert!(line.starts_with("Elapsed time: "), "{line}");
    assert_eq!(std::fs::metadata(server.data_fs("1")).unwrap().len(), size);
    assert_eq!(c.last_transaction().unwrap(), tid);

    // A storage the server does not serve.
    let out = zeo_up(&[&format!("{addr}:nosuch")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("register failed"));

    // Unreachable: exit 1 after the retry period.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = zeo_up(&["--retry", "0.3", &dead]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("FAILED: ") && err.contains("cannot connect"),
        "{err}"
    );
    let out = as_tool("zeoup", &["-p", "1", "-h", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("cannot connect"));
}

#[test]
fn write_check_fails_on_a_read_only_server() {
    let server = start(&["1"], true);
    let addr = server.addr();
    let out = zeo_up(&[&addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ReadOnlyError") && err.contains("--nowrite"),
        "{err}"
    );
}
