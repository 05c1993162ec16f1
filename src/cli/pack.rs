//! `zeo pack` (and `zeopack` by argv[0]): pack storages on running ZEO servers, or
//! with `-f PATH` a stopped Data.fs in place (offline mode: the same bytes Python's
//! pack writes, `Data.fs.old` kept, `Data.fs.index` rewritten; refused while a server
//! holds `Data.fs.lock`).
//!
//! Options follow zeopack's: positional `host:port[:name]` servers (also a bare port,
//! or a Unix socket path), `-u path[:name]`, `-d DAYS`, `-t HH[:MM[:SS]]` (local time
//! of day, today), and the deprecated `-h HOST -p PORT -S NAME -U SOCKET` forms; plus
//! `--pack-time EPOCH_SECONDS`, and `zookeeper://HOST:PORT[,HOST:PORT]/path` for every
//! server registered there (storage 1; see docs/zookeeper.md). Each server is asked to
//! pack with `wait=True`, as zeopack does; the exit status is 1 when any server cannot be reached or a pack
//! fails (zeopack exits 1 only when no server at all could be reached).

use crate::client::{Client, Options, ServerAddress};
use crate::Error;
use std::time::{Duration, Instant};

/// Arguments of `zeo pack`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Pack storages on running ZEO servers (zeopack)",
    disable_help_flag = true,
    after_help = "Servers are host:port[:name], a bare port (localhost), or a Unix socket path[:name]; the storage name defaults to 1."
)]
pub struct Args {
    /// Servers to pack: host:port[:name], port, /path/to/socket[:name], or zookeeper://HOST:PORT[,HOST:PORT]/path
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
    /// Pack a stopped Data.fs in place instead of asking servers
    #[arg(short = 'f', long = "file", value_name = "PATH", conflicts_with_all = ["servers", "unix", "host", "port", "unix_deprecated"])]
    pub file: Option<std::path::PathBuf>,
    /// With -f: pack without garbage collection (drop only old revisions)
    #[arg(long = "no-gc", requires = "file")]
    pub no_gc: bool,
    /// Pack objects that are older than this number of days
    #[arg(short = 'd', long = "days", value_name = "DAYS")]
    pub days: Option<f64>,
    /// Time to pack to, local time: 'YYYY-MM-DD HH:MM:SS[.frac]' or a time of day today HH[:MM[:SS]]
    #[arg(short = 't', long = "time", value_name = "TIME")]
    pub time: Option<String>,
    /// Pack time as seconds since the epoch (fractions allowed); overrides -t
    #[arg(
        long = "pack-time",
        value_name = "EPOCH_SECONDS",
        conflicts_with = "time"
    )]
    pub pack_time: Option<f64>,
    /// A Unix-domain-socket server, path[:name] (repeatable)
    #[arg(short = 'u', long = "unix", value_name = "PATH[:NAME]")]
    pub unix: Vec<String>,
    /// Deprecated: host to connect to (with -p)
    #[arg(short = 'h', value_name = "HOST")]
    pub host: Option<String>,
    /// Deprecated: port to connect to (with -h)
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,
    /// Deprecated: storage name for -h/-p or -U (default 1)
    #[arg(short = 'S', value_name = "NAME", default_value = "1")]
    pub name: String,
    /// Deprecated: Unix-domain socket to connect to (with -S)
    #[arg(short = 'U', value_name = "PATH")]
    pub unix_deprecated: Option<String>,
    /// Seconds to keep trying to connect to each server
    #[arg(
        long = "connect-timeout",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub connect_timeout: f64,
    /// Print nothing on success (the default when run as zeopack)
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print help
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// One server to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: ServerAddress,
    pub storage: String,
}

/// Parse a positional server: `host:port[:name]`, `port`, or `path[:name]`.
pub fn parse_server(spec: &str) -> Result<Target, Error> {
    let bad = || Error::Usage(format!("Invalid server specification: {spec:?}"));
    if spec.contains('/') {
        return Ok(parse_unix(spec));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (addr, storage) = match parts.as_slice() {
        [port] => (*port, "1"),
        [host, port] => return target_tcp(host, port, "1").ok_or_else(bad),
        [host, port, name] => return target_tcp(host, port, name).ok_or_else(bad),
        _ => return Err(bad()),
    };
    let address = ServerAddress::parse(addr).map_err(|_| bad())?;
    Ok(Target {
        address,
        storage: storage.to_string(),
    })
}

fn target_tcp(host: &str, port: &str, name: &str) -> Option<Target> {
    let port: u16 = port.parse().ok()?;
    Some(Target {
        address: ServerAddress::Tcp(format!("{host}:{port}")),
        storage: name.to_string(),
    })
}

/// `path[:name]` for Unix sockets (the name is the part after the last `:` when it
/// holds no `/`).
fn parse_unix(spec: &str) -> Target {
    match spec.rsplit_once(':') {
        Some((path, name)) if !name.contains('/') && !path.is_empty() => Target {
            address: ServerAddress::Unix(path.into()),
            storage: name.to_string(),
        },
        _ => Target {
            address: ServerAddress::Unix(spec.into()),
            storage: "1".to_string(),
        },
    }
}

/// Local `YYYY-MM-DD HH:MM:SS[.frac]` (seconds and minutes optional) as epoch seconds.
pub fn parse_local_datetime(spec: &str) -> Result<f64, Error> {
    let bad = || {
        Error::Usage(format!(
            "Invalid time value: {spec:?} (expected 'YYYY-MM-DD HH:MM:SS' or HH[:MM[:SS]])"
        ))
    };
    let spec_t = spec.trim();
    let (date, time) = match spec_t.split_once([' ', 'T']) {
        Some((d, t)) => (d, t.trim()),
        None => (spec_t, "0"),
    };
    let d: Vec<i64> = date
        .split('-')
        .map(|f| f.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let tf: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || tf.is_empty() || tf.len() > 3 {
        return Err(bad());
    }
    let hour: i64 = tf[0].parse().map_err(|_| bad())?;
    let min: i64 = tf.get(1).map_or(Ok(0), |x| x.parse()).map_err(|_| bad())?;
    let sec: f64 = tf
        .get(2)
        .map_or(Ok(0.0), |x| x.parse())
        .map_err(|_| bad())?;
    if !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || !(0..24).contains(&hour)
        || !(0..60).contains(&min)
        || !(0.0..61.0).contains(&sec)
    {
        return Err(bad());
    }
    let whole = sec.floor();
    // SAFETY: mktime only reads and writes the `tm` we own.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = (d[0] - 1900) as libc::c_int;
        tm.tm_mon = (d[1] - 1) as libc::c_int;
        tm.tm_mday = d[2] as libc::c_int;
        tm.tm_hour = hour as libc::c_int;
        tm.tm_min = min as libc::c_int;
        tm.tm_sec = whole as libc::c_int;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm) as f64
    };
    Ok(t + (sec - whole))
}

/// The pack time zeopack computes: now, or today's local `HH[:MM[:SS]]` (or a full
/// local `YYYY-MM-DD HH:MM:SS`), minus days.
pub fn pack_time(now: f64, time: Option<&str>, days: f64) -> Result<f64, Error> {
    let mut t = now;
    if let Some(spec) = time.filter(|s| s.contains('-')) {
        return Ok(parse_local_datetime(spec)? - days * 86400.0);
    }
    if let Some(spec) = time {
        let fields: Vec<i64> = spec
            .split(':')
            .map(|f| f.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| Error::Usage(format!("Invalid time value: {spec:?}")))?;
        if fields.is_empty() || fields.len() > 3 {
            return Err(Error::Usage(format!("Invalid time value: {spec:?}")));
        }
        let get = |i: usize| fields.get(i).copied().unwrap_or(0) as libc::c_int;
        // SAFETY: localtime_r/mktime only read and write the `tm` we own.
        t = unsafe {
            let secs = now as libc::time_t;
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&secs, &mut tm).is_null() {
                return Err(Error::Other("cannot compute local time".into()));
            }
            tm.tm_hour = get(0);
            tm.tm_min = get(1);
            tm.tm_sec = get(2);
            tm.tm_isdst = -1;
            libc::mktime(&mut tm) as f64
        };
    }
    Ok(t - days * 86400.0)
}

fn targets(args: &Args) -> Result<Vec<Target>, Error> {
    let mut out = Vec::new();
    match (&args.host, args.port) {
        (Some(_), None) => {
            return Err(Error::Usage(
                "If host (-h) is specified then a port (-p) must be specified as well.".into(),
            ))
        }
        (Some(h), Some(p)) => out.push(Target {
            address: ServerAddress::Tcp(format!("{h}:{p}")),
            storage: args.name.clone(),
        }),
        (None, Some(p)) => out.push(Target {
            address: ServerAddress::Tcp(format!("{}:{p}", hostname())),
            storage: args.name.clone(),
        }),
        (None, None) => {}
    }
    if let Some(u) = &args.unix_deprecated {
        out.push(Target {
            address: ServerAddress::Unix(u.into()),
            storage: args.name.clone(),
        });
    }
    for s in &args.servers {
        if crate::zookeeper::RegistryUrl::is_url(s) {
            out.extend(registered(s)?);
            continue;
        }
        out.push(parse_server(s)?);
    }
    for u in &args.unix {
        out.push(parse_unix(u));
    }
    Ok(out)
}

/// Every server registered under a `zookeeper://HOST:PORT[,HOST:PORT]/path` URL
/// (storage 1); none registered is an error.
fn registered(url: &str) -> Result<Vec<Target>, Error> {
    let found = crate::zookeeper::resolve(url)?;
    if found.is_empty() {
        return Err(Error::Other(format!("No servers registered at {url}")));
    }
    Ok(found
        .into_iter()
        .map(|address| Target {
            address,
            storage: "1".to_string(),
        })
        .collect())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Connect, retrying until `timeout` has passed.
fn connect(target: &Target, timeout: Duration) -> Result<Client, crate::client::ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        match Client::connect(&target.address, &Options::default()) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Run as `zeo pack`; `quiet_default` is true when invoked as `zeopack`.
pub fn run_with(args: Args, quiet_default: bool) -> crate::Result<i32> {
    if let Some(path) = &args.file {
        return run_offline(&args, path, args.quiet || quiet_default);
    }
    let targets = targets(&args)?;
    if targets.is_empty() {
        eprintln!("Error:\nNo servers specified.");
        return Ok(1);
    }
    let t = resolve_time(&args, now())?;
    let quiet = args.quiet || quiet_default;
    let timeout = Duration::from_secs_f64(args.connect_timeout.max(0.0));
    let mut failed = false;
    for target in &targets {
        let label = format!("storage {} at {}", target.storage, target.address);
        let mut client = match connect(target, timeout) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Couldn't connect to {label}: {e}");
                failed = true;
                continue;
            }
        };
        let started = Instant::now();
        let result = client
            .register(&target.storage, true)
            .and_then(|_| client.pack(t));
        match result {
            Ok(()) => {
                if !quiet {
                    println!("packed {label} in {:.2} s", started.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                eprintln!("Error:\nError packing {label}: {e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn resolve_time(args: &Args, now: f64) -> Result<f64, Error> {
    let days = args.days.unwrap_or(0.0);
    if !days.is_finite() {
        return Err(Error::Usage(format!("Invalid number of days: {days}")));
    }
    match args.pack_time {
        Some(t) if t.is_finite() => Ok(t - days * 86400.0),
        Some(t) => Err(Error::Usage(format!("Invalid pack time: {t}"))),
        None => pack_time(now, args.time.as_deref(), days),
    }
}

/// `zeo pack -f PATH`: pack a stopped Data.fs in place.
fn run_offline(args: &Args, path: &std::path::Path, quiet: bool) -> crate::Result<i32> {
    use crate::storage::filestorage::{FileStorage, Options as FsOptions};
    use crate::storage::{PackOutcome, Storage, StorageError};
    if args.time.is_none() && args.days.is_none() && args.pack_time.is_none() {
        return Err(Error::Usage(
            "zeo pack -f needs the pack time: -t 'YYYY-MM-DD HH:MM:SS', -d DAYS or --pack-time EPOCH_SECONDS".into(),
        ));
    }
    let t = resolve_time(args, now())?;
    if !path.is_file() {
        eprintln!("Error: {} is not a file", path.display());
        return Ok(1);
    }
    let fs = match FileStorage::open(path, FsOptions::default()) {
        Ok(fs) => fs,
        Err(StorageError::Locked { .. }) => {
            eprintln!(
                "Error: {} is in use: a running server holds {}.lock. Stop it first, or pack \
                 through the server with `zeo pack HOST:PORT`.",
                path.display(),
                path.display()
            );
            return Ok(1);
        }
        Err(e) => {
            eprintln!("Error: cannot open {}: {e}", path.display());
            return Ok(1);
        }
    };
    let started = Instant::now();
    let res = fs.pack(t, !args.no_gc);
    let closed = fs.close();
    match res {
        Ok(PackOutcome::Packed { old_size, new_size }) => {
            if !quiet {
                println!(
                    "packed {} in {:.2} s: {old_size} -> {new_size} bytes (previous file kept as {}.old)",
                    path.display(),
                    started.elapsed().as_secs_f64(),
                    path.display()
                );
            }
        }
        Ok(PackOutcome::Unchanged) => {
            if !quiet {
                println!("{}: nothing to pack", path.display());
            }
        }
        Err(e) => {
            eprintln!("Error: packing {}: {e}", path.display());
            return Ok(1);
        }
    }
    if let Err(e) = closed {
        eprintln!("Error: closing {}: {e}", path.display());
        return Ok(1);
    }
    Ok(0)
}

pub fn run(args: Args) -> crate::Result<i32> {
    run_with(args, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_specs() {
        assert_eq!(
            parse_server("zeo1:8100").unwrap(),
            Target {
                address: ServerAddress::Tcp("zeo1:8100".into()),
                storage: "1".into()
            }
        );
        assert_eq!(parse_server("zeo1:8100:main").unwrap().storage, "main");
        assert_eq!(
            parse_server("8100").unwrap().address,
            ServerAddress::Tcp("localhost:8100".into())
        );
        assert_eq!(
            parse_server("/run/zeo.sock:2").unwrap(),
            Target {
                address: ServerAddress::Unix("/run/zeo.sock".into()),
                storage: "2".into()
            }
        );
        assert!(parse_server("a:b:c:d").is_err());
        assert!(parse_server("host:port").is_err());
    }

    #[test]
    fn pack_times() {
        assert_eq!(
            pack_time(1000.0 * 86400.0, None, 2.0).unwrap(),
            998.0 * 86400.0
        );
        // Time of day: the result is on the same local day, at that time.
        let now = 1_700_000_000.0;
        let t = pack_time(now, Some("3"), 0.0).unwrap();
        let t2 = pack_time(now, Some("3:00:00"), 0.0).unwrap();
        assert_eq!(t, t2);
        assert!((now - t).abs() < 86400.0 + 3600.0);
        assert!(pack_time(now, Some("1:2:3:4"), 0.0).is_err());
        assert!(pack_time(now, Some("noon"), 0.0).is_err());
        // A full local date-time, fractional seconds allowed.
        let a = pack_time(now, Some("2024-06-01 12:01:14.75"), 0.0).unwrap();
        let b = pack_time(now, Some("2024-06-01 12:01:14"), 1.0).unwrap();
        assert!((a - b - 86400.75).abs() < 1e-6);
        assert!(pack_time(now, Some("2024-13-01 00:00:00"), 0.0).is_err());
        assert!(pack_time(now, Some("2024-06-01 xx"), 0.0).is_err());
    }
}
