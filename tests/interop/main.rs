//! Interop tests: our binary and engines against real Python ZODB/ZEO from the pinned
//! virtualenv that `make test` creates (scripts/setup-venv.sh). One module per area.
//!
//! These tests fail (they do not skip) when the virtualenv is missing: run them through
//! `make test`, or set ZEO_TEST_VENV to an existing virtualenv.

mod cache_tools;
mod client;
mod common;
mod config;
mod conformance;
mod filestorage;
mod monitor;
mod pack;
mod protocol;
mod server;
#[path = "../server_support/mod.rs"]
mod server_support;
mod tls;
mod up;
mod zeo5;
mod zookeeper;
