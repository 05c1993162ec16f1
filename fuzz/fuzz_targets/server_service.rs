//! Fuzz the ZEO service (`zeo serve`'s protocol state machine) without sockets: the
//! input is split into frames fed to a few connections of a service over a
//! MappingStorage; worker jobs and timers run inline. Any panic is a bug.
//!
//! Run: `cargo +nightly fuzz run server_service` (from the repository root).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use zeo::server::served::{Kind, Served};
use zeo::server::zeo::{Completion, Options, ZeoService};
use zeo::server::{Action, CloseReason, Outbox, Service};
use zeo::storage::mapping::MappingStorage;

fn settle(svc: &mut ZeoService, open: &mut [bool; 4], mut out: Outbox<Completion>) {
    loop {
        let actions = out.take_actions();
        let jobs = out.take_jobs();
        if actions.is_empty() && jobs.is_empty() {
            break;
        }
        for a in actions {
            match a {
                Action::Close(id, _) | Action::CloseAfterFlush(id) => {
                    if open.get(id).copied().unwrap_or(false) {
                        open[id] = false;
                        svc.on_close(id, &CloseReason::PeerClosed, &mut out);
                    }
                }
                Action::Timer(_, key) => svc.on_timer(key, &mut out),
                Action::WhenDrained(id) => {
                    if open.get(id).copied().unwrap_or(false) {
                        svc.on_drained(id, &mut out);
                    }
                }
                _ => {}
            }
        }
        for j in jobs {
            let done = j();
            svc.on_completion(done, &mut out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let served = Served::new(
        "1".into(),
        Arc::new(MappingStorage::new()),
        Kind::Mapping,
        false,
        true,
        10,
        "now".into(),
    );
    let mut svc = ZeoService::new(
        vec![served],
        Options {
            greeting: zeo::protocol::Encoding::Pickle,
            read_only: false,
            invalidation_age: Some(60.0),
            transaction_timeout: Some(1.0),
            blob_batch: 200_000,
        },
    );
    let mut open = [false; 4];
    // Frames: [conn byte][u16 length][payload]...
    let mut at = 0;
    while at + 3 <= data.len() {
        let id = (data[at] % 4) as usize;
        let len = u16::from_be_bytes([data[at + 1], data[at + 2]]) as usize;
        at += 3;
        let end = (at + len).min(data.len());
        let msg = data[at..end].to_vec();
        at = end;
        let mut out = Outbox::default();
        if !open[id] {
            open[id] = true;
            svc.on_connect(id, "fuzz", &mut out);
        }
        svc.on_message(id, msg, &mut out);
        settle(&mut svc, &mut open, out);
    }
});
