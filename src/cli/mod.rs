//! Command-line entry: multicall dispatch and the clap definitions of every subcommand.
//!
//! Invoked as `zeo SUBCOMMAND ...`, or busybox-style under an old tool name:
//! `runzeo` = `zeo serve`, `zeopack` = `zeo pack`, `zeoup` = `zeo up`,
//! `zeo-nagios` = `zeo up --nagios`. Each subcommand
//! lives in its own file with an `Args` struct and a `run(Args) -> Result<i32>` that only
//! wires arguments to the library; no logic beyond that lives here.

pub mod cache_simul;
pub mod cache_stats;
pub mod docs;
pub mod pack;
pub mod serve;
pub mod trace;
pub mod up;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::Path;

/// The top-level `zeo` command.
#[derive(Parser, Debug)]
#[command(
    name = "zeo",
    version,
    about = "ZEO server and tools in one binary",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a ZEO storage server (runzeo)
    Serve(serve::Args),
    /// Pack a storage on a running server, or a stopped Data.fs with -f (zeopack)
    Pack(pack::Args),
    /// Check that a ZEO server is up (zeoup, zeo-nagios)
    Up(up::Args),
    /// Summarize a ZEO client cache trace (cache_stats.py)
    CacheStats(cache_stats::Args),
    /// Simulate a ZEO client cache on a trace (cache_simul.py)
    CacheSimul(cache_simul::Args),
    /// Print, filter, follow or generate ZEO cache traces
    Trace(trace::Args),
}

/// The old tool names and the subcommand each stands for.
const APPLETS: &[(&str, &str)] = &[
    ("runzeo", "serve"),
    ("zeopack", "pack"),
    ("zeoup", "up"),
    ("zeo-nagios", "up"),
];

/// `(tool name, subcommand)` if argv[0] is one of the old tool names.
fn applet_for(argv0: &OsString) -> Option<(&'static str, &'static str)> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    APPLETS.iter().find(|(tool, _)| *tool == name).copied()
}

/// Parse `args` (argv including argv[0]) and run; returns the process exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let argv0 = args
        .first()
        .cloned()
        .unwrap_or_else(|| OsString::from("zeo"));
    let applet = applet_for(&argv0);
    let parsed = match applet {
        Some((tool, sub)) => {
            // Old tool name: the whole argv belongs to that subcommand.
            let cmd = Cli::command();
            let Some(subcmd) = cmd.find_subcommand(sub).cloned() else {
                unreachable!("APPLETS names a subcommand that Cli does not define");
            };
            subcmd
                .name(tool)
                .try_get_matches_from(args)
                .and_then(|m| match sub {
                    "serve" => serve::Args::from_arg_matches(&m).map(Command::Serve),
                    "pack" => pack::Args::from_arg_matches(&m).map(Command::Pack),
                    _ => up::Args::from_arg_matches(&m).map(Command::Up),
                })
        }
        None => Cli::try_parse_from(args).map(|c| c.command),
    };
    let command = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match command {
        Command::Serve(a) => serve::run(a),
        // Under its old name zeopack stays quiet on success, as cron expects.
        Command::Pack(a) => pack::run_with(a, applet.is_some()),
        Command::Up(a) => up::run_with(a, applet.map(|(tool, _)| tool)),
        Command::CacheStats(a) => cache_stats::run(a),
        Command::CacheSimul(a) => cache_simul::run(a),
        Command::Trace(a) => trace::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "{}: {e}",
                Path::new(&argv0)
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            e.exit_code()
        }
    }
}
