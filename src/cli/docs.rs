//! Man pages and shell completions rendered from the clap definitions, so the checked-in
//! files under man/ and completions/ can never drift from the real options
//! (tests/generated_docs.rs fails when they are stale; `make generated` rewrites them).

use clap::CommandFactory;

/// `(file name, contents)` of every man page: `zeo.1` and `zeo-SUBCOMMAND.1`.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let cmd = super::Cli::command();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .expect("rendering a man page into memory");
    out.push(("zeo.1".to_string(), buf));
    for sub in cmd.get_subcommands() {
        let name = format!("zeo-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("zeo {}", sub.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub)
            .render(&mut buf)
            .expect("rendering a man page into memory");
        out.push((format!("{name}.1"), buf));
    }
    out
}

/// `(file name, contents)` of the bash, zsh and fish completion scripts.
pub fn completions() -> Vec<(String, Vec<u8>)> {
    use clap_complete::{generate, Shell};
    let mut out = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "zeo.bash"),
        (Shell::Zsh, "_zeo"),
        (Shell::Fish, "zeo.fish"),
    ] {
        let mut cmd = super::Cli::command();
        let mut buf = Vec::new();
        generate(shell, &mut cmd, "zeo", &mut buf);
        out.push((file.to_string(), buf));
    }
    out
}
