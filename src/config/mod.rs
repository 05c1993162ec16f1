//! Server configuration: the ZConfig-syntax reader (sections, keys, `%define`,
//! `$substitution`, `%include`, `%import`, size and duration units) and the typed
//! configuration runzeo's options and `<zeo>`/storage/`<eventlog>` sections build.
//!
//! Layers: [`parser`] (text to a tree, schema-free) -> [`typed`]/[`logging`] (runzeo's
//! schema applied; datatypes in [`units`]) -> [`ServerConfig`] ([`schema`]). The
//! command-line merge lives in `cli::serve`. Invariant: no input makes any layer panic;
//! every error is a [`ConfigError`] naming file, line and key where they exist.

pub mod json;
pub mod keys;
pub mod logging;
pub mod overrides;
pub mod parser;
pub mod schema;
pub mod typed;
pub mod units;

pub use schema::*;
pub use units::{Host, ListenAddress, RealHost};

use std::fmt;
use std::path::{Path, PathBuf};

/// Read and type the configuration file `path` (runzeo's `-C`).
pub fn load_file(path: &Path) -> Result<ServerConfig, ConfigError> {
    load_file_with(path, &[], &RealHost)
}

/// [`load_file`] with `-X path/key=value` overrides and an explicit [`Host`]
/// (filesystem and environment).
pub fn load_file_with(
    path: &Path,
    overrides: &[String],
    host: &dyn Host,
) -> Result<ServerConfig, ConfigError> {
    let text = host.read_file(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        message: format!("cannot read configuration file: {e}"),
    })?;
    let mut root = parser::parse(&text, path, host)?;
    overrides::apply(&mut root, overrides)?;
    typed::build(&root, host)
}

/// Parse and type configuration `text` that was read from `file`.
pub fn parse_str(text: &str, file: &Path, host: &dyn Host) -> Result<ServerConfig, ConfigError> {
    let root = parser::parse(text, file, host)?;
    typed::build(&root, host)
}

/// A configuration problem, naming file, line and key where they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
