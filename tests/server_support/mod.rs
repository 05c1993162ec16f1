//! Starting the real `zeo serve` binary for tests: a configuration in a temporary
//! directory, a free loopback port, readiness by polling the port, SIGTERM on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn zeo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zeo"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `zeo serve`; stopped (SIGTERM, then kill) on drop.
pub struct ZeoServer {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
}

impl ZeoServer {
    /// Serve `storages` (configuration sections) with `zeo_extra` lines in `<zeo>`,
    /// inside `dir` (the server's working directory).
    pub fn start(dir: &Path, zeo_extra: &str, storages: &str) -> ZeoServer {
        Self::start_env(dir, zeo_extra, storages, &[])
    }

    /// [`ZeoServer::start`] with extra environment variables.
    pub fn start_env(
        dir: &Path,
        zeo_extra: &str,
        storages: &str,
        env: &[(&str, &str)],
    ) -> ZeoServer {
        let port = free_port();
        let conf = dir.join("zeo.conf");
        std::fs::write(
            &conf,
            format!("<zeo>\n  address 127.0.0.1:{port}\n{zeo_extra}\n</zeo>\n{storages}\n"),
        )
        .unwrap();
        let mut s = ZeoServer {
            child: None,
            port,
            dir: dir.to_path_buf(),
            conf,
            log: dir.join("server.log"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// (Re)start the process with the same configuration and port.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(zeo_bin())
            .arg("serve")
            .arg("-C")
            .arg(&self.conf)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for ZeoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "zeo serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
