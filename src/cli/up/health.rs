//! The zeoup-style health check behind plain `zeo up` (and `zeoup` by argv[0]).
//!
//! Steps, each timed: connect (retrying with exponential backoff for `retry`), register
//! (read-only, or writable for the write check), `lastTransaction`, `loadBefore` of the
//! root object (oid 0) before `maxtid`, then optionally the write check: `tpc_begin`,
//! `vote` (which takes the storage's commit lock and runs the storage's own vote) and
//! `tpc_abort`. The write check stores nothing, so it leaves no transaction in the
//! database — unlike zeoup, which commits an increment of `root['monitor']['zeoup']`.
//!
//! Invariant: every failure is reported as one line naming the step that failed.

use crate::client::{Client, ClientError, Options, ServerAddress};
use crate::protocol::value::Value;
use crate::storage::{Oid, Tid};
use std::time::{Duration, Instant};

/// What to check.
#[derive(Debug, Clone)]
pub struct Probe {
    pub address: ServerAddress,
    pub storage: String,
    /// Take the commit lock and vote an empty transaction, then abort it.
    pub write: bool,
    /// Keep trying to connect this long.
    pub retry: Duration,
    /// Per-read/write timeout.
    pub timeout: Duration,
}

/// A healthy server's answers and the time each step took.
#[derive(Debug, Clone)]
pub struct Health {
    pub last_transaction: Tid,
    pub root_size: usize,
    pub connect: Duration,
    pub register: Duration,
    pub load: Duration,
    pub write: Option<Duration>,
    pub total: Duration,
}

/// The step that failed and why.
#[derive(Debug)]
pub struct Failure {
    pub step: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)
    }
}

fn fail(step: &'static str) -> impl Fn(ClientError) -> Failure {
    move |e| Failure {
        step,
        reason: match e {
            ClientError::Closed => "the server closed the connection".into(),
            other => other.to_string(),
        },
    }
}

fn connect(p: &Probe) -> Result<Client, ClientError> {
    let opts = Options {
        timeout: p.timeout,
        tls: None,
    };
    let deadline = Instant::now() + p.retry;
    let mut pause = Duration::from_millis(100);
    loop {
        match Client::connect(&p.address, &opts) {
            Ok(c) => return Ok(c),
            Err(e) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Run the check.
pub fn check(p: &Probe) -> Result<Health, Failure> {
    let started = Instant::now();
    let mut c = connect(p).map_err(fail("cannot connect"))?;
    let connect_time = started.elapsed();

    let t = Instant::now();
    c.register(&p.storage, !p.write).map_err(|e| {
        let mut f = fail("register failed")(e);
        if p.write && f.reason.contains("ReadOnlyError") {
            f.reason
                .push_str(" (the server or storage is read-only; use --nowrite)");
        }
        f
    })?;
    let register = t.elapsed();

    let t = Instant::now();
    let last = c
        .last_transaction()
        .map_err(fail("lastTransaction failed"))?;
    let root = c
        .load_before(Oid(0), Tid::MAX)
        .map_err(|e| match e {
            ClientError::Remote { ref class_name, .. } if class_name.ends_with("POSKeyError") => {
                Failure {
                    step: "loading the root object failed",
                    reason: "oid 0x00 does not exist: the storage is empty (no ZODB client \
                             has opened it yet)"
                        .into(),
                }
            }
            other => fail("loading the root object failed")(other),
        })?
        .ok_or_else(|| Failure {
            step: "loading the root object failed",
            reason: "no revision of oid 0x00 before maxtid".into(),
        })?;
    let load = t.elapsed();

    let write = if p.write {
        let t = Instant::now();
        write_check(&mut c)?;
        Some(t.elapsed())
    } else {
        None
    };
    Ok(Health {
        last_transaction: last,
        root_size: root.data.len(),
        connect: connect_time,
        register,
        load,
        write,
        total: started.elapsed(),
    })
}

/// Begin a transaction, vote it (commit lock + storage vote), abort it.
fn write_check(c: &mut Client) -> Result<(), Failure> {
    let txn = Value::Int(1);
    c.call_oneway(
        "tpc_begin",
        vec![
            txn.clone(),
            Value::bytes(b"".to_vec()),
            Value::bytes(b"zeo up write check (aborted)".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    )
    .map_err(fail("write check: tpc_begin failed"))?;
    let voted = c.call("vote", vec![txn.clone()]);
    // Abort whatever the vote did; after a failed vote the server expects it too.
    let aborted = c.call("tpc_abort", vec![txn]);
    match voted {
        Ok(v) if v.as_seq().is_some_and(|s| s.is_empty()) => {}
        Ok(v) => {
            return Err(Failure {
                step: "write check: vote failed",
                reason: format!("unexpected vote result {v:?} for an empty transaction"),
            })
        }
        Err(e) => return Err(fail("write check: vote failed")(e)),
    }
    aborted
        .map(|_| ())
        .map_err(fail("write check: tpc_abort failed"))
}

/// `0x…` plus the UTC time the tid encodes, or "none" for an empty storage.
pub fn describe_tid(t: Tid) -> String {
    if t == Tid::ZERO {
        return "none (empty storage)".into();
    }
    let (y, mo, d, h, mi, s) = t.parts();
    format!("{t} ({y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:06.3} UTC)")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The one-line success report of `zeo up`.
pub fn summary(p: &Probe, h: &Health) -> String {
    let mut line = format!(
        "OK: storage {:?} at {}: last transaction {}, root object {} bytes",
        p.storage,
        p.address,
        describe_tid(h.last_transaction),
        h.root_size
    );
    if h.write.is_some() {
        line.push_str(", write check passed");
    }
    line.push_str(&format!(
        "; latency: connect {}, register {}, load {}",
        ms(h.connect),
        ms(h.register),
        ms(h.load)
    ));
    if let Some(w) = h.write {
        line.push_str(&format!(", write {}", ms(w)));
    }
    line.push_str(&format!(", total {}", ms(h.total)));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_are_described_in_utc() {
        assert_eq!(describe_tid(Tid::ZERO), "none (empty storage)");
        let t = Tid::from_utc(2026, 11, 21, 18, 1, 2.5);
        assert_eq!(
            describe_tid(t),
            format!("{t} (2026-11-21 18:01:02.500 UTC)")
        );
    }

    #[test]
    fn unreachable_server_fails_at_connect() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Probe {
            address: ServerAddress::Tcp(format!("127.0.0.1:{port}")),
            storage: "1".into(),
            write: false,
            retry: Duration::from_millis(300),
            timeout: Duration::from_secs(1),
        };
        let started = Instant::now();
        let e = check(&p).unwrap_err();
        assert_eq!(e.step, "cannot connect");
        assert!(e.reason.contains("refused"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
