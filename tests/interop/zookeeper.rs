//! Service registry interop: a ZEO server registered in a real ZooKeeper with our
//! `Registration` is found by Python (kazoo, reading the node the way zc.zk does) and
//! used with ClientStorage; `zeo pack zookeeper://...` packs every registered server.
//!
//! The ZEO server here is Python's runzeo (registered on its behalf by the test
//! process): `zeo serve` does not call `Registration` yet (see docs/zookeeper.md).

#[path = "../zookeeper_server/mod.rs"]
mod zookeeper_server;

use crate::client::start_runzeo;
use crate::common::{python_output, run_python, zeo_bin};
use std::process::Command;
use std::time::Duration;
use zeo::client::ServerAddress;
use zeo::zookeeper::{register, Registrant};
use zookeeper_server::ZkServer;

fn registrant(zk: &ZkServer, server: &ServerAddress) -> Registrant {
    let port = match server {
        ServerAddress::Tcp(a) => a.rsplit_once(':').unwrap().1.parse().unwrap(),
        ServerAddress::Unix(_) => unreachable!("runzeo listens on TCP"),
    };
    Registrant {
        connection: zk.connection(),
        path: "/zeo/servers".into(),
        host: "127.0.0.1".into(),
        port,
        pid: std::process::id(),
        monitor: Some("127.0.0.1:9999".into()),
        session_timeout: Some(Duration::from_secs(4)),
    }
}

/// Resolve with kazoo as zc.zkzeo's client does (children are host:port, data is
/// zc.zk's JSON), then open a ClientStorage on those addresses and commit.
const KAZOO_CLIENT: &str = r#"
import json, sys
from kazoo.client import KazooClient
import ZEO, transaction
zk = KazooClient(hosts=sys.argv[1])
zk.start(timeout=20)
path = sys.argv[2]
children = sorted(zk.get_children(path))
props = [json.loads(zk.get(path + "/" + c)[0].decode()) for c in children]
zk.stop()
addrs = []
for c in children:
    host, port = c.rsplit(":", 1)
    addrs.append((host, int(port)))
db = ZEO.DB(addrs, wait_timeout=30)
conn = db.open()
conn.root()["registered"] = 42
transaction.commit()
conn.close()
db.close()
db = ZEO.DB(addrs, wait_timeout=30)
conn = db.open()
value = conn.root()["registered"]
db.close()
print(json.dumps({"children": children, "props": props, "value": value}))
"#;

#[test]
fn kazoo_resolves_the_registration_and_client_storage_commits() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/servers");
    let server = start_runzeo(false);
    let reg = register(&registrant(&zk, &server.addr)).unwrap();
    let out = run_python(KAZOO_CLIENT, &[&zk.connection(), "/zeo/servers"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["children"], serde_json::json!([server.addr.to_string()]));
    assert_eq!(
        v["props"][0],
        serde_json::json!({"monitor": "127.0.0.1:9999", "pid": std::process::id()})
    );
    assert_eq!(v["value"], 42);
    reg.unregister().unwrap();
    // After unregistering, kazoo sees nothing.
    let out = python_output(
        "import sys\nfrom kazoo.client import KazooClient\nzk = KazooClient(hosts=sys.argv[1]); zk.start(timeout=20)\nprint(zk.get_children('/zeo/servers'))",
        &[&zk.connection()],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

fn zeo_pack(args: &[&str]) -> std::process::Output {
    Command::new(zeo_bin())
        .arg("pack")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn zeo_pack_packs_every_registered_server() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/servers");
    let url = format!("zookeeper://{}/zeo/servers", zk.connection());
    // Nothing registered yet: an error naming the URL.
    let out = zeo_pack(&[&url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No servers registered at") && err.contains(&url), "{err}");
    let (a, b) = (start_runzeo(false), start_runzeo(true));
    let _ra = register(&registrant(&zk, &a.addr)).unwrap();
    let _rb = register(&registrant(&zk, &b.addr)).unwrap();
    let out = zeo_pack(&[&url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [&a.addr, &b.addr] {
        assert!(
            stdout.contains(&format!("packed storage 1 at {s} in")),
            "{stdout}"
        );
    }
    // A path that does not exist and an unreachable ZooKeeper: clear errors, exit 1.
    let out = zeo_pack(&[&format!("zookeeper://{}/nosuch", zk.connection())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"/nosuch\" does not exist"), "{err}");
    let dead = format!("127.0.0.1:{}", zookeeper_server::free_port());
    let out = zeo_pack(&[&format!("zookeeper://{dead}/zeo")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to ZooKeeper at") && err.contains(&dead), "{err}");
}
