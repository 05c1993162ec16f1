//! Prometheus metrics of `zeo serve` (`metrics-address`): latency histograms kept per
//! served storage, and the pure rendering of the text exposition format 0.0.4 from a
//! snapshot of the server's counters.
//!
//! Invariants: every family is written once with its `# HELP` and `# TYPE` lines,
//! followed by one sample (or one bucket series) per storage in the order given;
//! names start with `zeo_` and carry the label `storage="NAME"` (escaped as the
//! format requires); histogram buckets are cumulative, end with `le="+Inf"` equal to
//! `_count`, and the bucket bounds are fixed at compile time. Timing hooks cost one
//! `Instant::now()` pair and a bucket search over [`BUCKETS`].

use std::fmt::Write;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the latency buckets: loads take microseconds, an fsync
/// milliseconds, a slow disk seconds.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram (seconds) with the fixed [`BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above
    /// the largest bound.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// Run `f`, record how long it took, return its result.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let r = f();
        self.observe(t0.elapsed());
        r
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Cumulative counts per bound of [`BUCKETS`].
    pub fn cumulative(&self) -> [u64; BUCKETS.len()] {
        let mut out = [0u64; BUCKETS.len()];
        let mut acc = 0;
        for (o, c) in out.iter_mut().zip(self.counts.iter()) {
            acc += c;
            *o = acc;
        }
        out
    }
}

/// The latency histograms of one served storage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// `loadBefore`: the storage read.
    pub load_before: Histogram,
    /// `vote`: replaying the buffered stores into the storage and voting.
    pub vote: Histogram,
    /// `tpc_finish`: the storage's finish, which includes the fsync.
    pub finish: Histogram,
}

/// What the exposition reports of one storage (a snapshot taken on the loop thread).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageSample {
    pub name: String,
    pub connections: u64,
    pub loads: u64,
    pub stores: u64,
    pub commits: u64,
    pub aborts: u64,
    pub active_txns: u64,
    pub waiting: u64,
    pub conflicts: u64,
    pub conflicts_resolved: u64,
    /// Seconds the current holder has held the commit lock (0 when free).
    pub lock_held: f64,
    /// Unix time of the last committed transaction (from its tid; 0 when empty).
    pub last_transaction: f64,
    /// Number of objects and bytes the storage reports (`len()`, `size()`).
    pub objects: u64,
    pub size: u64,
    /// Unix time the server started serving this storage.
    pub start: f64,
    pub latency: Latency,
}

/// Escape a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A sample value as the text format writes it (integers without a fraction).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

type Getter = fn(&StorageSample) -> f64;

/// The counter and gauge families: (name, type, help, value).
const SCALARS: [(&str, &str, &str, Getter); 14] = [
    (
        "zeo_connections",
        "gauge",
        "Registered client connections.",
        |s| s.connections as f64,
    ),
    ("zeo_loads_total", "counter", "loadBefore calls.", |s| {
        s.loads as f64
    }),
    (
        "zeo_stores_total",
        "counter",
        "Stores (storea, restorea, deleteObject, blob stores).",
        |s| s.stores as f64,
    ),
    (
        "zeo_commits_total",
        "counter",
        "Transactions committed (successful tpc_finish).",
        |s| s.commits as f64,
    ),
    (
        "zeo_aborts_total",
        "counter",
        "Transactions aborted (tpc_abort, disconnects, timeouts, failed finishes).",
        |s| s.aborts as f64,
    ),
    (
        "zeo_active_transactions",
        "gauge",
        "Open transactions (tpc_begin to finish or abort).",
        |s| s.active_txns as f64,
    ),
    (
        "zeo_commit_lock_waiting",
        "gauge",
        "Votes queued for the commit lock.",
        |s| s.waiting as f64,
    ),
    (
        "zeo_commit_lock_held_seconds",
        "gauge",
        "How long the current holder has held the commit lock (0 when free).",
        |s| s.lock_held,
    ),
    (
        "zeo_conflicts_total",
        "counter",
        "Votes that failed with a ConflictError.",
        |s| s.conflicts as f64,
    ),
    (
        "zeo_conflicts_resolved_total",
        "counter",
        "Conflicts resolved on the server (always 0: clients resolve conflicts).",
        |s| s.conflicts_resolved as f64,
    ),
    (
        "zeo_last_transaction_timestamp_seconds",
        "gauge",
        "Unix time of the last committed transaction's tid (0 for an empty storage).",
        |s| s.last_transaction,
    ),
    (
        "zeo_objects",
        "gauge",
        "Objects in the storage, as the storage reports its length.",
        |s| s.objects as f64,
    ),
    (
        "zeo_storage_size_bytes",
        "gauge",
        "Size of the storage in bytes.",
        |s| s.size as f64,
    ),
    (
        "zeo_start_time_seconds",
        "gauge",
        "Unix time the server started serving the storage.",
        |s| s.start,
    ),
];

type HistGetter = fn(&Latency) -> &Histogram;

/// The histogram families: (name, help, histogram).
const HISTOGRAMS: [(&str, &str, HistGetter); 3] = [
    (
        "zeo_load_before_duration_seconds",
        "Time the storage took to answer loadBefore.",
        |l| &l.load_before,
    ),
    (
        "zeo_tpc_vote_duration_seconds",
        "Time to replay a transaction's stores into the storage and vote.",
        |l| &l.vote,
    ),
    (
        "zeo_tpc_finish_duration_seconds",
        "Time of the storage's tpc_finish (the fsync of Data.fs).",
        |l| &l.finish,
    ),
];

/// Render the Prometheus text exposition (format 0.0.4) of `storages`.
pub fn render(storages: &[StorageSample]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    for (name, kind, help, get) in SCALARS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in storages {
            let label = escape_label(&s.name);
            let _ = writeln!(out, "{name}{{storage=\"{label}\"}} {}", num(get(s)));
        }
    }
    for (name, help, get) in HISTOGRAMS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for s in storages {
            let label = escape_label(&s.name);
            let h = get(&s.latency);
            for (bound, c) in BUCKETS.iter().zip(h.cumulative()) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{storage=\"{label}\",le=\"{}\"}} {c}",
                    num(*bound)
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{storage=\"{label}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{storage=\"{label}\"}} {}", num(h.sum));
            let _ = writeln!(out, "{name}_count{{storage=\"{label}\"}} {}", h.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50)); // <= 0.0001
        h.observe(Duration::from_micros(100)); // == 0.0001: bounds are inclusive
        h.observe(Duration::from_millis(3)); // <= 0.005
        h.observe(Duration::from_secs(60)); // above every bound
        let c = h.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[4], 2); // 0.0025
        assert_eq!(c[5], 3); // 0.005
        assert_eq!(c[BUCKETS.len() - 1], 3);
        assert_eq!(h.count(), 4);
        assert!((h.sum - 60.00315).abs() < 1e-9);
        assert_eq!(h.time(|| 7), 7);
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("1"), "1");
    }

    fn sample(name: &str) -> StorageSample {
        StorageSample {
            name: name.into(),
            connections: 2,
            loads: 10,
            stores: 3,
            commits: 1,
            aborts: 0,
            active_txns: 1,
            waiting: 0,
            conflicts: 0,
            conflicts_resolved: 0,
            lock_held: 0.5,
            last_transaction: 1_700_000_000.25,
            objects: 4,
            size: 1234,
            start: 1_700_000_000.0,
            latency: Latency::default(),
        }
    }

    #[test]
    fn exposition_has_one_family_block_per_metric() {
        let mut a = sample("1");
        a.latency.finish.observe(Duration::from_millis(2));
        let text = render(&[a, sample("other \"db\"")]);
        assert!(text.contains(
            "# HELP zeo_loads_total loadBefore calls.\n# TYPE zeo_loads_total counter\n\
             zeo_loads_total{storage=\"1\"} 10\n\
             zeo_loads_total{storage=\"other \\\"db\\\"\"} 10\n"
        ));
        assert!(text.contains("zeo_commit_lock_held_seconds{storage=\"1\"} 0.5\n"));
        assert!(
            text.contains("zeo_last_transaction_timestamp_seconds{storage=\"1\"} 1700000000.25\n")
        );
        assert!(text.contains(
            "zeo_tpc_finish_duration_seconds_bucket{storage=\"1\",le=\"0.001\"} 0\n\
             zeo_tpc_finish_duration_seconds_bucket{storage=\"1\",le=\"0.0025\"} 1\n"
        ));
        assert!(text.contains(
            "zeo_tpc_finish_duration_seconds_bucket{storage=\"1\",le=\"+Inf\"} 1\n\
             zeo_tpc_finish_duration_seconds_sum{storage=\"1\"} 0.002\n\
             zeo_tpc_finish_duration_seconds_count{storage=\"1\"} 1\n"
        ));
        // Every family: HELP and TYPE exactly once; every sample line parses.
        for (name, _, _, _) in SCALARS {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("zeo_"), "{line}");
            assert!(
                value == "+Inf" || value.parse::<f64>().is_ok(),
                "{line}: bad value"
            );
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_storages_still_declares_the_families() {
        let text = render(&[]);
        assert!(text.contains("# TYPE zeo_commits_total counter\n"));
        assert!(!text.lines().any(|l| !l.starts_with('#')));
    }

    #[test]
    fn special_values() {
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.0001), "0.0001");
    }
}
