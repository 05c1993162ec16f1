//! runzeo's schema applied to a parsed tree: which sections may appear where, their keys,
//! datatypes and defaults (ZEO `schema.xml`/`server.xml`, ZODB `component.xml`, zdaemon's
//! `<runner>`), producing a [`ServerConfig`].
//!
//! Invariants: every rejection names file, line, section and key; storage naming follows
//! runzeo (lower-cased section names, one unnamed storage becomes "1"); things runzeo
//! accepts that `zeo serve` cannot act on are either accepted with a warning in
//! `ServerConfig::warnings` or rejected with a message saying why (docs/configuration.md
//! lists each).

use super::keys::Keys;
use super::logging::eventlog;
use super::parser::Section;
use super::schema::*;
use super::units::{self, Host};
use super::ConfigError;
use std::path::{Path, PathBuf};

/// Storage section types of ZODB's schema that `zeo serve` cannot serve.
const UNSUPPORTED_STORAGES: &[&str] =
    &["demostorage", "zeoclient", "fullstorage", "minimalstorage"];
/// Other section types runzeo's schema defines (allowed only inside other sections).
const NESTED_ONLY: &[&str] = &[
    "ssl",
    "logfile",
    "syslog",
    "win32-eventlog",
    "http-logger",
    "email-notifier",
    "logger",
    "environment",
    "zodb",
    "clientstorage",
];

fn is_storage_type(t: &str) -> bool {
    matches!(t, "filestorage" | "mappingstorage" | "blobstorage")
}

/// Section names must not repeat within one container (whatever their types).
pub fn check_unique_names(container: &Section) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for s in &container.sections {
        if let Some(name) = s.name.as_deref() {
            if let Some((_, line)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(s.pos.error(
                    None,
                    format!(
                        "section name '{name}' is already used on line {line} {}",
                        place(container)
                    ),
                ));
            }
            seen.push((name, s.pos.line));
        }
    }
    Ok(())
}

/// "at the top level" or "in <zeo>".
fn place(container: &Section) -> String {
    if container.type_.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {}", container.label())
    }
}

/// An error about a section that may not appear in `container`.
pub fn misplaced(section: &Section, container: &Section) -> ConfigError {
    let t = &section.type_;
    let known = is_storage_type(t)
        || UNSUPPORTED_STORAGES.contains(&t.as_str())
        || NESTED_ONLY.contains(&t.as_str())
        || matches!(t.as_str(), "zeo" | "eventlog" | "runner" | "zookeeper");
    if known {
        section.pos.error(
            None,
            format!(
                "section {} is not allowed in {}",
                section.label(),
                container.label()
            ),
        )
    } else {
        section
            .pos
            .error(None, format!("unknown section type '{t}'"))
    }
}

/// Apply runzeo's schema to the tree `root` (the whole file).
pub fn build(root: &Section, host: &dyn Host) -> Result<ServerConfig, ConfigError> {
    Keys::new(root, &[])?;
    check_unique_names(root)?;
    let mut warnings = Vec::new();
    let mut zeo: Option<ZeoConfig> = None;
    let mut eventlog_cfg: Option<EventLogConfig> = None;
    let mut zookeeper: Option<ZookeeperConfig> = None;
    let mut runner_seen = false;
    let mut storages: Vec<(Option<String>, StorageKind, &Section)> = Vec::new();
    for s in &root.sections {
        let once = |seen: bool| {
            if seen {
                Err(s
                    .pos
                    .error(None, format!("only one <{}> section is allowed", s.type_)))
            } else {
                Ok(())
            }
        };
        match s.type_.as_str() {
            "zeo" => {
                once(zeo.is_some())?;
                zeo = Some(zeo_section(s, host, &mut warnings)?);
            }
            "eventlog" => {
                once(eventlog_cfg.is_some())?;
                eventlog_cfg = Some(eventlog(s, host, &mut warnings)?);
            }
            "zookeeper" => {
                once(zookeeper.is_some())?;
                zookeeper = Some(zookeeper_section(s)?);
            }
            "runner" => {
                once(runner_seen)?;
                runner_seen = true;
                runner_section(s, host)?;
                warnings.push(format!(
                    "{}:{}: the <runner> section configures zdaemon (zeoctl); zeo serve ignores it",
                    s.pos.file.display(),
                    s.pos.line
                ));
            }
            t if is_storage_type(t) => {
                storages.push((s.name.clone(), storage_kind(s, host, &mut warnings)?, s));
            }
            t if UNSUPPORTED_STORAGES.contains(&t) => {
                return Err(s.pos.error(
                    None,
                    format!(
                        "storage type <{t}> is not supported by zeo serve \
                         (use <filestorage>, <mappingstorage> or <blobstorage>)"
                    ),
                ));
            }
            _ => return Err(misplaced(s, root)),
        }
    }
    let file = root.pos.file.display();
    let Some(zeo) = zeo else {
        return Err(ConfigError {
            file: Some(root.pos.file.as_ref().clone()),
            line: None,
            key: None,
            message: "no <zeo> section; one is required".into(),
        });
    };
    if storages.is_empty() {
        return Err(ConfigError::new(format!(
            "{file}: no storage section (<filestorage>, <mappingstorage> or <blobstorage>); \
             at least one is required"
        )));
    }
    let storages = name_storages(storages)?;
    Ok(ServerConfig {
        zeo,
        storages,
        eventlog: eventlog_cfg,
        zookeeper,
        warnings,
    })
}

/// runzeo's naming: section names as given; at most one unnamed storage, which
/// becomes "1" unless a storage is already named "1".
fn name_storages(
    list: Vec<(Option<String>, StorageKind, &Section)>,
) -> Result<Vec<StorageConfig>, ConfigError> {
    let unnamed: Vec<&Section> = list.iter().filter(|s| s.0.is_none()).map(|s| s.2).collect();
    if unnamed.len() > 1 {
        return Err(unnamed[1]
            .pos
            .error(None, "no more than one storage may be unnamed"));
    }
    if let Some(u) = unnamed.first() {
        if list.iter().any(|s| s.0.as_deref() == Some("1")) {
            return Err(u
                .pos
                .error(None, "can't have an unnamed storage and a storage named 1"));
        }
    }
    Ok(list
        .into_iter()
        .map(|(name, kind, _)| StorageConfig {
            name: name.unwrap_or_else(|| "1".to_string()),
            kind,
        })
        .collect())
}

fn no_children(s: &Section) -> Result<(), ConfigError> {
    match s.sections.first() {
        Some(c) => Err(misplaced(c, s)),
        None => Ok(()),
    }
}

fn zeo_section(
    s: &Section,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<ZeoConfig, ConfigError> {
    let k = Keys::new(
        s,
        &[
            "address",
            "read-only",
            "invalidation-queue-size",
            "invalidation-age",
            "transaction-timeout",
            "pid-filename",
            "client-conflict-resolution",
            "msgpack",
            "monitor-address",
            "metrics-address",
            "max-message-size",
            "max-output-buffer",
        ],
    )?;
    check_unique_names(s)?;
    let mut ssl = None;
    for c in &s.sections {
        if c.type_ != "ssl" {
            return Err(misplaced(c, s));
        }
        if ssl.is_some() {
            return Err(c.pos.error(None, "only one <ssl> section is allowed"));
        }
        ssl = Some(ssl_section(c, host, warnings)?);
    }
    let queue = k.or("invalidation-queue-size", 100, units::py_int)?;
    let invalidation_queue_size = usize::try_from(queue)
        .map_err(|_| k.error("invalidation-queue-size", "must not be negative"))?;
    let pid = k.get("pid-filename", |v| units::existing_dirpath(v, host))?;
    let limit = |key: &str, min: i64| -> Result<Option<usize>, ConfigError> {
        match k.get(key, units::byte_size)? {
            None => Ok(None),
            Some(v) if v < min => Err(k.error(key, format!("must be at least {min} bytes"))),
            Some(v) => Ok(Some(usize::try_from(v).unwrap_or(usize::MAX))),
        }
    };
    let max_message_size = limit("max-message-size", 1024)?;
    let max_output_buffer = limit("max-output-buffer", 64 * 1024)?;
    let cfg = ZeoConfig {
        address: k.required("address", units::socket_binding_address)?,
        read_only: k.or("read-only", false, units::boolean)?,
        invalidation_queue_size,
        invalidation_age: k.get("invalidation-age", units::py_float)?,
        transaction_timeout: k
            .get("transaction-timeout", units::py_int)?
            .map(|t| t as f64),
        client_conflict_resolution: k.or("client-conflict-resolution", false, units::boolean)?,
        msgpack: k.get("msgpack", units::boolean)?,
        pid_filename: pid.filter(|p| !p.as_os_str().is_empty()),
        ssl,
        monitor_address: k.get("monitor-address", units::socket_binding_address)?,
        metrics_address: k.get("metrics-address", units::socket_binding_address)?,
        max_message_size,
        max_output_buffer,
    };
    Ok(cfg)
}

fn ssl_section(
    s: &Section,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<SslConfig, ConfigError> {
    let k = Keys::new(
        s,
        &["certificate", "key", "password-function", "authenticate"],
    )?;
    no_children(s)?;
    let must_exist = |name: &str, p: &Path| {
        if host.exists(p) {
            Ok(())
        } else {
            Err(k.error(name, format!("{} does not exist", p.display())))
        }
    };
    let certificate = k.required("certificate", |v| units::existing_dirpath(v, host))?;
    must_exist("certificate", &certificate)?;
    let key = k.get("key", |v| units::existing_dirpath(v, host))?;
    if let Some(key) = &key {
        must_exist("key", key)?;
    }
    let auth = k.required("authenticate", |v| Ok(v.to_string()))?;
    let authenticate = if auth.is_empty() {
        return Err(k.error("authenticate", "must name a certificate file or directory"));
    } else if host.is_dir(Path::new(&auth)) {
        Authenticate::Dir(PathBuf::from(auth))
    } else if auth == "DYNAMIC" {
        Authenticate::Dynamic
    } else {
        let p = PathBuf::from(auth);
        must_exist("authenticate", &p)?;
        Authenticate::File(p)
    };
    let password_function = k.string("password-function");
    if let Some(f) = &password_function {
        let kv = k.raw("password-function");
        warnings.push(format!(
            "{}:{}: <ssl> password-function {f} names a Python function, which zeo serve \
             cannot call; the key file must not be encrypted",
            kv.map(|kv| kv.pos.file.display().to_string())
                .unwrap_or_default(),
            kv.map(|kv| kv.pos.line).unwrap_or(0)
        ));
    }
    Ok(SslConfig {
        certificate,
        key,
        password_function,
        authenticate,
    })
}

/// A storage section (`<filestorage>`, `<mappingstorage>`, `<blobstorage>`).
fn storage_kind(
    s: &Section,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<StorageKind, ConfigError> {
    match s.type_.as_str() {
        "filestorage" => {
            let k = Keys::new(
                s,
                &[
                    "path",
                    "blob-dir",
                    "create",
                    "read-only",
                    "quota",
                    "packer",
                    "pack-gc",
                    "pack-keep-old",
                ],
            )?;
            no_children(s)?;
            let quota = match k.get("quota", units::byte_size)? {
                Some(q) => {
                    Some(u64::try_from(q).map_err(|_| k.error("quota", "must not be negative"))?)
                }
                None => None,
            };
            let packer = k.string("packer");
            if let (Some(p), Some(kv)) = (&packer, k.raw("packer")) {
                warnings.push(format!(
                    "{}:{}: {} packer {p} is a Python packer; zeo serve packs with its own",
                    kv.pos.file.display(),
                    kv.pos.line,
                    s.label()
                ));
            }
            Ok(StorageKind::File(FileStorageConfig {
                path: k.required("path", |v| units::existing_dirpath(v, host))?,
                blob_dir: k
                    .get("blob-dir", |v| units::existing_dirpath(v, host))?
                    .filter(|p| !p.as_os_str().is_empty()),
                create: k.or("create", false, units::boolean)?,
                read_only: k.or("read-only", false, units::boolean)?,
                quota,
                packer,
                pack_gc: k.or("pack-gc", true, units::boolean)?,
                pack_keep_old: k.or("pack-keep-old", true, units::boolean)?,
            }))
        }
        "mappingstorage" => {
            let k = Keys::new(s, &["name"])?;
            no_children(s)?;
            Ok(StorageKind::Mapping {
                name: k
                    .string("name")
                    .unwrap_or_else(|| "Mapping Storage".to_string()),
            })
        }
        "blobstorage" => {
            let k = Keys::new(s, &["blob-dir"])?;
            let blob_dir = k.required("blob-dir", |v| Ok(PathBuf::from(v)))?;
            let mut base = None;
            for c in &s.sections {
                if UNSUPPORTED_STORAGES.contains(&c.type_.as_str()) {
                    return Err(c.pos.error(
                        None,
                        format!("storage type <{}> is not supported by zeo serve", c.type_),
                    ));
                }
                if !is_storage_type(&c.type_) {
                    return Err(misplaced(c, s));
                }
                if base.is_some() {
                    return Err(c.pos.error(
                        None,
                        format!("{} takes only one storage section", s.label()),
                    ));
                }
                base = Some(storage_kind(c, host, warnings)?);
            }
            let Some(base) = base else {
                return Err(s.pos.error(
                    None,
                    format!(
                        "{} needs a storage section inside it (e.g. <filestorage>)",
                        s.label()
                    ),
                ));
            };
            Ok(StorageKind::Blob {
                blob_dir,
                base: Box::new(base),
            })
        }
        _ => Err(misplaced(s, s)),
    }
}

fn zookeeper_section(s: &Section) -> Result<ZookeeperConfig, ConfigError> {
    let k = Keys::new(
        s,
        &["connection", "path", "session-timeout", "monitor-server"],
    )?;
    no_children(s)?;
    Ok(ZookeeperConfig {
        connection: k.required("connection", |v| Ok(v.to_string()))?,
        path: k.required("path", |v| Ok(v.to_string()))?,
        session_timeout: k.get("session-timeout", units::py_int)?,
        monitor_server: k.get("monitor-server", units::socket_binding_address)?,
    })
}

/// zdaemon's `<runner>`: checked like zdaemon's schema would, then ignored.
fn runner_section(s: &Section, host: &dyn Host) -> Result<(), ConfigError> {
    let k = Keys::new(
        s,
        &[
            "program",
            "python",
            "zdrun",
            "socket-name",
            "daemon",
            "directory",
            "backoff-limit",
            "forever",
            "exit-codes",
            "start-test-program",
            "start-timeout",
            "stop-timeout",
            "user",
            "umask",
            "hang-around",
            "default-to-interactive",
            "logfile",
            "transcript",
            "prompt",
        ],
    )?;
    check_unique_names(s)?;
    k.required("program", |v| Ok(v.to_string()))?;
    for b in ["daemon", "forever", "hang-around", "default-to-interactive"] {
        k.get(b, units::boolean)?;
    }
    for i in ["backoff-limit", "start-timeout", "stop-timeout"] {
        k.get(i, units::py_int)?;
    }
    k.get("exit-codes", |v| {
        if v.is_empty() {
            return Ok(());
        }
        v.split(',').try_for_each(|p| units::py_int(p).map(|_| ()))
    })?;
    k.get("umask", |v| {
        i64::from_str_radix(units::py_strip(v), 8)
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "invalid literal for int() with base 8: {}",
                    units::py_repr(v)
                )
            })
    })?;
    for p in ["python", "zdrun"] {
        k.get(p, |v| {
            let nv = units::expand_user(v, host);
            if host.exists(Path::new(&nv)) {
                Ok(())
            } else {
                Err(format!("{v} is not an existing path"))
            }
        })?;
    }
    for p in ["logfile", "transcript"] {
        k.get(p, |v| units::existing_dirpath(v, host).map(|_| ()))?;
    }
    let mut seen_log = false;
    for c in &s.sections {
        match c.type_.as_str() {
            "eventlog" | "logger" if !seen_log => {
                seen_log = true;
                let mut ignored = Vec::new();
                super::logging::logger_section(c, host, &mut ignored)?;
            }
            "environment" => {
                no_children(c)?;
            }
            _ => return Err(misplaced(c, s)),
        }
    }
    Ok(())
}
