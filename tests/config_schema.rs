//! Every key of `<zeo>`, `<ssl>`, `<filestorage>`, `<mappingstorage>`, `<blobstorage>`,
//! `<eventlog>`/`<logfile>`/`<syslog>`, `<runner>` and `<zookeeper>`: its default, its
//! accepted forms and its errors (with file, line and key), through the library API.

use std::path::{Path, PathBuf};
use zeo::config::{
    parse_str, Authenticate, ConfigError, Host, ListenAddress, LogHandler, LogPath, LogStyle,
    ServerConfig, StorageKind,
};

/// Directories /srv, /srv/blobs, /etc/zeo; files /etc/zeo/*.pem; HOME=/home/z.
struct TestHost;
impl Host for TestHost {
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        match path.to_str() {
            Some("etc/storage.conf") => {
                Ok("<filestorage>\npath /srv/inc.fs\n</filestorage>\n".into())
            }
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
    fn env_var(&self, name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/z".into()),
            "ZEO_PORT" => Some("8765".into()),
            _ => None,
        }
    }
    fn is_dir(&self, p: &Path) -> bool {
        matches!(
            p.to_str(),
            Some("/srv" | "/srv/blobs" | "/etc/zeo" | "/home/z")
        )
    }
    fn exists(&self, p: &Path) -> bool {
        self.is_dir(p) || p.starts_with("/etc/zeo") && p.extension().is_some_and(|e| e == "pem")
    }
    fn user_home(&self, _: &str) -> Option<String> {
        None
    }
}

const ZEO: &str = "<zeo>\n  address 8100\n</zeo>\n";
const FS: &str = "<filestorage>\n  path /srv/Data.fs\n</filestorage>\n";

fn load(text: &str) -> Result<ServerConfig, ConfigError> {
    parse_str(text, Path::new("etc/zeo.conf"), &TestHost)
}

fn ok(text: &str) -> ServerConfig {
    load(text).unwrap_or_else(|e| panic!("rejected: {e}\n{text}"))
}

/// The error's (line, key, message) — asserting it names the file.
fn err(text: &str) -> (Option<usize>, Option<String>, String) {
    let e = load(text).expect_err(text);
    assert!(
        e.to_string().starts_with("etc/zeo.conf")
            || e.file.is_some()
            || e.message.contains("zeo.conf"),
        "{e}"
    );
    (e.line, e.key, e.message)
}

fn zeo_with(keys: &str) -> String {
    format!("<zeo>\n  address 8100\n{keys}\n</zeo>\n{FS}")
}

fn tcp(host: &str, port: u16) -> ListenAddress {
    ListenAddress::Tcp {
        host: host.into(),
        port,
    }
}

#[test]
fn zeo_defaults() {
    let c = ok(&format!("{ZEO}{FS}"));
    let z = &c.zeo;
    assert_eq!(z.address, tcp("", 8100));
    assert!(!z.read_only);
    assert_eq!(z.invalidation_queue_size, 100);
    assert_eq!(z.invalidation_age, None);
    assert_eq!(z.transaction_timeout, None);
    assert!(!z.client_conflict_resolution);
    assert_eq!(z.msgpack, None);
    assert!(z.use_msgpack(Some("1")));
    assert!(!z.use_msgpack(Some("")));
    assert!(!z.use_msgpack(None));
    assert_eq!(z.pid_filename, None);
    assert_eq!(z.ssl, None);
    assert_eq!(z.monitor_address, None);
    assert_eq!(z.metrics_address, None);
    assert_eq!((z.max_message_size, z.max_output_buffer), (None, None));
    assert!(c.eventlog.is_none() && c.zookeeper.is_none() && c.warnings.is_empty());
}

#[test]
fn zeo_every_key() {
    let c = ok(&zeo_with(
        "read-only on\ninvalidation-queue-size 5_000\ninvalidation-age 90.5\n\
         transaction-timeout 30\nclient-conflict-resolution YES\nmsgpack false\n\
         pid-filename ~/zeo.pid\nmonitor-address 127.0.0.1:8101\nmetrics-address [::1]:9100\n\
         max-message-size 64MB\nmax-output-buffer 65536",
    ));
    let z = &c.zeo;
    assert!(z.read_only);
    assert_eq!(z.invalidation_queue_size, 5000);
    assert_eq!(z.invalidation_age, Some(90.5));
    assert_eq!(z.transaction_timeout, Some(30.0));
    assert!(z.client_conflict_resolution);
    assert_eq!(z.msgpack, Some(false));
    assert!(!z.use_msgpack(Some("1")));
    assert_eq!(z.pid_filename, Some(PathBuf::from("/home/z/zeo.pid")));
    assert_eq!(z.monitor_address, Some(tcp("127.0.0.1", 8101)));
    assert_eq!(z.metrics_address, Some(tcp("::1", 9100)));
    assert_eq!(z.max_message_size, Some(64 << 20));
    assert_eq!(z.max_output_buffer, Some(65536));
}

#[test]
fn zeo_address_forms() {
    let addr = |a: &str| ok(&format!("<zeo>\naddress {a}\n</zeo>\n{FS}")).zeo.address;
    assert_eq!(addr("localhost:8100"), tcp("localhost", 8100));
    assert_eq!(addr("[::]:8100"), tcp("::", 8100));
    assert_eq!(
        addr("/srv/zeo.sock"),
        ListenAddress::Unix("/srv/zeo.sock".into())
    );
    assert_eq!(addr("$(ZEO_PORT)"), tcp("", 8765));
    assert_eq!(addr("somehost"), tcp("somehost", 0));
}

#[test]
fn zeo_errors() {
    let (line, key, msg) = err("<zeo>\n\n  adress 8100\n</zeo>\n");
    assert_eq!(
        (line, key.as_deref()),
        (Some(3), Some("<zeo> key 'adress'"))
    );
    assert!(msg.starts_with("unknown key"), "{msg}");
    let (line, key, msg) = err(&format!("<zeo>\n</zeo>\n{FS}"));
    assert_eq!(
        (line, key.as_deref()),
        (Some(1), Some("<zeo> key 'address'"))
    );
    assert_eq!(msg, "required key is missing");
    for (keys, key) in [
        ("read-only maybe", "read-only"),
        ("invalidation-queue-size 1.5", "invalidation-queue-size"),
        ("invalidation-queue-size -1", "invalidation-queue-size"),
        ("invalidation-age soon", "invalidation-age"),
        ("transaction-timeout 1.5", "transaction-timeout"),
        ("transaction-timeout 30s", "transaction-timeout"),
        ("client-conflict-resolution 1", "client-conflict-resolution"),
        ("msgpack 0", "msgpack"),
        ("pid-filename /nonexistent/zeo.pid", "pid-filename"),
        ("monitor-address host:99999", "monitor-address"),
        ("max-message-size 1000", "max-message-size"),
        ("max-message-size lots", "max-message-size"),
        ("max-output-buffer 1KB", "max-output-buffer"),
        ("read-only true\nREAD-ONLY false", "READ-ONLY"),
    ] {
        let (line, k, _) = err(&zeo_with(keys));
        assert_eq!(k, Some(format!("<zeo> key '{key}'")), "{keys}");
        assert!(line.is_some_and(|l| l >= 3), "{keys}");
    }
    let (line, _, msg) = err(&format!("<zeo>\naddress host:70000\n</zeo>\n{FS}"));
    assert_eq!(line, Some(2));
    assert!(msg.contains("65535"), "{msg}");
    assert!(err(&format!("{ZEO}{ZEO}{FS}")).2.contains("only one <zeo>"));
    assert!(err(FS).2.contains("<zeo>"));
    assert!(err(ZEO).2.contains("storage"));
}

#[test]
fn ssl_every_key() {
    let c = ok(&zeo_with(
        "<ssl>\ncertificate /etc/zeo/server.pem\nkey /etc/zeo/key.pem\n\
         authenticate /etc/zeo/clients.pem\npassword-function my.module.pw\n</ssl>",
    ));
    let s = c.zeo.ssl.expect("ssl");
    assert_eq!(s.certificate, PathBuf::from("/etc/zeo/server.pem"));
    assert_eq!(s.key, Some(PathBuf::from("/etc/zeo/key.pem")));
    assert_eq!(
        s.authenticate,
        Authenticate::File("/etc/zeo/clients.pem".into())
    );
    assert_eq!(s.password_function.as_deref(), Some("my.module.pw"));
    assert_eq!(c.warnings.len(), 1);
    let c = ok(&zeo_with(
        "<ssl>\ncertificate /etc/zeo/s.pem\nauthenticate /etc/zeo\n</ssl>",
    ));
    let s = c.zeo.ssl.unwrap();
    assert_eq!(
        (s.key, s.authenticate),
        (None, Authenticate::Dir("/etc/zeo".into()))
    );
    let c = ok(&zeo_with(
        "<ssl>\ncertificate /etc/zeo/s.pem\nauthenticate DYNAMIC\n</ssl>",
    ));
    assert_eq!(c.zeo.ssl.unwrap().authenticate, Authenticate::Dynamic);
    for (body, key) in [
        ("authenticate /etc/zeo", "certificate"),
        ("certificate /etc/zeo/s.pem", "authenticate"),
        ("certificate /etc/zeo/s.pem\nauthenticate", "authenticate"),
        (
            "certificate /etc/zeo/missing.crt\nauthenticate DYNAMIC",
            "certificate",
        ),
        (
            "certificate /etc/zeo/s.pem\nkey /nope/k.pem\nauthenticate DYNAMIC",
            "key",
        ),
        (
            "certificate /etc/zeo/s.pem\nauthenticate /etc/zeo/nope.crt",
            "authenticate",
        ),
        (
            "certificate /etc/zeo/s.pem\nauthenticate DYNAMIC\ncheck-hostname no",
            "check-hostname",
        ),
    ] {
        let (_, k, _) = err(&zeo_with(&format!("<ssl>\n{body}\n</ssl>")));
        assert_eq!(k, Some(format!("<ssl> key '{key}'")), "{body}");
    }
    let two = "<ssl>\ncertificate /etc/zeo/s.pem\nauthenticate DYNAMIC\n</ssl>\n";
    assert!(err(&zeo_with(&format!("{two}{two}")))
        .2
        .contains("only one <ssl>"));
}

fn file_storage(c: &ServerConfig, i: usize) -> &zeo::config::FileStorageConfig {
    match &c.storages[i].kind {
        StorageKind::File(f) => f,
        other => panic!("not a filestorage: {other:?}"),
    }
}

#[test]
fn filestorage_every_key() {
    let c = ok(&format!("{ZEO}{FS}"));
    assert_eq!(c.storages[0].name, "1");
    let f = file_storage(&c, 0);
    assert_eq!(f.path, PathBuf::from("/srv/Data.fs"));
    assert_eq!(
        (
            f.blob_dir.clone(),
            f.create,
            f.read_only,
            f.quota,
            f.packer.clone(),
            f.pack_gc,
            f.pack_keep_old
        ),
        (None, false, false, None, None, true, true)
    );
    let c = ok(&format!(
        "{ZEO}<FileStorage Main>\nPath /srv/Data.fs\nblob-dir /srv/blobs\ncreate true\n\
         read-only yes\nquota 10MB\npacker zc.zodbdgc.pack\npack-gc off\npack-keep-old no\n\
         </FILESTORAGE>\n"
    ));
    assert_eq!(c.storages[0].name, "main");
    let f = file_storage(&c, 0);
    assert_eq!(f.blob_dir, Some(PathBuf::from("/srv/blobs")));
    assert!(f.create && f.read_only && !f.pack_gc && !f.pack_keep_old);
    assert_eq!(f.quota, Some(10 << 20));
    assert_eq!(f.packer.as_deref(), Some("zc.zodbdgc.pack"));
    assert_eq!(c.warnings.len(), 1, "packer is warned about");
    let c = ok(&format!(
        "{ZEO}<filestorage>\npath Data.fs\nblob-dir\nquota 3gb\n</filestorage>\n"
    ));
    let f = file_storage(&c, 0);
    assert_eq!(
        (f.path.clone(), f.blob_dir.clone(), f.quota),
        ("Data.fs".into(), None, Some(3 << 30))
    );
    for (body, key) in [
        ("", "path"),
        ("path /nope/Data.fs", "path"),
        ("path x.fs\nblob-dir /nope/blobs", "blob-dir"),
        ("path x.fs\ncreate sure", "create"),
        ("path x.fs\nread-only 2", "read-only"),
        ("path x.fs\nquota 1.5GB", "quota"),
        ("path x.fs\nquota -1", "quota"),
        ("path x.fs\npack-gc nope", "pack-gc"),
        ("path x.fs\npack-keep-old", "pack-keep-old"),
        ("path x.fs\nsize 3", "size"),
    ] {
        let (_, k, _) = err(&format!("{ZEO}<filestorage>\n{body}\n</filestorage>\n"));
        assert_eq!(k, Some(format!("<filestorage> key '{key}'")), "{body}");
    }
}

#[test]
fn mapping_and_blob_storages_and_naming() {
    let c = ok(&format!(
        "{ZEO}<mappingstorage>\n</mappingstorage>\n<mappingstorage two>\nname Scratch\n</mappingstorage>\n\
         <blobstorage 3>\nblob-dir /srv/blobs\n<filestorage inner>\npath /srv/b.fs\n</filestorage>\n</blobstorage>\n"
    ));
    let names: Vec<&str> = c.storages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["1", "two", "3"]);
    assert_eq!(
        c.storages[0].kind,
        StorageKind::Mapping {
            name: "Mapping Storage".into()
        }
    );
    assert_eq!(
        c.storages[1].kind,
        StorageKind::Mapping {
            name: "Scratch".into()
        }
    );
    match &c.storages[2].kind {
        StorageKind::Blob { blob_dir, base } => {
            assert_eq!(blob_dir, &PathBuf::from("/srv/blobs"));
            assert!(matches!(**base, StorageKind::File(ref f) if f.path == Path::new("/srv/b.fs")));
        }
        other => panic!("{other:?}"),
    }
    assert!(err(&format!("{ZEO}{FS}{FS}")).2.contains("unnamed"));
    assert!(
        err(&format!("{ZEO}{FS}<mappingstorage 1>\n</mappingstorage>\n"))
            .2
            .contains("named 1")
    );
    let (line, _, msg) = err(&format!(
        "{ZEO}<filestorage a>\npath x\n</filestorage>\n<mappingstorage A/>\n"
    ));
    assert_eq!(line, Some(7));
    assert!(msg.contains("already used"), "{msg}");
    assert!(err(&format!(
        "{ZEO}<mappingstorage>\nsize 1\n</mappingstorage>\n"
    ))
    .1
    .is_some());
    let (_, key, _) = err(&format!("{ZEO}<blobstorage>\n{FS}</blobstorage>\n"));
    assert_eq!(key.as_deref(), Some("<blobstorage> key 'blob-dir'"));
    assert!(
        err(&format!("{ZEO}<blobstorage>\nblob-dir b\n</blobstorage>\n"))
            .2
            .contains("needs a storage")
    );
    assert!(err(&format!(
        "{ZEO}<blobstorage>\nblob-dir b\n{FS}{FS}</blobstorage>\n"
    ))
    .2
    .contains("only one"));
    assert!(err(&format!("{ZEO}<demostorage>\n</demostorage>\n"))
        .2
        .contains("not supported"));
    let (line, _, msg) = err(&format!("{ZEO}{FS}<logfile>\npath x\n</logfile>\n"));
    assert_eq!(line, Some(7));
    assert!(msg.contains("not allowed"), "{msg}");
    assert!(err(&format!("{ZEO}{FS}<nosuch>\n</nosuch>\n"))
        .2
        .contains("unknown section type"));
    assert!(err(&format!("{ZEO}{FS}stray 1\n")).1.is_some());
}

fn logfile(c: &ServerConfig, i: usize) -> &zeo::config::LogFileConfig {
    match &c.eventlog.as_ref().expect("eventlog").handlers[i] {
        LogHandler::File(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn eventlog_every_key() {
    let base = format!("{ZEO}{FS}");
    let c = ok(&format!(
        "{base}<eventlog>\n<logfile>\npath STDOUT\n</logfile>\n</eventlog>\n"
    ));
    assert_eq!(c.eventlog.as_ref().unwrap().level, 20);
    let f = logfile(&c, 0);
    assert_eq!(f.path, LogPath::Stdout);
    assert_eq!(
        f.common.format,
        "------\n%(asctime)s %(levelname)s %(name)s %(message)s"
    );
    assert_eq!(f.common.dateformat, "%Y-%m-%dT%H:%M:%S");
    assert_eq!(
        (f.common.level, f.common.style, f.common.arbitrary_fields),
        (0, LogStyle::Classic, false)
    );
    assert_eq!(
        (
            f.old_files,
            f.max_size,
            f.when.as_str(),
            f.interval,
            f.delay
        ),
        (0, 0, "", 0, false)
    );
    let c = ok(&format!(
        "{base}<eventlog>\nlevel debug\n<logfile>\npath STDERR\nformat %(levelname)s\\t%(message)s\n\
         level WARN\ndateformat %H:%M\n</logfile>\n<logfile rotating>\npath /srv/zeo.log\n\
         old-files 3\nmax-size 1MB\nencoding utf-8\ndelay true\n</logfile>\n<logfile timed>\n\
         path /srv/t.log\nold-files 2\nwhen D\ninterval 2\nstyle format\nformat {{message}}\n</logfile>\n\
         <syslog>\nfacility LOCAL3\naddress /dev/log\nformatter zope.exceptions.log.Formatter\n</syslog>\n</eventlog>\n"
    ));
    let e = c.eventlog.as_ref().unwrap();
    assert_eq!(e.level, 10);
    let f = logfile(&c, 0);
    assert_eq!(
        (f.path.clone(), f.common.format.as_str(), f.common.level),
        (LogPath::Stderr, "%(levelname)s\t%(message)s", 30)
    );
    assert_eq!(f.common.dateformat, "%H:%M");
    let f = logfile(&c, 1);
    assert_eq!(f.path, LogPath::File("/srv/zeo.log".into()));
    assert_eq!(
        (f.old_files, f.max_size, f.encoding.as_deref(), f.delay),
        (3, 1 << 20, Some("utf-8"), true)
    );
    let f = logfile(&c, 2);
    assert_eq!(
        (f.when.as_str(), f.interval, f.common.style),
        ("D", 2, LogStyle::Format)
    );
    match &e.handlers[3] {
        LogHandler::Syslog(s) => {
            assert_eq!(s.facility, "local3");
            assert_eq!(s.address, ListenAddress::Unix("/dev/log".into()));
            assert_eq!(
                s.common.formatter.as_deref(),
                Some("zope.exceptions.log.Formatter")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.warnings.len(), 1, "formatter is warned about");
    for (body, key) in [
        ("level loud", "<eventlog> key 'level'"),
        ("level 51", "<eventlog> key 'level'"),
        ("<logfile>\n</logfile>", "<logfile> key 'path'"),
        (
            "<logfile>\npath STDOUT\nold-files 2\n</logfile>",
            "<logfile> key 'path'",
        ),
        (
            "<logfile>\npath STDOUT\ndelay on\n</logfile>",
            "<logfile> key 'path'",
        ),
        (
            "<logfile>\npath x.log\nmax-size 1MB\n</logfile>",
            "<logfile> key 'old-files'",
        ),
        (
            "<logfile>\npath x.log\nold-files 1\n</logfile>",
            "<logfile> key 'max-size'",
        ),
        (
            "<logfile>\npath x.log\nold-files 1\nwhen h\nmax-size 1\n</logfile>",
            "<logfile> key 'when'",
        ),
        (
            "<logfile>\npath x.log\nformat %(nosuch)s\n</logfile>",
            "<logfile> key 'format'",
        ),
        (
            "<logfile>\npath x.log\nstyle fancy\n</logfile>",
            "<logfile> key 'style'",
        ),
        (
            "<logfile>\npath x.log\nlevel 99\n</logfile>",
            "<logfile> key 'level'",
        ),
        (
            "<syslog>\nfacility kitchen\n</syslog>",
            "<syslog> key 'facility'",
        ),
    ] {
        let (_, k, _) = err(&format!("{base}<eventlog>\n{body}\n</eventlog>\n"));
        assert_eq!(k.as_deref(), Some(key), "{body}");
    }
    assert!(ok(&format!(
        "{base}<eventlog>\n<logfile>\npath x\narbitrary-fields true\nformat %(user)s\n</logfile>\n</eventlog>\n"
    ))
    .eventlog
    .is_some());
    assert!(err(&format!(
        "{base}<eventlog>\n<email-notifier>\n</email-notifier>\n</eventlog>\n"
    ))
    .2
    .contains("not supported"));
}

#[test]
fn runner_and_zookeeper() {
    let c = ok(&format!(
        "{ZEO}{FS}<runner>\nprogram runzeo -C x\ndaemon on\nbackoff-limit 3\nexit-codes 0,2\numask 022\n\
         <eventlog>\n<logfile>\npath STDOUT\n</logfile>\n</eventlog>\n</runner>\n"
    ));
    assert_eq!(c.warnings.len(), 1);
    assert!(err(&format!("{ZEO}{FS}<runner>\ndaemon on\n</runner>\n"))
        .1
        .is_some());
    assert!(err(&format!(
        "{ZEO}{FS}<runner>\nprogram x\ndaemon maybe\n</runner>\n"
    ))
    .1
    .is_some());
    assert!(err(&format!(
        "{ZEO}{FS}<runner>\nprogram x\numask 9\n</runner>\n"
    ))
    .1
    .is_some());
    let c = ok(&format!(
        "{ZEO}{FS}<zookeeper>\nconnection zk1:2181,zk2:2181\npath /databases/demo\n\
         session-timeout 4000\nmonitor-server 127.0.0.1:0\n</zookeeper>\n"
    ));
    let z = c.zookeeper.unwrap();
    assert_eq!(
        (z.connection.as_str(), z.path.as_str(), z.session_timeout),
        ("zk1:2181,zk2:2181", "/databases/demo", Some(4000))
    );
    assert_eq!(z.monitor_server, Some(tcp("127.0.0.1", 0)));
    assert!(
        err(&format!("{ZEO}{FS}<zookeeper>\npath /x\n</zookeeper>\n"))
            .1
            .is_some()
    );
}

#[test]
fn syntax_through_the_schema() {
    let c = ok(
        "# a comment\n%import ZODB\n%import ZEO\n%define Root /srv\n<ZEO>\n  ADDRESS [::1]:$(ZEO_PORT)\n</zeo>\n\
         %include storage.conf\n<filestorage two>\npath ${root}/$$x.fs\n</filestorage>\n",
    );
    assert_eq!(c.zeo.address, tcp("::1", 8765));
    assert_eq!(file_storage(&c, 0).path, PathBuf::from("/srv/inc.fs"));
    assert_eq!(file_storage(&c, 1).path, PathBuf::from("/srv/$x.fs"));
    let e = load("%include missing.conf\n").unwrap_err();
    assert!(e.to_string().contains("etc/missing.conf"), "{e}");
    let e = load("<zeo>\naddress $port\n</zeo>\n").unwrap_err();
    assert_eq!(e.to_string(), "etc/zeo.conf:2: no replacement for 'port'");
    let e = load("%import relstorage\n").unwrap_err();
    assert_eq!(e.line, Some(1));
}

#[test]
fn message_format() {
    let e = load("<zeo>\n  adress 8100\n</zeo>\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "etc/zeo.conf:2: <zeo> key 'adress': unknown key (did you mean 'address'?)"
    );
}
