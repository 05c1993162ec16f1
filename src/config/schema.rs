//! The typed server configuration (`ServerConfig` and its parts) that `zeo serve` runs
//! from, and its JSON rendering for `zeo serve --print-config`.
//!
//! Invariants: every value is already converted and range-checked (paths `~`-expanded,
//! sizes in bytes, durations in seconds, log levels 0..=50); defaults are runzeo's; empty
//! values that runzeo treats as "unset" (pid-filename, blob-dir) are `None`.

use super::json::Json;
use super::units::ListenAddress;
use std::path::PathBuf;

/// Everything `zeo serve` needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub zeo: ZeoConfig,
    /// The storages to serve, in configuration order, with their final names.
    pub storages: Vec<StorageConfig>,
    /// `<eventlog>`; `None` means runzeo's default: INFO and above to stderr.
    pub eventlog: Option<EventLogConfig>,
    /// `<zookeeper>` (zc.zkzeo-style registration), not yet acted upon.
    pub zookeeper: Option<ZookeeperConfig>,
    /// Settings accepted for compatibility but ignored, phrased for a log line.
    pub warnings: Vec<String>,
}

/// The `<zeo>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeoConfig {
    pub address: ListenAddress,
    /// Server-wide read-only mode (default false).
    pub read_only: bool,
    /// Transactions kept for quick verification (default 100).
    pub invalidation_queue_size: usize,
    /// Seconds; quick verification by iterating the storage back this far (default unset).
    pub invalidation_age: Option<f64>,
    /// Seconds a committer may hold the commit lock (default unset = no limit).
    pub transaction_timeout: Option<f64>,
    /// Accepted for compatibility; `zeo serve` always resolves conflicts client-side.
    pub client_conflict_resolution: bool,
    /// `Some(true)`/`Some(false)` when configured; `None` = use env `ZEO_MSGPACK`
    /// (non-empty means msgpack), as runzeo does. See [`ZeoConfig::use_msgpack`].
    pub msgpack: Option<bool>,
    pub pid_filename: Option<PathBuf>,
    pub ssl: Option<SslConfig>,
    /// Extension: where to serve the status/monitor protocol (later issue).
    pub monitor_address: Option<ListenAddress>,
    /// Extension: where to serve metrics (later issue).
    pub metrics_address: Option<ListenAddress>,
    /// Extension: largest inbound message in bytes (unset: env
    /// `ZEO_MAX_MESSAGE_SIZE`, else 512 MiB).
    pub max_message_size: Option<usize>,
    /// Extension: unsent output in bytes before a client that does not read is
    /// disconnected (unset: env `ZEO_MAX_OUTPUT_BUFFER`, else 256 MiB).
    pub max_output_buffer: Option<usize>,
}

impl ZeoConfig {
    /// The effective msgpack choice given the value of env `ZEO_MSGPACK`.
    pub fn use_msgpack(&self, env_zeo_msgpack: Option<&str>) -> bool {
        self.msgpack
            .unwrap_or_else(|| env_zeo_msgpack.is_some_and(|v| !v.is_empty()))
    }
}

/// `<ssl>` inside `<zeo>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SslConfig {
    /// PEM certificate (chain) file.
    pub certificate: PathBuf,
    /// PEM private key; `None` = the key is in the certificate file.
    pub key: Option<PathBuf>,
    /// Dotted name of a Python function: accepted, cannot be called (warned).
    pub password_function: Option<String>,
    /// Which client certificates to trust.
    pub authenticate: Authenticate,
}

/// The `authenticate` key of `<ssl>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Authenticate {
    /// A file of CA and/or client certificates.
    File(PathBuf),
    /// A directory of hashed certificates (OpenSSL `c_rehash` layout).
    Dir(PathBuf),
    /// `DYNAMIC`: no CA loaded from the configuration.
    Dynamic,
}

/// One served storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// The name clients `register` (lower-cased section name; unnamed = "1").
    pub name: String,
    pub kind: StorageKind,
}

/// What a storage section describes.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageKind {
    File(FileStorageConfig),
    /// `<mappingstorage>`; `name` is its `name` key (default "Mapping Storage").
    Mapping {
        name: String,
    },
    /// `<blobstorage>`: blob support in `blob_dir` around `base`.
    Blob {
        blob_dir: PathBuf,
        base: Box<StorageKind>,
    },
}

/// `<filestorage>` (and each `-f`).
#[derive(Debug, Clone, PartialEq)]
pub struct FileStorageConfig {
    pub path: PathBuf,
    pub blob_dir: Option<PathBuf>,
    /// Truncate an existing file at open (default false).
    pub create: bool,
    pub read_only: bool,
    /// Maximum Data.fs size in bytes.
    pub quota: Option<u64>,
    /// Dotted name of a Python packer: accepted, ignored (warned).
    pub packer: Option<String>,
    /// Garbage-collect when packing (default true).
    pub pack_gc: bool,
    /// Keep `Data.fs.old` after packing (default true).
    pub pack_keep_old: bool,
}

impl FileStorageConfig {
    /// A FileStorage at `path` with runzeo's defaults (what `-f` gives).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        FileStorageConfig {
            path: path.into(),
            blob_dir: None,
            create: false,
            read_only: false,
            quota: None,
            packer: None,
            pack_gc: true,
            pack_keep_old: true,
        }
    }
}

/// `<eventlog>`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLogConfig {
    /// Root logger level (default 20 = INFO).
    pub level: u8,
    pub handlers: Vec<LogHandler>,
}

/// A handler section inside `<eventlog>`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogHandler {
    File(LogFileConfig),
    Syslog(SyslogConfig),
}

/// Where a `<logfile>` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPath {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// Format placeholders syntax (`style` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// `%(name)s` (default)
    Classic,
    /// `{name}`
    Format,
    /// `$name`
    Template,
    /// `$name`, unknown names left as they are
    SafeTemplate,
}

impl LogStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStyle::Classic => "classic",
            LogStyle::Format => "format",
            LogStyle::Template => "template",
            LogStyle::SafeTemplate => "safe-template",
        }
    }
}

/// Keys every handler has.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerCommon {
    /// Message format, with `\n`, `\t`, `\b`, `\f`, `\r` escapes already applied.
    pub format: String,
    /// strftime format for `asctime` (default `%Y-%m-%dT%H:%M:%S`).
    pub dateformat: String,
    /// Handler level (default 0 = NOTSET: everything the logger passes).
    pub level: u8,
    pub style: LogStyle,
    pub arbitrary_fields: bool,
    /// Dotted name of a Python formatter class: accepted, ignored (warned).
    pub formatter: Option<String>,
}

/// `<logfile>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFileConfig {
    pub path: LogPath,
    pub common: HandlerCommon,
    /// Rotated files to keep (default 0).
    pub old_files: i64,
    /// Rotate at this size in bytes (default 0 = never).
    pub max_size: i64,
    /// Timed rotation spec as in Python's TimedRotatingFileHandler (default empty).
    pub when: String,
    pub interval: i64,
    pub encoding: Option<String>,
    pub delay: bool,
}

/// `<syslog>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub common: HandlerCommon,
    /// Facility name, lower-case (default "user").
    pub facility: String,
    /// Socket address: `host:port` (default localhost:514) or a Unix path.
    pub address: ListenAddress,
}

/// `<zookeeper>` (as zc.zkzeo reads it; not in runzeo's schema).
#[derive(Debug, Clone, PartialEq)]
pub struct ZookeeperConfig {
    pub connection: String,
    pub path: String,
    pub session_timeout: Option<i64>,
    pub monitor_server: Option<ListenAddress>,
}

fn address_json(a: &ListenAddress) -> Json {
    match a {
        ListenAddress::Tcp { host, port } => Json::obj(vec![
            (
                "family",
                Json::str(if a.is_ipv6() { "inet6" } else { "inet" }),
            ),
            ("host", Json::str(host)),
            ("port", Json::Int(i64::from(*port))),
        ]),
        ListenAddress::Unix(p) => {
            Json::obj(vec![("family", Json::str("unix")), ("path", Json::path(p))])
        }
    }
}

fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> Json) -> Json {
    v.as_ref().map(f).unwrap_or(Json::Null)
}

fn storage_kind_json(k: &StorageKind, mut fields: Vec<(&'static str, Json)>) -> Json {
    match k {
        StorageKind::File(f) => {
            fields.extend([
                ("type", Json::str("filestorage")),
                ("path", Json::path(&f.path)),
                ("blob_dir", opt(&f.blob_dir, |p| Json::path(p))),
                ("create", Json::Bool(f.create)),
                ("read_only", Json::Bool(f.read_only)),
                ("quota", opt(&f.quota, |q| Json::Int(*q as i64))),
                ("packer", opt(&f.packer, |s| Json::str(s))),
                ("pack_gc", Json::Bool(f.pack_gc)),
                ("pack_keep_old", Json::Bool(f.pack_keep_old)),
            ]);
        }
        StorageKind::Mapping { name } => {
            fields.extend([
                ("type", Json::str("mappingstorage")),
                ("storage_name", Json::str(name)),
            ]);
        }
        StorageKind::Blob { blob_dir, base } => {
            fields.extend([
                ("type", Json::str("blobstorage")),
                ("blob_dir", Json::path(blob_dir)),
                ("base", storage_kind_json(base, Vec::new())),
            ]);
        }
    }
    Json::obj(fields)
}

fn handler_json(h: &LogHandler) -> Json {
    let (mut fields, c) = match h {
        LogHandler::File(f) => (
            vec![
                ("type", Json::str("logfile")),
                (
                    "path",
                    match &f.path {
                        LogPath::Stdout => Json::str("STDOUT"),
                        LogPath::Stderr => Json::str("STDERR"),
                        LogPath::File(p) => Json::path(p),
                    },
                ),
                ("old_files", Json::Int(f.old_files)),
                ("max_size", Json::Int(f.max_size)),
                ("when", Json::str(&f.when)),
                ("interval", Json::Int(f.interval)),
                ("encoding", opt(&f.encoding, |s| Json::str(s))),
                ("delay", Json::Bool(f.delay)),
            ],
            &f.common,
        ),
        LogHandler::Syslog(s) => (
            vec![
                ("type", Json::str("syslog")),
                ("facility", Json::str(&s.facility)),
                ("address", address_json(&s.address)),
            ],
            &s.common,
        ),
    };
    fields.extend([
        ("format", Json::str(&c.format)),
        ("dateformat", Json::str(&c.dateformat)),
        ("level", Json::Int(i64::from(c.level))),
        ("style", Json::str(c.style.as_str())),
        ("arbitrary_fields", Json::Bool(c.arbitrary_fields)),
        ("formatter", opt(&c.formatter, |s| Json::str(s))),
    ]);
    Json::obj(fields)
}

impl ServerConfig {
    /// The JSON document `--print-config` prints (keys use `_` for `-`).
    pub fn to_json(&self) -> Json {
        let z = &self.zeo;
        let zeo = Json::obj(vec![
            ("address", address_json(&z.address)),
            ("read_only", Json::Bool(z.read_only)),
            (
                "invalidation_queue_size",
                Json::Int(i64::try_from(z.invalidation_queue_size).unwrap_or(i64::MAX)),
            ),
            (
                "invalidation_age",
                opt(&z.invalidation_age, |v| Json::Float(*v)),
            ),
            (
                "transaction_timeout",
                opt(&z.transaction_timeout, |v| Json::Float(*v)),
            ),
            (
                "client_conflict_resolution",
                Json::Bool(z.client_conflict_resolution),
            ),
            ("msgpack", opt(&z.msgpack, |b| Json::Bool(*b))),
            ("pid_filename", opt(&z.pid_filename, |p| Json::path(p))),
            (
                "ssl",
                opt(&z.ssl, |s| {
                    let (kind, path) = match &s.authenticate {
                        Authenticate::File(p) => ("file", Json::path(p)),
                        Authenticate::Dir(p) => ("dir", Json::path(p)),
                        Authenticate::Dynamic => ("dynamic", Json::Null),
                    };
                    Json::obj(vec![
                        ("certificate", Json::path(&s.certificate)),
                        ("key", opt(&s.key, |p| Json::path(p))),
                        (
                            "password_function",
                            opt(&s.password_function, |f| Json::str(f)),
                        ),
                        (
                            "authenticate",
                            Json::obj(vec![("kind", Json::str(kind)), ("path", path)]),
                        ),
                    ])
                }),
            ),
            ("monitor_address", opt(&z.monitor_address, address_json)),
            ("metrics_address", opt(&z.metrics_address, address_json)),
            (
                "max_message_size",
                opt(&z.max_message_size, |v| Json::Int(*v as i64)),
            ),
            (
                "max_output_buffer",
                opt(&z.max_output_buffer, |v| Json::Int(*v as i64)),
            ),
        ]);
        let storages = Json::Arr(
            self.storages
                .iter()
                .map(|s| storage_kind_json(&s.kind, vec![("name", Json::str(&s.name))]))
                .collect(),
        );
        let eventlog = opt(&self.eventlog, |e| {
            Json::obj(vec![
                ("level", Json::Int(i64::from(e.level))),
                (
                    "handlers",
                    Json::Arr(e.handlers.iter().map(handler_json).collect()),
                ),
            ])
        });
        let zookeeper = opt(&self.zookeeper, |k| {
            Json::obj(vec![
                ("connection", Json::str(&k.connection)),
                ("path", Json::str(&k.path)),
                (
                    "session_timeout",
                    opt(&k.session_timeout, |v| Json::Int(*v)),
                ),
                ("monitor_server", opt(&k.monitor_server, address_json)),
            ])
        });
        Json::obj(vec![
            ("zeo", zeo),
            ("storages", storages),
            ("eventlog", eventlog),
            ("zookeeper", zookeeper),
            (
                "warnings",
                Json::Arr(self.warnings.iter().map(|w| Json::str(w)).collect()),
            ),
        ])
    }
}
