//! zeo: a wire-compatible replacement for the ZEO server (`runzeo`) and its tools.
//!
//! Module map (see docs/architecture.md): bytes enter at the edges and become typed
//! values as early as possible. Only `storage` touches Data.fs; only `server` touches
//! sockets; `protocol`, `config` and the trace reader in `cache` are pure parsers over
//! buffers so they can be fuzzed.

pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod logging;
pub mod protocol;
pub mod pyjson;
pub mod server;
pub mod storage;
pub mod zookeeper;

pub use error::{Error, Result};
