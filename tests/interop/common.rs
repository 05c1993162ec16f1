//! Shared helpers for interop tests: locating the virtualenvs' Pythons and our binary,
//! running Python snippets with arguments, and starting long-running Python servers
//! (runzeo, or a test server script) that are killed when dropped.
//!
//! Two virtualenvs: the reference one (ZEO 6.2, ZODB 6.4; `$ZEO_TEST_VENV`, else
//! `.venv`) and the ZEO 5.x client one (`$ZEO5_TEST_VENV`, else `.venv-zeo5`). A
//! missing virtualenv fails the test with the command that creates it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `$var`, else `default` in the repository; it must hold bin/python.
fn venv_at(var: &str, default: &str, script: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    let python = dir.join("bin/python");
    assert!(
        python.exists(),
        "interop tests need the Python virtualenv at {} (run `make test` or {script})",
        dir.display()
    );
    dir
}

/// The pinned reference virtualenv: $ZEO_TEST_VENV, else `.venv` in the repository.
pub fn venv() -> PathBuf {
    venv_at("ZEO_TEST_VENV", ".venv", "scripts/setup-venv.sh")
}

/// The pinned ZEO 5.x client virtualenv: $ZEO5_TEST_VENV, else `.venv-zeo5`.
pub fn venv_zeo5() -> PathBuf {
    venv_at("ZEO5_TEST_VENV", ".venv-zeo5", "scripts/setup-venv-zeo5.sh")
}

/// The reference virtualenv's python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// The ZEO 5.x virtualenv's python interpreter.
pub fn python_zeo5() -> PathBuf {
    venv_zeo5().join("bin/python")
}

/// Our `zeo` binary as built for this test run.
pub fn zeo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zeo"))
}

/// A fixture path under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A free loopback TCP port (bound and released; good enough for tests).
pub use crate::server_support::free_port;

/// Run `code` with the reference venv's python and `args` (sys.argv[1:]); panics with
/// stderr when it exits non-zero. Returns stdout.
pub fn run_python(code: &str, args: &[&str]) -> String {
    run_python_with(&python(), code, args)
}

/// [`run_python`] with the given interpreter.
pub fn run_python_with(python: &Path, code: &str, args: &[&str]) -> String {
    let out = python_output_with(python, code, args);
    assert!(
        out.status.success(),
        "python failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed non-UTF-8")
}

/// Run `code` with the reference venv's python; return the raw output whatever the
/// status.
pub fn python_output(code: &str, args: &[&str]) -> Output {
    python_output_with(&python(), code, args)
}

/// [`python_output`] with the given interpreter.
pub fn python_output_with(python: &Path, code: &str, args: &[&str]) -> Output {
    Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .env("TZ", std::env::var("TZ").unwrap_or_else(|_| "UTC".into()))
        .output()
        .expect("cannot run the virtualenv's python")
}

/// A long-running Python process (a server), killed and reaped when dropped.
pub struct PyProcess {
    child: Child,
    what: String,
}

impl PyProcess {
    /// Start the reference venv's python with `args` in `cwd`; its standard error goes
    /// to the file `stderr`, or is discarded; its standard output is discarded, or
    /// piped for [`PyProcess::read_port`] when `pipe_stdout`.
    pub fn spawn(
        what: &str,
        args: &[&std::ffi::OsStr],
        cwd: Option<&Path>,
        stderr: Option<&Path>,
        pipe_stdout: bool,
    ) -> PyProcess {
        let mut cmd = Command::new(python());
        cmd.args(args).stdout(if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        match stderr {
            Some(p) => cmd.stderr(Stdio::from(std::fs::File::create(p).unwrap())),
            None => cmd.stderr(Stdio::null()),
        };
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        PyProcess {
            child,
            what: what.to_string(),
        }
    }

    /// The first line of its standard output, parsed as a port number (servers that
    /// bind port 0 print the port they got).
    pub fn read_port(&mut self) -> u16 {
        let mut line = String::new();
        BufReader::new(self.child.stdout.take().expect("stdout already read"))
            .read_line(&mut line)
            .unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} printed {line:?}, not a port", self.what))
    }

    /// Wait until `port` on 127.0.0.1 accepts connections (30 s at most); panics,
    /// with `log`'s text when given, if the process exits or the time runs out.
    pub fn wait_listening(&mut self, port: u16, log: Option<&Path>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let log_text = || log.map(|p| std::fs::read_to_string(p).unwrap_or_default());
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({st}) before listening: {:?}",
                    self.what,
                    log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start listening: {:?}",
                self.what,
                log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python's runzeo (ZEO 6.2 from the reference venv) on a free loopback port, working
/// in its own temporary directory (relative paths in the storage sections are inside
/// it); its standard error is `runzeo.log` there. Killed on drop.
pub struct RunZeo {
    process: PyProcess,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RunZeo {
    /// Serve `storages` (configuration sections) with `zeo_extra` lines in `<zeo>`.
    pub fn start(zeo_extra: &str, storages: &str) -> RunZeo {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("zeo.conf");
        std::fs::write(
            &conf,
            format!("<zeo>\n  address 127.0.0.1:{port}\n{zeo_extra}\n</zeo>\n{storages}\n"),
        )
        .unwrap();
        let log = dir.path().join("runzeo.log");
        let mut process = PyProcess::spawn(
            "runzeo",
            &[
                "-m".as_ref(),
                "ZEO.runzeo".as_ref(),
                "-C".as_ref(),
                conf.as_os_str(),
            ],
            Some(dir.path()),
            Some(&log),
            false,
        );
        process.wait_listening(port, Some(&log));
        RunZeo { process, port, dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A path inside the server's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}
