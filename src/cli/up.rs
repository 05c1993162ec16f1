//! `zeo up` (also `zeoup` and `zeo-nagios` by argv[0]): clap arguments and wiring.
//!
//! Two modes. Plain `zeo up ADDRESS` is the zeoup-style check (`health`): exit 0 and a
//! one-line report when the server answers, exit 1 and a one-line reason otherwise;
//! zeoup's options `-p/-h/-U/-S/--nowrite/-1` are accepted. `zeo up --nagios ADDRESS`
//! (and the `zeo-nagios` name) is the Nagios plugin (`nagios`), with zeo-nagios'
//! options `-m/-s/-u` and its output and exit statuses.

pub mod health;
pub mod nagios;

use crate::client::ServerAddress;
use crate::Error;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `zeo up`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Check that a ZEO server is up (zeoup, zeo-nagios)",
    disable_help_flag = true,
    after_help = "ADDRESS is host:port[:storage], a bare port (localhost), a Unix socket \
                  path[:storage], or zookeeper://HOST:PORT[,HOST:PORT]/path for every server \
                  registered there. By default the check also takes the commit lock and votes \
                  an empty transaction, then aborts it (nothing is written; zeoup instead \
                  commits a counter in the root); --nowrite skips that.\n\nWith --nagios, \
                  ADDRESS is read as zeo-nagios reads it ([v6]:port, host:port or a socket \
                  path) and the output and exit status are zeo-nagios': 0 OK, 1 WARNING \
                  (empty storage), 2 CRITICAL (cannot connect)."
)]
pub struct Args {
    /// Server to check
    #[arg(value_name = "ADDRESS")]
    pub address: Option<String>,
    /// zeoup: port to connect to (host from -h, default this host's name)
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,
    /// zeoup: host to connect to (with -p)
    #[arg(short = 'h', value_name = "HOST")]
    pub host: Option<String>,
    /// zeoup: Unix-domain socket to connect to
    #[arg(short = 'U', value_name = "PATH")]
    pub unix: Option<String>,
    /// Storage name (default 1, or the one given in ADDRESS)
    #[arg(short = 'S', value_name = "NAME")]
    pub storage: Option<String>,
    /// Only read: skip the write check (commit lock, vote, abort)
    #[arg(long = "nowrite")]
    pub nowrite: bool,
    /// zeoup: "connect to a ZEO 1.0 server"; accepted and ignored, as zeoup does
    #[arg(short = '1', hide = true)]
    pub zeo1: bool,
    /// Keep trying to connect for this many seconds (default: one attempt)
    #[arg(long = "retry", value_name = "SECONDS", default_value_t = 0.0)]
    pub retry: f64,
    /// Give up on a read or write after this many seconds (with --nagios: also a connect)
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Behave as zeo-nagios (Nagios/Icinga plugin output and exit status)
    #[arg(long = "nagios")]
    pub nagios: bool,
    /// zeo-nagios: output performance metrics
    #[arg(short = 'm', long = "output-metrics")]
    pub output_metrics: bool,
    /// zeo-nagios: status file for rate metrics (shareable with zeo-nagios)
    #[arg(short = 's', long = "status-path", value_name = "STATUS_FILE")]
    pub status_path: Option<PathBuf>,
    /// zeo-nagios: time unit for rate metrics [default: minutes]
    #[arg(
        short = 'u',
        long = "time-units",
        value_name = "UNIT",
        value_parser = ["seconds", "minutes", "hours", "days"]
    )]
    pub time_units: Option<String>,
    /// Print help
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn seconds(v: f64, opt: &str) -> crate::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| usage(format!("{opt} must be a non-negative number of seconds")))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The server and storage of the zeoup-style check.
fn probe_target(args: &Args) -> crate::Result<(ServerAddress, String)> {
    let given = [
        args.address.is_some(),
        args.port.is_some(),
        args.unix.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(usage(
            "give one server: ADDRESS, -p PORT [-h HOST] or -U PATH",
        ));
    }
    let (address, storage) = if let Some(a) = &args.address {
        let t = super::pack::parse_server(a)?;
        (t.address, t.storage)
    } else if let Some(p) = args.port {
        let host = args.host.clone().unwrap_or_else(hostname);
        (ServerAddress::Tcp(format!("{host}:{p}")), "1".to_string())
    } else if let Some(u) = &args.unix {
        (ServerAddress::Unix(u.into()), "1".to_string())
    } else if args.host.is_some() {
        return Err(usage("-h HOST needs -p PORT"));
    } else {
        return Err(usage(
            "no server given: use ADDRESS, -p PORT [-h HOST] or -U PATH",
        ));
    };
    Ok((address, args.storage.clone().unwrap_or(storage)))
}

fn run_nagios(args: &Args) -> crate::Result<i32> {
    if args.port.is_some()
        || args.host.is_some()
        || args.unix.is_some()
        || args.storage.is_some()
        || args.nowrite
        || args.retry != 0.0
    {
        return Err(usage(
            "--nagios takes ADDRESS with -m, -s, -u and --timeout only",
        ));
    }
    let Some(address) = &args.address else {
        return Err(usage("--nagios needs an ADDRESS"));
    };
    let unit = args.time_units.as_deref().unwrap_or("minutes");
    let per =
        nagios::unit_seconds(unit).ok_or_else(|| usage(format!("invalid time unit {unit:?}")))?;
    let report = nagios::check(&nagios::Check {
        address,
        metrics: args.output_metrics,
        status_path: args.status_path.as_deref(),
        per,
        timeout: seconds(args.timeout, "--timeout")?,
    });
    println!("{}", report.text);
    Ok(report.status)
}

/// Run as `zeo up`; `tool` is the old tool name it was invoked under, if any
/// (`zeoup` prints zeoup's "Elapsed time" line, `zeo-nagios` implies --nagios).
pub fn run_with(args: Args, tool: Option<&str>) -> crate::Result<i32> {
    if args.nagios || tool == Some("zeo-nagios") {
        return run_nagios(&args);
    }
    if args.output_metrics || args.status_path.is_some() || args.time_units.is_some() {
        return Err(usage("-m, -s and -u belong to --nagios"));
    }
    let zeoup = tool == Some("zeoup");
    if let Some(url) = args
        .address
        .as_deref()
        .filter(|a| crate::zookeeper::RegistryUrl::is_url(a))
    {
        return run_registry(&args, url, zeoup);
    }
    let (address, storage) = probe_target(&args)?;
    let probe = health::Probe {
        address,
        storage,
        write: !args.nowrite,
        retry: seconds(args.retry, "--retry")?,
        timeout: seconds(args.timeout, "--timeout")?,
    };
    check_one(&probe, zeoup)
}

/// Check every server registered under a `zookeeper://HOST:PORT[,...]/path` URL
/// (docs/zookeeper.md); one line per server; exit 1 if any fails or none is registered.
fn run_registry(args: &Args, url: &str, zeoup: bool) -> crate::Result<i32> {
    if args.port.is_some() || args.host.is_some() || args.unix.is_some() {
        return Err(usage("give either a zookeeper:// URL or one server"));
    }
    let servers = crate::zookeeper::resolve(url)?;
    if servers.is_empty() {
        eprintln!("FAILED: no servers registered at {url}");
        return Ok(1);
    }
    let mut status = 0;
    for address in servers {
        let probe = health::Probe {
            address,
            storage: args.storage.clone().unwrap_or_else(|| "1".to_string()),
            write: !args.nowrite,
            retry: seconds(args.retry, "--retry")?,
            timeout: seconds(args.timeout, "--timeout")?,
        };
        status = status.max(check_one(&probe, zeoup)?);
    }
    Ok(status)
}

/// Run one zeoup-style check and print its line; returns the exit status.
fn check_one(probe: &health::Probe, zeoup: bool) -> crate::Result<i32> {
    match health::check(probe) {
        Ok(h) if zeoup => {
            println!("Elapsed time: {:.2}", h.total.as_secs_f64());
            Ok(0)
        }
        Ok(h) => {
            println!("{}", health::summary(probe, &h));
            Ok(0)
        }
        Err(f) => {
            let line = format!(
                "FAILED: storage {:?} at {}: {f}",
                probe.storage, probe.address
            );
            // zeoup reports failures on standard output; `zeo up` on standard error.
            if zeoup {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            Ok(1)
        }
    }
}

pub fn run(args: Args) -> crate::Result<i32> {
    run_with(args, None)
}
