//! `zeo cache-simul`: clap arguments and wiring only.

use std::ffi::OsString;

/// Arguments of `zeo cache-simul`.
#[derive(clap::Args, Debug)]
#[command(about = "Simulate a client cache")]
pub struct Args {
    /// Arguments (this subcommand is still being built)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<OsString>,
}

pub fn run(_args: Args) -> crate::Result<i32> {
    super::under_construction("zeo cache-simul", 4)
}
