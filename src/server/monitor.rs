//! The two observation endpoints of `zeo serve`, as seen from the served storages:
//! the plain-text report of `monitor-address` (the layout of ZEO 4's monitor server,
//! `StatsServer.dump` / `StorageStats.dump`) and the snapshot the Prometheus
//! exposition of `metrics-address` is rendered from ([`super::metrics`]).
//!
//! Invariants: rendering is pure ([`render_report`] takes the clock readings as
//! arguments); storages appear sorted by name in the report, as Python's
//! `sorted(stats.keys())`, and in configuration order in the exposition; the
//! counters are the ones `server_status` reports, read on the loop thread, so a
//! report is one consistent snapshot.

use super::metrics::{self, StorageSample};
use super::served::{ctime, now_f64, Served};

/// One storage's block of the monitor report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorStorage {
    pub name: String,
    /// `time.ctime()` of the server start.
    pub start: String,
    pub clients: u64,
    /// Always 0 since ZEO 5 (clients no longer verify their cache on the server).
    pub verifying: u64,
    pub active_txns: u64,
    /// Whole seconds the commit lock has been held, when it is held.
    pub lock_held: Option<u64>,
    pub commits: u64,
    pub aborts: u64,
    pub loads: u64,
    pub stores: u64,
    pub conflicts: u64,
    pub conflicts_resolved: u64,
}

/// The monitor report: a version line, the time (`ctime` format), an empty line, then
/// per storage (sorted by name) its fields and an empty line. Lines end in `\n`.
pub fn render_report(version: &str, now: &str, storages: &[MonitorStorage]) -> String {
    let mut sorted: Vec<&MonitorStorage> = storages.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = format!("ZEO monitor server version {version}\n{now}\n\n");
    for s in sorted {
        out.push_str(&format!("Storage: {}\n", s.name));
        out.push_str(&format!("Server started: {}\n", s.start));
        out.push_str(&format!("Clients: {}\n", s.clients));
        out.push_str(&format!("Clients verifying: {}\n", s.verifying));
        out.push_str(&format!("Active transactions: {}\n", s.active_txns));
        // Python prints this line only when the lock time is set and non-zero.
        if let Some(held) = s.lock_held {
            out.push_str(&format!("Commit lock held for: {held}\n"));
        }
        out.push_str(&format!("Commits: {}\n", s.commits));
        out.push_str(&format!("Aborts: {}\n", s.aborts));
        out.push_str(&format!("Loads: {}\n", s.loads));
        out.push_str(&format!("Stores: {}\n", s.stores));
        out.push_str(&format!("Conflicts: {}\n", s.conflicts));
        out.push_str(&format!("Conflicts resolved: {}\n", s.conflicts_resolved));
        out.push('\n');
    }
    out
}

/// The version the report names: this server's.
pub const VERSION: &str = concat!("zeo ", env!("CARGO_PKG_VERSION"));

fn monitor_storage(s: &Served, now: f64) -> MonitorStorage {
    let st = &s.stats;
    MonitorStorage {
        name: s.name.clone(),
        start: s.start.clone(),
        clients: s.registered.len() as u64,
        verifying: 0,
        active_txns: st.active_txns,
        lock_held: s
            .lock
            .lock_time
            .filter(|&t| t != 0.0)
            .map(|t| (now - t).max(0.0) as u64),
        commits: st.commits,
        aborts: st.aborts,
        loads: st.loads,
        stores: st.stores,
        conflicts: st.conflicts,
        conflicts_resolved: st.conflicts_resolved,
    }
}

/// The monitor report of `storages` now.
pub fn monitor_report(storages: &[Served]) -> String {
    let now = now_f64();
    let blocks: Vec<MonitorStorage> = storages.iter().map(|s| monitor_storage(s, now)).collect();
    render_report(VERSION, &ctime(std::time::SystemTime::now()), &blocks)
}

/// The exposition's snapshot of one storage.
pub fn sample(s: &Served, now: f64) -> StorageSample {
    let st = &s.stats;
    let last = s.announced;
    StorageSample {
        name: s.name.clone(),
        connections: s.registered.len() as u64,
        loads: st.loads,
        stores: st.stores,
        commits: st.commits,
        aborts: st.aborts,
        active_txns: st.active_txns,
        waiting: s.lock.waiting() as u64,
        conflicts: st.conflicts,
        conflicts_resolved: st.conflicts_resolved,
        lock_held: s.lock.lock_time.map(|t| (now - t).max(0.0)).unwrap_or(0.0),
        last_transaction: if last.0 == 0 { 0.0 } else { last.time_time() },
        objects: s.storage.len(),
        size: s.storage.size(),
        start: s.started_at,
        latency: s.latency.clone(),
    }
}

/// The Prometheus exposition of `storages` now.
pub fn metrics_report(storages: &[Served]) -> String {
    let now = now_f64();
    let samples: Vec<StorageSample> = storages.iter().map(|s| sample(s, now)).collect();
    metrics::render(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str) -> MonitorStorage {
        MonitorStorage {
            name: name.into(),
            start: "Sat Nov 21 17:24:20 2026".into(),
            clients: 2,
            loads: 7,
            ..MonitorStorage::default()
        }
    }

    #[test]
    fn report_layout_matches_zeo4() {
        let mut b = block("main");
        b.lock_held = Some(3);
        b.commits = 5;
        let text = render_report("X", "Sat Nov 21 18:00:00 2026", &[block("z"), b]);
        assert_eq!(
            text,
            "ZEO monitor server version X\nSat Nov 21 18:00:00 2026\n\n\
             Storage: main\nServer started: Sat Nov 21 17:24:20 2026\nClients: 2\n\
             Clients verifying: 0\nActive transactions: 0\nCommit lock held for: 3\n\
             Commits: 5\nAborts: 0\nLoads: 7\nStores: 0\nConflicts: 0\n\
             Conflicts resolved: 0\n\n\
             Storage: z\nServer started: Sat Nov 21 17:24:20 2026\nClients: 2\n\
             Clients verifying: 0\nActive transactions: 0\n\
             Commits: 0\nAborts: 0\nLoads: 7\nStores: 0\nConflicts: 0\n\
             Conflicts resolved: 0\n\n"
        );
    }

    #[test]
    fn report_without_storages_is_the_header() {
        assert_eq!(
            render_report("1", "now", &[]),
            "ZEO monitor server version 1\nnow\n\n"
        );
    }

    #[test]
    fn served_storages_are_sampled() {
        let storage = std::sync::Arc::new(crate::storage::mapping::MappingStorage::with_name("m"));
        let mut s = Served::new(
            "1".into(),
            storage,
            super::super::served::Kind::Mapping,
            false,
            true,
            10,
            "Sat Nov 21 17:24:20 2026".into(),
        );
        s.stats.loads = 4;
        s.stats.commits = 2;
        s.lock.lock_time = Some(now_f64() - 2.5);
        let report = monitor_report(std::slice::from_ref(&s));
        assert!(report.starts_with(&format!("ZEO monitor server version {VERSION}\n")));
        assert!(report.contains("\nStorage: 1\n"), "{report}");
        assert!(report.contains("\nLoads: 4\nStores: 0\n"), "{report}");
        assert!(report.contains("\nCommit lock held for: 2\n"), "{report}");
        let text = metrics_report(std::slice::from_ref(&s));
        assert!(
            text.contains("zeo_loads_total{storage=\"1\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("zeo_commits_total{storage=\"1\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("zeo_last_transaction_timestamp_seconds{storage=\"1\"} 0\n"));
    }
}
