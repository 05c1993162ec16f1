//! Configuration interop: for sample configuration files (and command lines), runzeo's
//! own reading (ZEO 6.2's `ZEOOptions().realize`, dumped by
//! tests/fixtures/config/dump_runzeo_config.py) and `zeo serve --print-config` agree on
//! every typed value; configurations runzeo rejects, `zeo serve` rejects with status 2.

use crate::common::{fixture, python, zeo_bin};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Write `files` into `dir` (creating subdirectories).
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for sub in ["var", "blobs", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for pem in ["server.pem", "server_key.pem", "client.pem"] {
        std::fs::copy(fixture(&format!("config/ssl/{pem}")), dir.join(pem)).unwrap();
    }
}

fn runzeo(dir: &Path, args: &[&str]) -> Output {
    Command::new(python())
        .arg(fixture("config/dump_runzeo_config.py"))
        .args(args)
        .current_dir(dir)
        .env_remove("ZEO_MSGPACK")
        .env("HOME", dir)
        .output()
        .expect("run python")
}

fn ours(dir: &Path, args: &[&str]) -> Output {
    Command::new(zeo_bin())
        .arg("serve")
        .arg("--print-config")
        .args(args)
        .current_dir(dir)
        .env_remove("ZEO_MSGPACK")
        .env("HOME", dir)
        .output()
        .expect("run zeo")
}

/// Numbers as floats (Python prints 30 where we print 30.0), everything else as is.
fn numbers_as_floats(v: Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        v => v,
    }
}

/// Our document reduced to what runzeo can show: no extensions, TLS as presence only
/// (runzeo turns `<ssl>` into an SSLContext at load time).
fn comparable(mut v: Value) -> Value {
    let zeo = v["zeo"].as_object_mut().unwrap();
    zeo.remove("monitor_address");
    zeo.remove("metrics_address");
    zeo.remove("max_message_size");
    zeo.remove("max_output_buffer");
    if !zeo["ssl"].is_null() {
        zeo.insert("ssl".into(), Value::String("present".into()));
    }
    let top = v.as_object_mut().unwrap();
    top.remove("zookeeper");
    top.remove("warnings");
    numbers_as_floats(v)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const ZEO: &str = "<zeo>\n  address 8100\n</zeo>\n";
const FS: &str = "<filestorage>\n  path var/Data.fs\n</filestorage>\n";

/// (name, files, command line); `zeo.conf` is the configuration.
type Case = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

fn conf(text: String) -> Vec<(&'static str, String)> {
    vec![("zeo.conf", text)]
}

fn accepted_cases() -> Vec<Case> {
    let c = ["-C", "zeo.conf"];
    vec![
        ("minimal", conf(format!("{ZEO}{FS}")), c.to_vec()),
        (
            "every zeo and filestorage key",
            conf(
                "<zeo>\n  address LocalHost:8200\n  read-only on\n  invalidation-queue-size 500\n  \
                 invalidation-age 3600.5\n  transaction-timeout 30\n  client-conflict-resolution yes\n  \
                 msgpack false\n  pid-filename var/zeo.pid\n</zeo>\n<filestorage>\n  path var/Data.fs\n  \
                 blob-dir blobs\n  create true\n  read-only false\n  quota 10MB\n  pack-gc off\n  \
                 pack-keep-old no\n</filestorage>\n"
                    .into(),
            ),
            c.to_vec(),
        ),
        (
            "several named storages",
            conf(format!(
                "{ZEO}<filestorage Main>\n  path var/main.fs\n  quota 2GB\n</filestorage>\n\
                 <mappingstorage 2>\n  name Scratch\n</mappingstorage>\n<mappingstorage/>\n\
                 <blobstorage blobs>\n  blob-dir blobs\n  <filestorage>\n    path var/b.fs\n    \
                 quota 5kb\n  </filestorage>\n</blobstorage>\n"
            )),
            c.to_vec(),
        ),
        (
            "syntax: comments, case, %define, substitution, %include, %import",
            vec![
                (
                    "zeo.conf",
                    "# comment\n%import ZODB\n%define PORT 8300\n%define Dir var\n<ZEO>\n  \
                     # indented comment\n  ADDRESS [::1]:$port\n  Invalidation-Age 10\n</Zeo>\n\
                     %include etc/storage.conf\n<FileStorage two>\n  PATH ${dir}/$$two.fs\n\
                     </FileStorage>\n"
                        .into(),
                ),
                (
                    "etc/storage.conf",
                    "<filestorage 1>\n  path $dir/one.fs\n  blob-dir ~/blobs\n</filestorage>\n"
                        .into(),
                ),
            ],
            c.to_vec(),
        ),
        (
            "unix socket, unnamed mapping storage, msgpack",
            conf(
                "<zeo>\n  address ./zeo.sock\n  msgpack true\n  transaction-timeout 0\n</zeo>\n\
                 <mappingstorage>\n</mappingstorage>\n"
                    .into(),
            ),
            c.to_vec(),
        ),
        (
            "bare host and empty values",
            conf(
                "<zeo>\n  address somehost\n  pid-filename\n</zeo>\n<filestorage>\n  path x.fs\n  \
                 blob-dir\n</filestorage>\n"
                    .into(),
            ),
            c.to_vec(),
        ),
        (
            "eventlog handlers",
            conf(format!(
                "{ZEO}{FS}<eventlog>\n  level debug\n  <logfile>\n    path STDOUT\n    \
                 format %(asctime)s\\t%(levelname)s %(message)s\n    level warn\n  </logfile>\n  \
                 <logfile rotating>\n    path logs/zeo.log\n    old-files 3\n    max-size 1MB\n    \
                 dateformat %H:%M\n    style classic\n  </logfile>\n  <logfile timed>\n    \
                 path logs/t.log\n    old-files 2\n    when D\n    format {{message}}\n    \
                 style format\n    delay true\n  </logfile>\n  <syslog>\n    facility LOCAL3\n  \
                 </syslog>\n</eventlog>\n"
            )),
            c.to_vec(),
        ),
        (
            "eventlog without handlers, numeric level",
            conf(format!("{ZEO}{FS}<eventlog>\n  level 35\n</eventlog>\n")),
            c.to_vec(),
        ),
        (
            "ssl",
            conf(
                "<zeo>\n  address 8100\n  <ssl>\n    certificate server.pem\n    key server_key.pem\n    \
                 authenticate client.pem\n  </ssl>\n</zeo>\n<filestorage>\n  path var/Data.fs\n\
                 </filestorage>\n"
                    .into(),
            ),
            c.to_vec(),
        ),
        (
            "runner section (ignored by the server)",
            conf(format!(
                "{ZEO}{FS}<runner>\n  program runzeo\n  daemon off\n  backoff-limit 3\n</runner>\n"
            )),
            c.to_vec(),
        ),
        (
            "options override the file",
            conf(
                "<zeo>\n  address 8100\n  transaction-timeout 20\n  pid-filename a.pid\n</zeo>\n\
                 <filestorage x>\n  path x.fs\n</filestorage>\n"
                    .into(),
            ),
            vec![
                "-C", "zeo.conf", "-a", "127.0.0.1:9100", "-f", "var/one.fs", "-f", "var/two.fs",
                "-t", "2.5", "--pid-file", "b.pid",
            ],
        ),
        (
            "-X overrides",
            conf(format!("{ZEO}<filestorage main>\n  path x.fs\n</filestorage>\n")),
            vec![
                "-C", "zeo.conf", "-X", "zeo/address=9200", "-X", "main/read-only=true", "-X",
                "zeo/msgpack=on",
            ],
        ),
        (
            "no file: -a and -f",
            vec![],
            vec!["-a", "[::]:8111", "-f", "var/Data.fs", "-t", "7"],
        ),
    ]
}

fn rejected_cases() -> Vec<Case> {
    let c = ["-C", "zeo.conf"];
    let bad = |text: String| (conf(text), c.to_vec());
    let zeo = |keys: &str| format!("<zeo>\n  address 8100\n{keys}\n</zeo>\n{FS}");
    let fs = |keys: &str| format!("{ZEO}<filestorage>\n  path x.fs\n{keys}\n</filestorage>\n");
    type Files = Vec<(&'static str, String)>;
    let list: Vec<(&str, (Files, Vec<&str>))> = vec![
        ("unknown key", bad(zeo("  adress 1"))),
        ("bad boolean", bad(zeo("  read-only maybe"))),
        ("bad integer", bad(zeo("  invalidation-queue-size lots"))),
        ("float timeout in file", bad(zeo("  transaction-timeout 1.5"))),
        ("bad float", bad(zeo("  invalidation-age soon"))),
        ("duplicate key", bad(zeo("  read-only on\n  read-only on"))),
        ("port out of range", bad(format!("<zeo>\n  address h:70000\n</zeo>\n{FS}"))),
        ("missing address", bad(format!("<zeo>\n</zeo>\n{FS}"))),
        ("missing zeo", bad(FS.to_string())),
        ("missing storage", bad(ZEO.to_string())),
        ("two zeo sections", bad(format!("{ZEO}{ZEO}{FS}"))),
        ("two unnamed storages", bad(format!("{ZEO}{FS}{FS}"))),
        ("unnamed and named 1", bad(format!("{ZEO}{FS}<mappingstorage 1/>\n"))),
        ("reused section name", bad(format!("{ZEO}<filestorage a>\npath x\n</filestorage>\n<mappingstorage A/>\n"))),
        ("pid-filename directory missing", bad(zeo("  pid-filename nodir/zeo.pid"))),
        ("path directory missing", bad(fs("").replace("x.fs", "nodir/x.fs"))),
        ("filestorage unknown key", bad(fs("  size 3"))),
        ("bad quota", bad(fs("  quota 1.5MB"))),
        ("missing path", bad(format!("{ZEO}<filestorage>\n</filestorage>\n"))),
        ("blobstorage without blob-dir", bad(format!("{ZEO}<blobstorage>\n{FS}</blobstorage>\n"))),
        ("unbalanced end", bad(format!("<zeo>\n  address 1\n</filestorage>\n{FS}"))),
        ("unclosed section", bad(format!("{FS}<zeo>\n  address 1\n"))),
        ("malformed header", bad(format!("< zeo>\n  address 1\n</zeo>\n{FS}"))),
        ("undefined substitution", bad(format!("<zeo>\n  address $port\n</zeo>\n{FS}"))),
        ("redefinition", bad(format!("%define a 1\n%define a 2\n{ZEO}{FS}"))),
        ("unknown directive", bad(format!("%defines a 1\n{ZEO}{FS}"))),
        ("unknown section type", bad(format!("{ZEO}{FS}<nosuch>\n</nosuch>\n"))),
        ("section in the wrong place", bad(format!("{ZEO}{FS}<logfile>\n  path x\n</logfile>\n"))),
        ("top-level key", bad(format!("{ZEO}{FS}stray value\n"))),
        ("bad log level", bad(format!("{ZEO}{FS}<eventlog>\n  level loud\n</eventlog>\n"))),
        ("rotating STDOUT", bad(format!("{ZEO}{FS}<eventlog>\n<logfile>\npath STDOUT\nold-files 2\n</logfile>\n</eventlog>\n"))),
        ("rotation without old-files", bad(format!("{ZEO}{FS}<eventlog>\n<logfile>\npath x.log\nmax-size 1MB\n</logfile>\n</eventlog>\n"))),
        ("unknown log field", bad(format!("{ZEO}{FS}<eventlog>\n<logfile>\npath x.log\nformat %(nosuch)s\n</logfile>\n</eventlog>\n"))),
        ("ssl without authenticate", bad(zeo("<ssl>\n certificate server.pem\n</ssl>"))),
        ("ssl certificate missing", bad(zeo("<ssl>\n certificate nope.pem\n authenticate client.pem\n</ssl>"))),
        ("%import of an unknown package", bad(format!("%import no_such_package\n{ZEO}{FS}"))),
        ("runner without program", bad(format!("{ZEO}{FS}<runner>\n  daemon on\n</runner>\n"))),
        ("-X without -C", (vec![], vec!["-X", "zeo/address=1", "-a", "1", "-f", "x.fs"])),
        ("-X matching nothing", (conf(format!("{ZEO}{FS}")), vec!["-C", "zeo.conf", "-X", "nosuch/key=1"])),
        ("conflicting -t", (vec![], vec!["-a", "1", "-f", "x.fs", "-t", "1", "-t", "2"])),
        ("bad -a", (vec![], vec!["-a", "host:port", "-f", "x.fs"])),
        ("missing config file", (vec![], vec!["-C", "missing.conf"])),
    ];
    list.into_iter().map(|(n, (f, a))| (n, f, a)).collect()
}

#[test]
fn runzeo_and_zeo_serve_read_the_same_configuration() {
    let mut failures = Vec::new();
    for (name, files, args) in accepted_cases() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        write_files(dir.path(), &files);
        let py = runzeo(dir.path(), &args);
        assert!(
            py.status.success(),
            "runzeo rejects sample '{name}':\n{}",
            text(&py)
        );
        let rs = ours(dir.path(), &args);
        assert!(
            rs.status.success(),
            "zeo serve rejects sample '{name}':\n{}",
            text(&rs)
        );
        let py_v = numbers_as_floats(serde_json::from_slice(&py.stdout).unwrap());
        let rs_v = comparable(serde_json::from_slice(&rs.stdout).unwrap());
        if py_v != rs_v {
            failures.push(format!(
                "sample '{name}':\n--- runzeo\n{}\n--- zeo serve\n{}",
                serde_json::to_string_pretty(&py_v).unwrap(),
                serde_json::to_string_pretty(&rs_v).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn configurations_runzeo_rejects_are_rejected_with_status_2() {
    let mut failures = Vec::new();
    for (name, files, args) in rejected_cases() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        write_files(dir.path(), &files);
        let py = runzeo(dir.path(), &args);
        if py.status.success() {
            failures.push(format!(
                "runzeo accepts '{name}' (bad sample):\n{}",
                text(&py)
            ));
            continue;
        }
        let rs = ours(dir.path(), &args);
        if rs.status.code() != Some(2) {
            failures.push(format!("zeo serve on '{name}':\n{}", text(&rs)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
