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
    // zeo pack resolved the URL to this server and asked it to pack (our server's
    // pack may not be implemented yet: its answer is either success or its error).
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains(&format!("packed storage 1 at 127.0.0.1:{port} in"))
            || all.contains(&format!("Error packing storage 1 at 127.0.0.1:{port}: ")),
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
