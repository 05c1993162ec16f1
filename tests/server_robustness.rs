//! Deterministic robustness test of the ZEO service without sockets: thousands of
//! captured client frames, mutated, truncated, spliced or random, fed to
//! `ZeoService` on several connections (closing and reopening them as the service
//! demands, running worker jobs and timers inline). Any panic is a bug; afterwards
//! a clean connection still registers, commits and loads.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use zeo::protocol::{pickle, GlobalPolicy, Value};
use zeo::server::served::{Kind, Served};
use zeo::server::zeo::{Completion, Options, ZeoService};
use zeo::server::{Action, CloseReason, Outbox, Service};
use zeo::storage::mapping::MappingStorage;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Driver {
    svc: ZeoService,
    open: HashSet<usize>,
    sent: Vec<(usize, Vec<u8>)>,
}

impl Driver {
    fn settle(&mut self, mut out: Outbox<Completion>) {
        loop {
            let actions = out.take_actions();
            let jobs = out.take_jobs();
            if actions.is_empty() && jobs.is_empty() {
                break;
            }
            for a in actions {
                match a {
                    Action::Send(id, b) => self.sent.push((id, b)),
                    Action::Close(id, why) => {
                        if self.open.remove(&id) {
                            self.svc.on_close(id, &CloseReason::Server(why), &mut out);
                        }
                    }
                    Action::CloseAfterFlush(id) => {
                        if self.open.remove(&id) {
                            self.svc.on_close(id, &CloseReason::PeerClosed, &mut out);
                        }
                    }
                    // Fire timers at once: exercises the transaction timeout.
                    Action::Timer(_, key) => self.svc.on_timer(key, &mut out),
                    Action::Stop(_) => {}
                    Action::WhenDrained(id) => {
                        if self.open.contains(&id) {
                            self.svc.on_drained(id, &mut out);
                        }
                    }
                }
            }
            for j in jobs {
                let done = j();
                self.svc.on_completion(done, &mut out);
            }
        }
    }
    fn connect(&mut self, id: usize, letter: u8) {
        let mut out = Outbox::default();
        self.open.insert(id);
        self.svc.on_connect(id, "test", &mut out);
        self.svc.on_message(id, vec![letter, b'5'], &mut out);
        self.settle(out);
    }
    fn message(&mut self, id: usize, msg: Vec<u8>) {
        let mut out = Outbox::default();
        self.svc.on_message(id, msg, &mut out);
        self.settle(out);
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol/pickle");
    let mut frames = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let j: serde_json::Value = serde_json::from_str(line).unwrap();
            if j["dir"] == "C>S" && j["kind"] != "handshake" {
                let Some(h) = j["hex"].as_str() else { continue };
                frames.push(
                    (0..h.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                        .collect(),
                );
            }
        }
    }
    frames
}

fn service() -> ZeoService {
    let served = Served::new(
        "1".into(),
        Arc::new(MappingStorage::new()),
        Kind::Mapping,
        false,
        true,
        100,
        "now".into(),
    );
    ZeoService::new(
        vec![served],
        Options {
            greeting: zeo::protocol::Encoding::Pickle,
            read_only: false,
            invalidation_age: Some(3600.0),
            transaction_timeout: Some(1.0),
            blob_batch: 200_000,
        },
    )
}

fn register_frame() -> Vec<u8> {
    pickle::encode(&Value::Tuple(vec![
        Value::Int(1),
        Value::Bool(false),
        Value::str("register"),
        Value::Tuple(vec![Value::str("1"), Value::Int(0)]),
    ]))
    .unwrap()
}

#[test]
fn thousands_of_mutated_frames_never_panic() {
    let corpus = corpus();
    assert!(corpus.len() > 500, "{}", corpus.len());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut d = Driver {
        svc: service(),
        open: HashSet::new(),
        sent: Vec::new(),
    };
    let mut next_id = 1usize;
    let mut conns: Vec<usize> = Vec::new();
    for i in 0..6000 {
        // Keep up to 4 registered connections.
        conns.retain(|c| d.open.contains(c));
        if conns.len() < 4 {
            let id = next_id;
            next_id += 1;
            d.connect(id, if i % 7 == 0 { b'M' } else { b'Z' });
            if i % 5 != 0 {
                d.message(id, register_frame());
            }
            conns.push(id);
            continue;
        }
        let id = conns[rng.below(conns.len())];
        let base = &corpus[rng.below(corpus.len())];
        let mut m = base.clone();
        match rng.below(6) {
            0 => {}
            1 => {
                for _ in 0..1 + rng.below(4) {
                    if !m.is_empty() {
                        let at = rng.below(m.len());
                        m[at] ^= 1 << rng.below(8);
                    }
                }
            }
            2 => m.truncate(rng.below(m.len() + 1)),
            3 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(m.len() + 1);
                m.truncate(cut);
                m.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
            4 => m = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => {
                let at = rng.below(m.len() + 1);
                m.insert(at, rng.next() as u8);
            }
        }
        d.message(id, m);
    }
    // A clean client still works.
    let id = next_id;
    d.connect(id, b'Z');
    d.sent.clear();
    d.message(id, register_frame());
    let (_, reply) = d
        .sent
        .iter()
        .find(|(c, _)| *c == id)
        .expect("register reply");
    let v = pickle::decode(reply, GlobalPolicy::ServerMessages).unwrap();
    assert_eq!(v.as_seq().unwrap()[1], Value::Int(0), "{v}");
}
