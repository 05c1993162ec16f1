//! The monitoring endpoints of `zeo serve` read by Python: a real ZEO 6.2 client
//! (`ZEO.DB`) commits and loads, then ZEO's own `ZEO.monitor.StorageStats.parse` (the
//! reader of the ZEO 4 monitor format) parses each storage block of the report read
//! from a plain socket, and `urllib` scrapes `/metrics`.

use crate::common::run_python;
use crate::server_support::{free_port, ZeoServer};

#[test]
fn python_parses_the_monitor_report_and_scrapes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (monitor, metrics) = (free_port(), free_port());
    let extra =
        format!("  monitor-address 127.0.0.1:{monitor}\n  metrics-address 127.0.0.1:{metrics}");
    let storages = "<filestorage 1>\n  path Data.fs\n</filestorage>\n\
                    <mappingstorage other>\n</mappingstorage>";
    let mut server = ZeoServer::start(dir.path(), &extra, storages);
    let out = run_python(
        r#"
import socket, sys, urllib.request, ZEO, transaction
from ZEO.monitor import StorageStats
port, monitor, metrics = (int(a) for a in sys.argv[1:4])
db = ZEO.DB(('127.0.0.1', port))
conn = db.open()
root = conn.root()
for i in range(3):
    root['k%d' % i] = i
    transaction.commit()

def report():
    s = socket.create_connection(('127.0.0.1', monitor))
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode('ascii')

text = report()
header, _, body = text.partition('\n\n')
assert header.startswith('ZEO monitor server version '), header
names = []
for block in body.split('\n\n'):
    if not block.strip():
        continue
    first, _, rest = block.partition('\n')
    assert first.startswith('Storage: '), first
    names.append(first[len('Storage: '):])
    st = StorageStats([])
    st.parse(rest)
    if names[-1] == '1':
        print('commits', st.commits, 'stores', st.stores, 'loads', st.loads,
              'clients', len(st.connections), 'active', st.active_txns,
              'verifying', st.verifying_clients, 'aborts', st.aborts)
print('names', ' '.join(names))

with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % metrics) as r:
    assert r.status == 200
    assert r.headers['Content-Type'] == 'text/plain; version=0.0.4', r.headers
    body = r.read().decode('utf-8')
values = {}
for line in body.splitlines():
    if line and not line.startswith('#'):
        k, v = line.rsplit(' ', 1)
        values[k] = float(v)
print('metrics', int(values['zeo_commits_total{storage="1"}']),
      int(values['zeo_tpc_finish_duration_seconds_count{storage="1"}']),
      int(values['zeo_connections{storage="other"}']))
db.close()
"#,
        &[
            &server.port.to_string(),
            &monitor.to_string(),
            &metrics.to_string(),
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    // The root object's creation is the first commit.
    assert_eq!(
        lines[0], "commits 4 stores 4 loads 1 clients 1 active 0 verifying 0 aborts 0",
        "{out}"
    );
    assert_eq!(lines[1], "names 1 other", "{out}");
    assert_eq!(lines[2], "metrics 4 4 0", "{out}");
    assert_eq!(server.stop(), Some(0));
}
