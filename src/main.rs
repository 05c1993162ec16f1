//! The `zeo` executable: hands argv to the multicall dispatcher in `cli`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(zeo::cli::run(args));
}
