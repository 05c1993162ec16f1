//! `zeo pack`: clap arguments and wiring only.

use std::ffi::OsString;

/// Arguments of `zeo pack`.
#[derive(clap::Args, Debug)]
#[command(about = "Pack a storage")]
pub struct Args {
    /// Arguments (this subcommand is still being built)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<OsString>,
}

pub fn run(_args: Args) -> crate::Result<i32> {
    super::under_construction("zeo pack", 5)
}
