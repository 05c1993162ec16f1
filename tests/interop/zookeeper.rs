//! Service registry interop: a ZEO server registered in a real ZooKeeper with our
//! `Registration` is found by Python (kazoo, reading the node the way zc.zk does) and
//! used with ClientStorage; `zeo pack zookeeper://...` packs every registered server.
//!
//! The first two tests register Python's runzeo on its behalf from the test process;
//! the last one runs `zeo serve` with a `<zookeeper>` section end to end.

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
    assert!(
        err.contains("No servers registered at") && err.contains(&url),
        "{err}"
    );
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
    assert!(
        err.contains("cannot connect to ZooKeeper at") && err.contains(&dead),
        "{err}"
    );
}

/// The acceptance path end to end: `zeo serve` with `address 127.0.0.1` (no port) and
/// a `<zookeeper>` section registers itself; kazoo resolves it and ClientStorage
/// commits through it; SIGTERM removes the node.
#[test]
fn zeo_serve_registers_and_a_kazoo_client_commits() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/servers");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        format!(
            "<zeo>\n  address 127.0.0.1\n</zeo>\n<filestorage 1>\n  path {}\n</filestorage>\n\
             <zookeeper>\n  connection {}\n  path /zeo/servers\n  session-timeout 4000\n  \
             monitor-server 127.0.0.1:9100\n</zookeeper>\n",
            dir.path().join("Data.fs").display(),
            zk.connection()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = Command::new(zeo_bin())
        .args(["serve", "-C"])
        .arg(&conf)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let serve_log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let c = zk.wait_children("/zeo/servers", Duration::from_secs(30), |c| !c.is_empty());
    assert_eq!(c.len(), 1, "not registered:\n{}", serve_log());
    let out = python_output(KAZOO_CLIENT, &[&zk.connection(), "/zeo/servers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve_log()
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["children"], serde_json::json!(c));
    assert_eq!(
        v["props"][0],
        serde_json::json!({"monitor": "127.0.0.1:9100", "pid": child.id()})
    );
    assert_eq!(v["value"], 42);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let st = child.wait().unwrap();
    assert!(
        zk.children("/zeo/servers").is_empty(),
        "{st}\n{}",
        serve_log()
    );
}
