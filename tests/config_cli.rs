//! `zeo serve` as a process: configuration errors exit 2 naming file, line and key;
//! `--print-config` shows the built-in default and how options override the file the
//! way runzeo's do.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn zeo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zeo"))
        .current_dir(dir)
        .env_remove("ZEO_MSGPACK")
        .args(args)
        .output()
        .expect("run zeo")
}

fn print_config(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["serve", "--print-config"];
    all.extend_from_slice(args);
    let out = zeo(dir, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const CONF: &str =
    "<zeo>\n  address 8200\n  transaction-timeout 20\n  pid-filename conf.pid\n</zeo>\n\
                    <filestorage main>\n  path conf.fs\n</filestorage>\n<mappingstorage m/>\n";

#[test]
fn bad_config_exits_2_with_file_line_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.conf"),
        "# comment\n<zeo>\n  address 8100\n\n\n\n  adress 8100\n</zeo>\n",
    )
    .unwrap();
    let out = zeo(dir.path(), &["serve", "-C", "bad.conf"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.conf:7: <zeo> key 'adress': unknown key"),
        "{err}"
    );
    // A bad value names the key too, and so does runzeo's old name for the command.
    std::fs::write(
        dir.path().join("v.conf"),
        "<zeo>\naddress 8100\nread-only perhaps\n</zeo>\n<filestorage>\npath x\n</filestorage>\n",
    )
    .unwrap();
    let out = zeo(dir.path(), &["serve", "--print-config", "-C", "v.conf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("v.conf:3: <zeo> key 'read-only': invalid value"));
    let out = zeo(dir.path(), &["serve", "-C", "missing.conf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.conf"));
}

#[test]
fn default_without_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let c = print_config(dir.path(), &[]);
    assert_eq!(c["zeo"]["address"]["host"], "127.0.0.1");
    assert_eq!(c["zeo"]["address"]["port"], 8100);
    assert_eq!(c["storages"].as_array().unwrap().len(), 1);
    assert_eq!(c["storages"][0]["name"], "1");
    assert_eq!(c["storages"][0]["type"], "filestorage");
    assert_eq!(c["storages"][0]["path"], "./var/Data.fs");
    assert_eq!(c["zeo"]["invalidation_queue_size"], 100);
    assert_eq!(c["zeo"]["read_only"], false);
    assert_eq!(c["zeo"]["msgpack"], Value::Null);
    // runzeo's --test: the default storage is opened (./var created), then exit 0.
    let out = zeo(dir.path(), &["serve", "--test", "-a", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("var/Data.fs").exists());
}

#[test]
fn options_override_the_file_like_runzeo() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("z.conf"), CONF).unwrap();
    let c = print_config(dir.path(), &["-C", "z.conf"]);
    assert_eq!(c["zeo"]["address"]["port"], 8200);
    assert_eq!(c["zeo"]["transaction_timeout"], 20.0);
    assert_eq!(c["zeo"]["pid_filename"], "conf.pid");
    let names: Vec<&str> = c["storages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "m"]);

    let c = print_config(
        dir.path(),
        &[
            "-C",
            "z.conf",
            "-a",
            "localhost:9000",
            "-t",
            "2.5",
            "--pid-file",
            "cli.pid",
            "-f",
            "a.fs",
            "--filename=b.fs",
            "-r",
        ],
    );
    assert_eq!(c["zeo"]["address"]["host"], "localhost");
    assert_eq!(c["zeo"]["address"]["port"], 9000);
    assert_eq!(c["zeo"]["transaction_timeout"], 2.5);
    assert_eq!(c["zeo"]["pid_filename"], "cli.pid");
    assert_eq!(c["zeo"]["read_only"], true);
    let st = c["storages"].as_array().unwrap();
    assert_eq!(st.len(), 2, "-f replaces the file's storages");
    assert_eq!(
        (st[0]["name"].as_str(), st[0]["path"].as_str()),
        (Some("1"), Some("a.fs"))
    );
    assert_eq!(
        (st[1]["name"].as_str(), st[1]["path"].as_str()),
        (Some("2"), Some("b.fs"))
    );

    // -a repeated: the last wins (runzeo's handler); -X overrides a key of a section.
    let c = print_config(
        dir.path(),
        &[
            "-C",
            "z.conf",
            "-a",
            "1",
            "-a",
            "/tmp/s.sock",
            "-X",
            "main/path=x.fs",
        ],
    );
    assert_eq!(c["zeo"]["address"]["family"], "unix");
    assert_eq!(c["storages"][0]["path"], "x.fs");
    // Abbreviated long options, as getopt allows.
    let c = print_config(dir.path(), &["--addr", "[::1]:7", "--file", "q.fs"]);
    assert_eq!(c["zeo"]["address"]["family"], "inet6");
    assert_eq!(c["storages"][0]["path"], "q.fs");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("z.conf"), CONF).unwrap();
    for (args, needle) in [
        (
            &["-t", "1", "-t", "2"][..],
            "conflicting command line option '-t'",
        ),
        (&["-t", "soon"][..], "invalid value for -t"),
        (&["-a", "host:http"][..], "invalid value for -a"),
        (&["-X", "zeo/address=1"][..], "-X"),
        (&["-C", "z.conf", "-X", "nosuch/key=1"][..], "nosuch"),
        (&["-C", "z.conf", "-X", "zeo/adress=1"][..], "adress"),
        (&["--no-such-option"][..], "no-such-option"),
    ] {
        let mut all = vec!["serve", "--print-config"];
        all.extend_from_slice(args);
        let out = zeo(dir.path(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}
