//! Endpoint connections of the event loop (monitor, metrics): accepted on endpoint
//! listeners, answered by the loop itself with the text the service renders, then
//! half-closed and kept until the peer's EOF (so unread request bytes do not make
//! the kernel reset the answer away) or the endpoint deadline.
//!
//! Invariants: the service never hears of these connections (no `on_connect`,
//! `on_close`); at most [`MAX_ENDPOINT_CONNS`] are open; each holds at most
//! [`http::MAX_REQUEST`] bytes of input and is closed at its deadline whatever its
//! state.

use super::{EventLoop, Outbox, Service};
use crate::server::connection::{CloseReason, Connection, Socket};
use crate::server::http;
use mio::Token;
use std::time::{Duration, Instant};

/// Most endpoint connections open at once; more are closed as soon as accepted.
pub const MAX_ENDPOINT_CONNS: usize = 64;
/// Default lifetime of an endpoint connection (request, answer and its sending).
pub const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Input kept of a monitor connection (its requests are read and ignored).
const MONITOR_INPUT: usize = 1024;

/// What an endpoint listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The plain-text monitor report, sent on connect without reading a request.
    Monitor,
    /// Prometheus text exposition over HTTP (`GET /metrics`).
    Metrics,
}

/// An endpoint connection's state.
pub(super) struct RawState {
    pub(super) endpoint: Endpoint,
    /// The answer is queued; the connection closes once it is sent.
    pub(super) answered: bool,
    /// The answer is sent and our side shut down; waiting for the peer's EOF.
    pub(super) lingering: bool,
    /// Input length at the last parse: a request is parsed again only when a new
    /// line ended or the buffer filled (a byte-at-a-time sender costs linear time).
    pub(super) parsed: usize,
}

impl EventLoop {
    /// Set up an endpoint connection; a monitor connection is answered at once.
    pub(super) fn accept_endpoint<S: Service>(
        &mut self,
        token: Token,
        endpoint: Endpoint,
        socket: Socket,
        peer: String,
        service: &mut S,
    ) {
        if self.raw.len() >= MAX_ENDPOINT_CONNS {
            log::debug!("too many {endpoint:?} connections; closing the one from {peer}");
            return;
        }
        let limit = match endpoint {
            Endpoint::Monitor => MONITOR_INPUT,
            Endpoint::Metrics => http::MAX_REQUEST,
        };
        let mut conn = Connection::new_raw(token, peer.clone(), socket, self.limits, limit);
        if endpoint == Endpoint::Monitor {
            conn.send_raw(service.report(Endpoint::Monitor).as_bytes());
            conn.close_after_flush = true;
        }
        if let Err(e) = conn.register(self.poll.registry()) {
            log::error!("cannot register connection from {peer}: {e}");
            return;
        }
        self.conns.insert(token.0, conn);
        self.raw.insert(
            token.0,
            RawState {
                endpoint,
                answered: endpoint == Endpoint::Monitor,
                lingering: false,
                parsed: 0,
            },
        );
        self.raw_deadlines
            .insert((Instant::now() + self.endpoint_timeout, token.0));
        self.dirty.insert(token.0);
    }

    /// Read an endpoint connection's request and queue its answer once complete.
    pub(super) fn pump_raw<S: Service>(
        &mut self,
        id: usize,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) {
        let (Some(conn), Some(state)) = (self.conns.get_mut(&id), self.raw.get_mut(&id)) else {
            return;
        };
        if state.lingering {
            if let Err(why) = conn.discard_input() {
                self.close(id, why, service, out);
            }
            return;
        }
        let read = conn.read_ready(true);
        let input = conn.raw_input();
        let fresh = &input[state.parsed.min(input.len())..];
        let worth_parsing = fresh.contains(&b'\n') || input.len() >= http::MAX_REQUEST;
        state.parsed = input.len();
        if !state.answered && state.endpoint == Endpoint::Metrics && worth_parsing {
            let mut render = || service.report(Endpoint::Metrics);
            if let Some(answer) = http::respond(conn.raw_input(), &mut render) {
                conn.send_raw(&answer);
                conn.close_after_flush = true;
                state.answered = true;
                self.dirty.insert(id);
            }
        }
        match read {
            // A peer that half-closed after its request still gets the answer.
            Err(CloseReason::PeerClosed) if state.answered => {}
            Err(why) => self.close(id, why, service, out),
            Ok(()) => {}
        }
    }

    /// Flush an answered endpoint connection: once the answer is out, shut our side
    /// down and linger until the peer closes (or the deadline). Returns whether `id`
    /// was such a connection (and so is handled).
    pub(super) fn flush_raw<S: Service>(
        &mut self,
        id: usize,
        service: &mut S,
        out: &mut Outbox<S::Completion>,
    ) -> bool {
        let (Some(conn), Some(state)) = (self.conns.get_mut(&id), self.raw.get_mut(&id)) else {
            return false;
        };
        if !state.answered || conn.closing.is_some() {
            return false;
        }
        match conn.write_ready() {
            Err(why) => {
                self.close(id, why, service, out);
                return true;
            }
            Ok(()) if conn.flushed() && !state.lingering => {
                conn.shutdown_write();
                state.lingering = true;
                if let Err(why) = conn.discard_input() {
                    self.close(id, why, service, out);
                    return true;
                }
            }
            Ok(()) => {}
        }
        if let Err(e) = conn.update_interest(self.poll.registry()) {
            self.close(id, CloseReason::Io(e.to_string()), service, out);
        }
        true
    }
}
