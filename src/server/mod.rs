//! `zeo serve`: the mio event loop, connections, TLS, dispatch of protocol requests to
//! storages, the commit-lock queue and invalidation broadcast. Only this module
//! touches sockets.
//!
//! Layers: `connection` (bytes, buffers, TLS, backpressure) and `event_loop` (poll,
//! listeners, timers, signals, worker completions) know nothing of ZEO; they drive a
//! `Service`, which holds all protocol state on the loop thread.

pub mod commit;
pub mod connection;
pub mod event_loop;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod reads;
pub mod run;
pub mod served;
pub mod tls;
pub mod txn;
pub mod zeo;

pub use connection::{CloseReason, Limits};
pub use event_loop::{Action, ConnId, Endpoint, EventLoop, ListenAddress, Outbox, Service, Signal};
