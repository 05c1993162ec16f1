//! `zeo serve` with a `<zookeeper>` section against a real, private ZooKeeper: the
//! server started with `address 127.0.0.1` (no port) registers its real port and pid;
//! `zeo pack zookeeper://...` finds it; SIGTERM removes the node; SIGKILL makes it
//! vanish after the session timeout; ZooKeeper restarts (keeping or losing its data)
//! lead to the node being there again; start-up failures are clear errors.

mod zookeeper_server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zookeeper_server::ZkServer;

pub struct Serve {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config(dir: &Path, connection: &str, path: &str, timeout_ms: u32) -> PathBuf {
    let conf = dir.join("zeo.conf");
    std::fs::write(
        &conf,
        format!(
            "<zeo>\n  address 127.0.0.1\n</zeo>\n<filestorage 1>\n  path {}\n</filestorage>\n\
             <zookeeper>\n  connection {connection}\n  path {path}\n  session-timeout {timeout_ms}\n</zookeeper>\n",
            dir.join("Data.fs").display()
        ),
    )
    .unwrap();
    conf
}

pub fn serve(connection: &str, path: &str, timeout_ms: u32) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), connection, path, timeout_ms);
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_zeo"))
        .args(["serve", "-C"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Serve { child, dir }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn wait_exit(s: &mut Serve, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "zeo serve did not exit:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for the registration; returns (node name, port, pid property).
fn registered(zk: &ZkServer, s: &Serve, path: &str) -> (String, u16, u64) {
    let c = zk.wait_children(path, Duration::from_secs(30), |c| !c.is_empty());
    assert_eq!(c.len(), 1, "no registration: {c:?}\n{}", s.log());
    let name = c[0].clone();
    let port: u16 = name.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    assert_ne!(port, 0);
    let data = zk.client().get_data(&format!("{path}/{name}")).unwrap().0;
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    (name, port, v["pid"].as_u64().unwrap())
}

#[test]
fn registers_real_port_and_pid_pack_finds_it_and_sigterm_removes_it() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/servers");
    let mut s = serve(&zk.connection(), "/zeo/servers", 4000);
    let (_, port, pid) = registered(&zk, &s, "/zeo/servers");
    assert_eq!(pid, u64::from(s.child.id()));
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the registered port serves");
    let url = format!("zookeeper://{}/zeo/servers", zk.connection());
    let out = Command::new(env!("CARGO_BIN_EXE_zeo"))
        .args(["pack", &url])
        .output()
        .unwrap();
    // zeo pack resolved the URL to this server and packed it.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!("packed storage 1 at 127.0.0.1:{port} in")),
        "{all}"
    );
    signal(&s.child, libc::SIGTERM);
    wait_exit(&mut s, Duration::from_secs(30));
    assert!(zk.children("/zeo/servers").is_empty(), "{}", s.log());
}

#[test]
fn sigkill_node_vanishes_after_the_session_timeout() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo");
    let mut s = serve(&zk.connection(), "/zeo", 3000);
    let (name, _, _) = registered(&zk, &s, "/zeo");
    signal(&s.child, libc::SIGKILL);
    wait_exit(&mut s, Duration::from_secs(10));
    let killed = Instant::now();
    assert_eq!(
        zk.children("/zeo"),
        vec![name],
        "gone before the session timeout"
    );
    let left = zk.wait_children("/zeo", Duration::from_secs(20), |c| c.is_empty());
    assert!(left.is_empty(), "still registered: {left:?}");
    assert!(killed.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn zookeeper_restarts_lead_to_registration_again() {
    let mut zk = ZkServer::start();
    zk.mkdir("/zeo");
    let mut s = serve(&zk.connection(), "/zeo", 6000);
    let (name, port, pid) = registered(&zk, &s, "/zeo");
    zk.restart(false);
    assert_eq!(registered(&zk, &s, "/zeo"), (name.clone(), port, pid));
    // A wiped ensemble: the server's session is unknown there; it registers again.
    zk.restart(true);
    zk.mkdir("/zeo");
    assert_eq!(registered(&zk, &s, "/zeo"), (name, port, pid));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "server stopped:\n{}",
        s.log()
    );
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("still serving");
    signal(&s.child, libc::SIGTERM);
    wait_exit(&mut s, Duration::from_secs(30));
    assert!(zk.children("/zeo").is_empty());
}

#[test]
fn start_fails_clearly_without_path_or_zookeeper() {
    let zk = ZkServer::start();
    let mut s = serve(&zk.connection(), "/missing", 2000);
    let st = wait_exit(&mut s, Duration::from_secs(30));
    assert!(!st.success());
    let log = s.log();
    assert!(log.contains("\"/missing\" does not exist"), "{log}");
    let dead = format!("127.0.0.1:{}", zookeeper_server::free_port());
    let mut s = serve(&dead, "/zeo", 2000);
    let st = wait_exit(&mut s, Duration::from_secs(30));
    assert!(!st.success());
    let log = s.log();
    assert!(
        log.contains("cannot connect to ZooKeeper at") && log.contains(&dead),
        "{log}"
    );
}

/// Store a root object (oid 0) so `zeo up`'s root load succeeds.
fn create_root(port: u16) {
    use zeo::client::{Client, Options, ServerAddress};
    use zeo::storage::{Oid, Tid};
    let addr = ServerAddress::Tcp(format!("127.0.0.1:{port}"));
    let mut c = Client::connect(&addr, &Options::default()).unwrap();
    c.register("1", false).unwrap();
    let root = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01.";
    c.commit(b"", &[(Oid(0), Tid::ZERO, root)]).unwrap();
}

#[test]
fn zeo_up_reports_every_registered_server() {
    let zk = ZkServer::start();
    zk.mkdir("/zeo/up");
    let a = serve(&zk.connection(), "/zeo/up", 4000);
    let b = serve(&zk.connection(), "/zeo/up", 4000);
    let names = zk.wait_children("/zeo/up", Duration::from_secs(30), |c| c.len() == 2);
    assert_eq!(names.len(), 2, "{}\n{}", a.log(), b.log());
    let ports: Vec<u16> = names
        .iter()
        .map(|n| n.strip_prefix("127.0.0.1:").unwrap().parse().unwrap())
        .collect();
    for p in &ports {
        create_root(*p);
    }
    let url = format!("zookeeper://{}/zeo/up", zk.connection());
    let up = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_zeo"))
            .args(["up", "--timeout", "10", url])
            .output()
            .unwrap()
    };
    let out = up(&url);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in &ports {
        assert!(stdout.contains(&format!("127.0.0.1:{p}")), "{stdout}");
    }
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    // One server gone: its failure is reported and the exit status is 1.
    drop(a);
    let out = up(&url);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Until its ephemeral node expires the dead server is still listed: it fails.
    assert!(
        out.status.code() == Some(1) || all.lines().count() == 1,
        "{all}"
    );
    // An empty registry path is an error, not silent success.
    zk.mkdir("/zeo/none");
    let out = up(&format!("zookeeper://{}/zeo/none", zk.connection()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no servers registered"));
}
