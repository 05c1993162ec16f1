//! A private ZooKeeper server for tests (Debian's `zookeeper` package, installed by
//! scripts/setup-zookeeper.sh): its own data dir and config, a free loopback port,
//! stopped (killed) on drop. Never the system service. Also a TCP proxy that can cut
//! the link, to make a session expire while ZooKeeper stays up.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const JARS: &[&str] = &["/usr/share/java/zookeeper.jar"];

/// A logger binding, when present, so zookeeper.log says why a server misbehaved.
const LOGGER: &str = "/usr/share/java/slf4j-simple.jar";

/// Where the package puts the server; panics with the fix when missing.
fn classpath() -> String {
    let mut cp = Vec::new();
    for j in JARS {
        assert!(
            Path::new(j).exists(),
            "ZooKeeper is not installed ({j} missing): run scripts/setup-zookeeper.sh (make test does)"
        );
        cp.push(*j);
    }
    if Path::new(LOGGER).exists() {
        cp.push(LOGGER);
    }
    cp.join(":")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

pub struct ZkServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ZkServer {
    /// Start on a free port; waits until it answers.
    pub fn start() -> ZkServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = ZkServer {
            port: free_port(),
            dir,
            child: None,
        };
        s.launch();
        s
    }

    /// `127.0.0.1:PORT`.
    pub fn connection(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(&mut self) {
        let cfg = self.dir.path().join("zoo.cfg");
        std::fs::create_dir_all(self.data_dir()).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 minSessionTimeout=1000\nmaxSessionTimeout=30000\nadmin.enableServer=false\n",
                self.data_dir().display(),
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("zookeeper.log")).unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx96m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                &classpath(),
                "org.apache.zookeeper.server.ZooKeeperServerMain",
            ])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run java for ZooKeeper");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Wait until a session can be established (`ruok` says `imok` before the server
    /// serves sessions, so it is not enough).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let opts = zeo::zookeeper::Options {
            session_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        };
        loop {
            if let Ok(c) = zeo::zookeeper::ZooKeeper::connect(&self.connection(), opts.clone()) {
                c.close();
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("ZooKeeper exited ({st}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default()
    }

    /// Kill the server (SIGKILL: no clean session close).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port; `wipe` loses all data (sessions and nodes).
    pub fn restart(&mut self, wipe: bool) {
        self.stop();
        if wipe {
            let _ = std::fs::remove_dir_all(self.data_dir());
        }
        self.launch();
    }

    /// A session of the crate's own client.
    pub fn client(&self) -> zeo::zookeeper::ZooKeeper {
        match zeo::zookeeper::ZooKeeper::connect(&self.connection(), Default::default()) {
            Ok(c) => c,
            Err(e) => panic!("connect to test ZooKeeper: {e}\n{}", self.log()),
        }
    }

    /// Create a persistent node with the crate's own client.
    pub fn mkdir(&self, path: &str) {
        let zk = self.client();
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if zk.exists(&cur).unwrap().is_none() {
                zk.create(
                    &cur,
                    b"",
                    zeo::zookeeper::jute::Acl::world_all(),
                    zeo::zookeeper::jute::PERSISTENT,
                )
                .unwrap();
            }
        }
        zk.close();
    }

    /// Children of `path` as seen by a fresh session.
    pub fn children(&self, path: &str) -> Vec<String> {
        let zk = self.client();
        let c = zk.get_children(path).unwrap();
        zk.close();
        c
    }

    /// Poll `children(path)` until `pred` holds or `timeout` passes.
    pub fn wait_children(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.children(path);
            if pred(&c) || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP proxy to a ZooKeeper server whose link can be cut (all
/// connections closed, new ones refused) and restored.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                if c2.load(Ordering::SeqCst) {
                    let _ = s.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                {
                    let mut k = k2.lock().unwrap();
                    k.push(s.try_clone().unwrap());
                    k.push(up.try_clone().unwrap());
                }
                pump(s.try_clone().unwrap(), up.try_clone().unwrap());
                pump(up, s);
            }
        });
        Proxy { port, cut, conns }
    }

    pub fn connection(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
