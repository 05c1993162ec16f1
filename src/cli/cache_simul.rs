//! `zeo cache-simul`: hands the raw arguments to `cache::simul`, which parses them the
//! way `cache_simul.py` does (argparse, byte-identical help and usage errors).

use std::ffi::OsString;

/// Arguments of `zeo cache-simul`: taken raw, parsed like Python's argparse.
#[derive(clap::Args, Debug)]
#[command(
    about = "Simulate a client cache on a trace (cache_simul.py)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Args {
    /// cache_simul.py arguments: [-s MB] [-i MINUTES] [-r FRACTION] TRACEFILE
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub rest: Vec<OsString>,
}

pub fn run(args: Args) -> crate::Result<i32> {
    crate::cache::run_with_stdio(|out, err| crate::cache::simul::main(&args.rest, out, err))
}
