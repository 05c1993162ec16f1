//! `zeo cache-stats`: hands the raw arguments to `cache::stats`, which parses them the
//! way `cache_stats.py` does (argparse, `-h` = load histogram, `--help` exits 2).

use std::ffi::OsString;

/// Arguments of `zeo cache-stats`: taken raw, parsed like Python's argparse.
#[derive(clap::Args, Debug)]
#[command(
    about = "Summarize a cache trace (cache_stats.py)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Args {
    /// cache_stats.py arguments: [-v|-q] [-s] [-S] [-h] [-X] [-i MINUTES] TRACEFILE
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub rest: Vec<OsString>,
}

pub fn run(args: Args) -> crate::Result<i32> {
    crate::cache::run_with_stdio(|out, err| crate::cache::stats::main(&args.rest, out, err))
}
