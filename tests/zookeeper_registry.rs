//! The ZooKeeper client and `Registration` against a real, private ZooKeeper server
//! (see tests/zookeeper_server): node layout and properties as zc.zk writes them,
//! clear start-up errors, unregister, session death, reconnect across restarts and
//! re-registration after expiry, and `resolve` of zookeeper:// URLs.

mod zookeeper_server;

use std::time::Duration;
use zeo::client::ServerAddress;
use zeo::zookeeper::{self, jute, register, Options, Registrant, ZkError, ZooKeeper};
use zookeeper_server::{Proxy, ZkServer};

fn registrant(conn: &str, path: &str, port: u16) -> Registrant {
    Registrant {
        connection: conn.to_string(),
        path: path.to_string(),
        host: "127.0.0.1".into(),
        port,
        pid: 4242,
        monitor: None,
        session_timeout: Some(Duration::from_millis(2000)),
    }
}

#[test]
fn client_operations_and_chroot() {
    let zk = ZkServer::start();
    zk.mkdir("/app/sub");
    let c = ZooKeeper::connect(&format!("{}/app", zk.connection()), Options::default()).unwrap();
    assert!(c.session_id() != 0);
    let p = c
        .create("/sub/n", b"hello", jute::Acl::world_all(), jute::PERSISTENT)
        .unwrap();
    assert_eq!(p, "/sub/n");
    assert_eq!(c.get_data("/sub/n").unwrap().0, b"hello");
    c.set_data("/sub/n", b"again").unwrap();
    assert_eq!(c.get_data("/sub/n").unwrap().0, b"again");
    assert_eq!(c.get_children("/sub").unwrap(), vec!["n"]);
    // Through the chroot, the node is /app/sub/n for everyone else.
    assert_eq!(zk.children("/app/sub"), vec!["n"]);
    let e = c.get_data("/nope").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ZkError::Server { code: -101, .. }), "{msg}");
    assert!(msg.contains("\"/nope\"") && msg.contains("NoNode"), "{msg}");
    assert!(msg.contains(&zk.connection()), "{msg}");
    c.delete("/sub/n").unwrap();
    assert!(c.exists("/sub/n").unwrap().is_none());
    assert!(c.create("bad", b"", jute::Acl::world_all(), 0).is_err());
}

#[test]
fn registration_node_properties_and_unregister() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/servers");
    let mut r = registrant(&zk.connection(), "/zeo/servers", 8100);
    r.monitor = Some("127.0.0.1:9100".into());
    let reg = register(&r).unwrap();
    assert_eq!(reg.node(), "/zeo/servers/127.0.0.1:8100");
    assert_eq!(zk.children("/zeo/servers"), vec!["127.0.0.1:8100"]);
    let c = ZooKeeper::connect(&zk.connection(), Options::default()).unwrap();
    let (data, stat) = c.get_data("/zeo/servers/127.0.0.1:8100").unwrap();
    assert_eq!(
        String::from_utf8(data).unwrap(),
        r#"{"monitor":"127.0.0.1:9100","pid":4242}"#
    );
    assert_eq!(stat.ephemeral_owner, reg.session().unwrap().session_id());
    // resolve() sees it.
    let url = format!("zookeeper://{}/zeo/servers", zk.connection());
    assert_eq!(
        zookeeper::resolve(&url).unwrap(),
        vec![ServerAddress::Tcp("127.0.0.1:8100".into())]
    );
    reg.unregister().unwrap();
    assert!(zk.children("/zeo/servers").is_empty());
    assert!(zookeeper::resolve(&url).unwrap().is_empty());
}

#[test]
fn empty_host_uses_machine_name_and_stale_node_is_replaced() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo");
    // A leftover of a previous (killed) incarnation, owned by another live session.
    let other = ZooKeeper::connect(&zk.connection(), Options::default()).unwrap();
    let name = format!("{}:8200", zookeeper::address::fqdn());
    other
        .create_ephemeral(
            &format!("/zeo/{name}"),
            b"{\"pid\":1}",
            jute::Acl::world_all(),
        )
        .unwrap();
    let mut r = registrant(&zk.connection(), "/zeo", 8200);
    r.host = String::new();
    let reg = register(&r).unwrap();
    assert_eq!(reg.node(), format!("/zeo/{name}"));
    let c = ZooKeeper::connect(&zk.connection(), Options::default()).unwrap();
    let (data, stat) = c.get_data(reg.node()).unwrap();
    assert_eq!(data, b"{\"pid\":4242}");
    assert_eq!(stat.ephemeral_owner, reg.session().unwrap().session_id());
    drop(other);
    drop(reg); // Drop unregisters too.
    assert!(zk.children("/zeo").is_empty());
}

#[test]
fn start_errors_are_clear() {
    let zk = ZkServer::start();
    let r = registrant(&zk.connection(), "/missing", 1);
    let msg = register(&r)
        .err()
        .expect("missing path must fail")
        .to_string();
    assert!(
        msg.contains("\"/missing\"")
            && msg.contains("does not exist")
            && msg.contains(&zk.connection()),
        "{msg}"
    );
    let dead = format!("127.0.0.1:{}", zookeeper_server::free_port());
    let msg = register(&registrant(&dead, "/x", 1))
        .err()
        .expect("unreachable must fail")
        .to_string();
    assert!(
        msg.contains("cannot connect to ZooKeeper") && msg.contains(&dead),
        "{msg}"
    );
    let msg = zookeeper::resolve("zookeeper://h:1")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing /path"), "{msg}");
    let url = format!("zookeeper://{}/nothing", zk.connection());
    let msg = zookeeper::resolve(&url).unwrap_err().to_string();
    assert!(msg.contains("\"/nothing\" does not exist"), "{msg}");
}

#[test]
fn session_death_removes_node_after_timeout() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo");
    let proxy = Proxy::start(zk.port);
    let reg = register(&registrant(&proxy.connection(), "/zeo", 8300)).unwrap();
    assert_eq!(zk.children("/zeo"), vec!["127.0.0.1:8300"]);
    // Cut the link for good (as if the process had been killed): the node vanishes
    // once the 2 s session times out, not before.
    proxy.cut();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(zk.children("/zeo"), vec!["127.0.0.1:8300"]);
    let left = zk.wait_children("/zeo", Duration::from_secs(15), |c| c.is_empty());
    assert!(left.is_empty(), "node still there: {left:?}");
    std::mem::forget(reg); // never reconnects: the proxy stays cut
}

#[test]
fn reregisters_after_session_expiry() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo");
    let proxy = Proxy::start(zk.port);
    let reg = register(&registrant(&proxy.connection(), "/zeo", 8400)).unwrap();
    let first = reg.session().unwrap().session_id();
    proxy.cut();
    let left = zk.wait_children("/zeo", Duration::from_secs(15), |c| c.is_empty());
    assert!(left.is_empty(), "session did not expire: {left:?}");
    proxy.restore();
    let back = zk.wait_children("/zeo", Duration::from_secs(15), |c| !c.is_empty());
    assert_eq!(back, vec!["127.0.0.1:8400"]);
    let s = reg.session().unwrap();
    assert_ne!(s.session_id(), first, "a new session was expected");
    let c = ZooKeeper::connect(&zk.connection(), Options::default()).unwrap();
    let (data, stat) = c.get_data("/zeo/127.0.0.1:8400").unwrap();
    assert_eq!(data, b"{\"pid\":4242}");
    assert_eq!(stat.ephemeral_owner, s.session_id());
    reg.unregister().unwrap();
    assert!(zk.children("/zeo").is_empty());
}

#[test]
fn survives_zookeeper_restarts() {
    let mut zk = ZkServer::start();
    zk.mkdir("/zeo");
    let mut r = registrant(&zk.connection(), "/zeo", 8500);
    r.session_timeout = Some(Duration::from_millis(6000));
    let reg = register(&r).unwrap();
    let first = reg.session().unwrap().session_id();
    // Restart keeping data: the same session comes back and the node stays.
    zk.restart(false);
    let back = zk.wait_children("/zeo", Duration::from_secs(20), |c| !c.is_empty());
    assert_eq!(back, vec!["127.0.0.1:8500"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reg.session().unwrap().is_connected() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(reg.session().unwrap().is_connected());
    assert_eq!(reg.session().unwrap().session_id(), first);
    // Restart with a wiped ensemble: the session is unknown; a new one re-registers.
    zk.restart(true);
    zk.mkdir("/zeo");
    let back = zk.wait_children("/zeo", Duration::from_secs(30), |c| !c.is_empty());
    assert_eq!(back, vec!["127.0.0.1:8500"], "{}", zk.log());
    assert_ne!(reg.session().unwrap().session_id(), first);
    reg.unregister().unwrap();
    assert!(zk.children("/zeo").is_empty());
}

#[test]
fn registers_again_once_a_wiped_registry_path_is_recreated() {
    let mut zk = ZkServer::start();
    zk.mkdir("/zeo");
    let reg = register(&registrant(&zk.connection(), "/zeo", 8600)).unwrap();
    let first = reg.session().unwrap().session_id();
    zk.restart(true);
    // The new session comes up while /zeo does not exist: the node cannot be created
    // yet; it is retried, not given up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reg.session().unwrap().session_id() == first && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(reg.session().unwrap().session_id(), first);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(zk.client().exists("/zeo").unwrap().is_none());
    zk.mkdir("/zeo");
    let back = zk.wait_children("/zeo", Duration::from_secs(15), |c| !c.is_empty());
    assert_eq!(back, vec!["127.0.0.1:8600"]);
    reg.unregister().unwrap();
}
