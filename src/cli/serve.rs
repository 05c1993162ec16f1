//! `zeo serve` (runzeo): clap arguments and their merge with the configuration file.
//!
//! runzeo's options and how they combine with `-C`, as zdaemon's option handling does:
//! the file is read and checked first (with its `-X` overrides); then `-a` replaces
//! the file's address, `-f` (repeatable) replaces all of its storages (named "1", "2",
//! ...), `-t` its transaction-timeout and `--pid-file` its pid-filename. Without `-C`,
//! `-a` defaults to 127.0.0.1:8100 and `-f` to ./var/Data.fs (runzeo requires both).
//! `-r` (server read-only) is our addition. Config errors exit with status 2.

use crate::config::{
    self, units, FileStorageConfig, ListenAddress, ServerConfig, StorageConfig, StorageKind,
    ZeoConfig,
};
use std::path::PathBuf;

/// Address served when neither `-a` nor `-C` gives one.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8100";
/// Storage served when neither `-f` nor `-C` gives one.
pub const DEFAULT_FILENAME: &str = "./var/Data.fs";

/// Arguments of `zeo serve`.
#[derive(clap::Args, Debug, Default)]
#[command(
    about = "Run a ZEO storage server (runzeo)",
    long_about = "Run a ZEO storage server (runzeo).\n\nWith no arguments, serves \
                  ./var/Data.fs on 127.0.0.1:8100. Command-line options override the \
                  configuration file given with -C.",
    infer_long_args = true
)]
pub struct Args {
    /// Configuration file (ZConfig syntax, as runzeo reads it)
    #[arg(short = 'C', long = "configure", value_name = "FILE")]
    pub configure: Vec<PathBuf>,
    /// Address to listen on: PORT, HOST:PORT, [IPV6]:PORT, or a Unix socket PATH (with a /)
    #[arg(short = 'a', long = "address", value_name = "ADDRESS")]
    pub address: Vec<String>,
    /// FileStorage to serve (repeat for several: named 1, 2, ...); replaces the file's storages
    #[arg(short = 'f', long = "filename", value_name = "FILENAME")]
    pub filename: Vec<PathBuf>,
    /// Transaction timeout in seconds (default: none)
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Vec<String>,
    /// File to write the server's process id to
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Vec<PathBuf>,
    /// Serve read-only (not a runzeo option; same as `read-only true` in <zeo>)
    #[arg(short = 'r', long = "read-only")]
    pub read_only: bool,
    /// Override a configuration setting: -X section/key=value (needs -C)
    #[arg(short = 'X', value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Set everything up, then exit (runzeo's --test)
    #[arg(long = "test")]
    pub test: bool,
    /// Print the effective configuration as JSON and exit
    #[arg(long = "print-config", hide = true)]
    pub print_config: bool,
}

fn usage(msg: impl Into<String>) -> crate::Error {
    crate::Error::Usage(msg.into())
}

/// The single value of a repeatable option; repeating it with a different value is
/// runzeo's "conflicting command line option" error.
fn single<'a, T: PartialEq>(values: &'a [T], opt: &str) -> crate::Result<Option<&'a T>> {
    match values.split_first() {
        None => Ok(None),
        Some((first, rest)) => {
            if rest.iter().any(|v| v != first) {
                return Err(usage(format!("conflicting command line option '{opt}'")));
            }
            Ok(Some(first))
        }
    }
}

fn default_zeo(address: ListenAddress) -> ZeoConfig {
    ZeoConfig {
        address,
        read_only: false,
        invalidation_queue_size: 100,
        invalidation_age: None,
        transaction_timeout: None,
        client_conflict_resolution: false,
        msgpack: None,
        pid_filename: None,
        ssl: None,
        monitor_address: None,
        metrics_address: None,
        max_message_size: None,
        max_output_buffer: None,
    }
}

/// The effective configuration: the `-C` file (if any) with the options applied.
pub fn build_config(args: &Args) -> crate::Result<ServerConfig> {
    let address = match args.address.last() {
        Some(a) => Some(
            units::socket_binding_address(a)
                .map_err(|m| usage(format!("invalid value for -a '{a}': {m}")))?,
        ),
        None => None,
    };
    let timeout = match args.timeout.as_slice() {
        [] => None,
        list => {
            let parsed = list
                .iter()
                .map(|t| {
                    units::py_float(t)
                        .and_then(|v| {
                            if v.is_finite() && v >= 0.0 {
                                Ok(v)
                            } else {
                                Err("must be a number of seconds, 0 or more".into())
                            }
                        })
                        .map_err(|m| usage(format!("invalid value for -t '{t}': {m}")))
                })
                .collect::<crate::Result<Vec<f64>>>()?;
            single(&parsed, "-t")?.copied()
        }
    };
    let pid_file = single(&args.pid_file, "--pid-file")?.cloned();
    let configure = single(&args.configure, "-C")?;

    let mut cfg = match configure {
        Some(path) => config::load_file_with(path, &args.overrides, &config::RealHost)?,
        None => {
            if !args.overrides.is_empty() {
                return Err(usage(
                    "configuration overrides (-X) cannot be used without a configuration file",
                ));
            }
            let default = units::socket_binding_address(DEFAULT_ADDRESS)
                .map_err(|m| usage(format!("built-in default address: {m}")))?;
            let filenames = if args.filename.is_empty() {
                vec![PathBuf::from(DEFAULT_FILENAME)]
            } else {
                Vec::new()
            };
            ServerConfig {
                zeo: default_zeo(default),
                storages: filenames
                    .into_iter()
                    .map(|p| StorageConfig {
                        name: "1".into(),
                        kind: StorageKind::File(FileStorageConfig::at(p)),
                    })
                    .collect(),
                eventlog: None,
                zookeeper: None,
                warnings: Vec::new(),
            }
        }
    };
    if let Some(a) = address {
        cfg.zeo.address = a;
    }
    if !args.filename.is_empty() {
        cfg.storages = args
            .filename
            .iter()
            .enumerate()
            .map(|(i, p)| StorageConfig {
                name: (i + 1).to_string(),
                kind: StorageKind::File(FileStorageConfig::at(p.clone())),
            })
            .collect();
    }
    if let Some(t) = timeout {
        cfg.zeo.transaction_timeout = Some(t);
    }
    if let Some(p) = pid_file {
        cfg.zeo.pid_filename = (!p.as_os_str().is_empty()).then_some(p);
    }
    if args.read_only {
        cfg.zeo.read_only = true;
    }
    Ok(cfg)
}

pub fn run(args: Args) -> crate::Result<i32> {
    let cfg = build_config(&args)?;
    for w in &cfg.warnings {
        eprintln!("zeo serve: warning: {w}");
    }
    if args.print_config {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed pipe (e.g. `| head`) is not an error worth a panic.
        let _ = writeln!(out, "{}", cfg.to_json().pretty()).and_then(|_| out.flush());
        return Ok(0);
    }
    let tls = crate::server::tls::listener_tls(&cfg.zeo)
        .map_err(|e| crate::Error::Other(format!("cannot set up TLS from <ssl>: {e}")))?;
    if args.test {
        // runzeo --test: set everything up, then exit.
        let started =
            crate::server::run::start(&cfg, tls).map_err(|e| crate::Error::Other(e.to_string()))?;
        for s in started.service.storages() {
            let _ = s.storage.close();
        }
        return Ok(0);
    }
    crate::server::run::run(&cfg, tls)
}
