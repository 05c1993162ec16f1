//! `zeo pack` (and `zeopack` by argv[0]): pack storages on running ZEO servers.
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
    /// Pack objects that are older than this number of days
    #[arg(short = 'd', long = "days", default_value_t = 0.0, value_name = "DAYS")]
    pub days: f64,
    /// Time of day to pack to, HH[:MM[:SS]] (local time); default now
    #[arg(short = 't', long = "time", value_name = "HH[:MM[:SS]]")]
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

/// The pack time zeopack computes: now, or today's local `HH[:MM[:SS]]`, minus days.
pub fn pack_time(now: f64, time: Option<&str>, days: f64) -> Result<f64, Error> {
    let mut t = now;
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
    let targets = targets(&args)?;
    if targets.is_empty() {
        eprintln!("Error:\nNo servers specified.");
        return Ok(1);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let t = match args.pack_time {
        Some(t) => t - args.days * 86400.0,
        None => pack_time(now, args.time.as_deref(), args.days)?,
    };
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
    }
}
