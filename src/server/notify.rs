//! systemd readiness notification (`sd_notify`): datagrams such as `READY=1`,
//! `STATUS=...`, `EXTEND_TIMEOUT_USEC=...` and `STOPPING=1` sent to `$NOTIFY_SOCKET`
//! (a socket path, or `@name` in the abstract namespace).
//!
//! Invariant: without NOTIFY_SOCKET every call is a no-op; a failing send is logged and
//! never stops the server. Progress reports are throttled ([`OpenProgress`]): at
//! most one datagram per [`PROGRESS_INTERVAL`] besides a scan's first and last.

use crate::storage::filestorage::open::OpenStep;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two progress datagrams of one scan.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How far each progress report pushes systemd's start timeout (EXTEND_TIMEOUT_USEC).
pub const PROGRESS_EXTEND: Duration = Duration::from_secs(60);

/// The STATUS= text of a step of opening a FileStorage.
pub fn progress_text(storage: &str, file: &str, step: OpenStep) -> String {
    let p = match step {
        OpenStep::LoadingIndex { bytes } => {
            return format!(
                "Opening storage {storage:?}: loading the index of {file} ({bytes} bytes)"
            )
        }
        OpenStep::WritingIndex => {
            return format!("Opening storage {storage:?}: writing the rebuilt index of {file}")
        }
        OpenStep::Scanning(p) => p,
    };
    let percent = (p.done as u128 * 100)
        .checked_div(p.total as u128)
        .unwrap_or(100);
    let what = if p.rebuilding {
        "rebuilding the index of"
    } else {
        "scanning past the index of"
    };
    format!(
        "Opening storage {storage:?}: {what} {file}: {} of {} bytes ({percent}%)",
        p.done, p.total
    )
}

/// The datagram of one progress report: STATUS= and EXTEND_TIMEOUT_USEC=.
pub fn progress_datagram(storage: &str, file: &str, step: OpenStep) -> String {
    format!(
        "STATUS={}\nEXTEND_TIMEOUT_USEC={}",
        progress_text(storage, file, step),
        PROGRESS_EXTEND.as_micros()
    )
}

/// Throttled STATUS= reports of the storages' open scans; remembers whether any
/// was sent (so READY=1 can replace the last progress line with a final status).
#[derive(Default)]
pub struct OpenProgress {
    last: Mutex<Option<Instant>>,
    sent: AtomicBool,
}

impl OpenProgress {
    /// Report `p` of storage `storage` (file `file`) unless one was sent too recently.
    pub fn report(&self, storage: &str, file: &str, step: OpenStep) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let edge = match step {
                OpenStep::Scanning(p) => p.done == 0 || p.done >= p.total,
                OpenStep::LoadingIndex { .. } | OpenStep::WritingIndex => true,
            };
            if !edge && last.is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        log::info!(target: "ZEO.runzeo", "{}", progress_text(storage, file, step));
        if notify(&progress_datagram(storage, file, step)) {
            self.sent.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a progress datagram was delivered.
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Send one notification; returns whether it was delivered.
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let target = target.to_string_lossy().into_owned();
    match send(&target, state) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(target: "ZEO.runzeo", "cannot notify systemd at {target}: {e}");
            false
        }
    }
}

fn send(target: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::filestorage::open::ScanProgress;

    #[test]
    fn progress_lines() {
        let p = OpenStep::Scanning(ScanProgress {
            rebuilding: true,
            done: 50,
            total: 200,
        });
        assert_eq!(
            progress_datagram("1", "Data.fs", p),
            "STATUS=Opening storage \"1\": rebuilding the index of Data.fs: 50 of 200 \
             bytes (25%)\nEXTEND_TIMEOUT_USEC=60000000"
        );
        let empty = OpenStep::Scanning(ScanProgress {
            rebuilding: false,
            done: 0,
            total: 0,
        });
        assert_eq!(
            progress_text("1", "D.fs", OpenStep::LoadingIndex { bytes: 99 }),
            "Opening storage \"1\": loading the index of D.fs (99 bytes)"
        );
        assert_eq!(
            progress_text("1", "D.fs", OpenStep::WritingIndex),
            "Opening storage \"1\": writing the rebuilt index of D.fs"
        );
        assert!(progress_text("a", "b", empty)
            .ends_with("scanning past the index of b: 0 of 0 bytes (100%)"));
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("zeo-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
