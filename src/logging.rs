//! The event log: a `log::Log` that writes lines the way runzeo's ZConfig `<eventlog>`
//! does (Python %-style format, `%(asctime)s` in local time with ZConfig's default
//! date format), to a file, STDOUT or STDERR, and reopens its file on request
//! (SIGUSR2, for log rotation).
//!
//! Logger names travel as the `log` target (`ZEO.StorageServer`, `ZEO.runzeo`, ...), so
//! `%(name)s` prints what runzeo users grep for. Invariant: a failing write never
//! panics or stops the server; the line is dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// ZConfig's default format for `<logfile>`.
pub const DEFAULT_FORMAT: &str = "------\n%(asctime)s %(levelname)s %(name)s %(message)s";
/// ZConfig's default `dateformat`.
pub const DEFAULT_DATEFORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Stderr,
    File(PathBuf),
}

impl Destination {
    /// ZConfig's `path` value: `STDOUT`, `STDERR`, or a file path.
    pub fn from_path(path: &str) -> Self {
        match path {
            "STDOUT" => Destination::Stdout,
            "STDERR" => Destination::Stderr,
            p => Destination::File(PathBuf::from(p)),
        }
    }
}

/// One configured handler (a `<logfile>` section).
#[derive(Clone, Debug)]
pub struct Handler {
    pub destination: Destination,
    pub format: String,
    pub dateformat: String,
    pub level: log::LevelFilter,
}

impl Default for Handler {
    fn default() -> Self {
        Handler {
            destination: Destination::Stderr,
            format: DEFAULT_FORMAT.to_string(),
            dateformat: DEFAULT_DATEFORMAT.to_string(),
            level: log::LevelFilter::Info,
        }
    }
}

struct Open {
    handler: Handler,
    file: Option<File>,
}

/// The process-wide event log.
pub struct EventLog {
    handlers: Mutex<Vec<Open>>,
}

static EVENTLOG: OnceLock<EventLog> = OnceLock::new();

fn open_file(dest: &Destination) -> std::io::Result<Option<File>> {
    match dest {
        Destination::File(p) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map(Some),
        _ => Ok(None),
    }
}

/// Install the event log with these handlers (first call wins; later calls replace
/// the handlers). Fails when a log file cannot be opened.
pub fn init(handlers: Vec<Handler>) -> std::io::Result<()> {
    let mut opened = Vec::new();
    for h in handlers {
        let file = open_file(&h.destination).map_err(|e| {
            let what = match &h.destination {
                Destination::File(p) => p.display().to_string(),
                _ => String::new(),
            };
            std::io::Error::new(e.kind(), format!("cannot open log file {what}: {e}"))
        })?;
        opened.push(Open { handler: h, file });
    }
    let max = opened
        .iter()
        .map(|o| o.handler.level)
        .max()
        .unwrap_or(log::LevelFilter::Off);
    let log = EVENTLOG.get_or_init(|| EventLog {
        handlers: Mutex::new(Vec::new()),
    });
    *log.handlers.lock().unwrap_or_else(|p| p.into_inner()) = opened;
    // set_logger fails only if a logger is already installed (ours, or a test's).
    let _ = log::set_logger(log);
    log::set_max_level(max);
    Ok(())
}

/// Reopen every log file (after logrotate moved it away). Errors are reported on
/// standard error and the old file handle is kept.
pub fn reopen() {
    let Some(log) = EVENTLOG.get() else {
        return;
    };
    let mut handlers = log.handlers.lock().unwrap_or_else(|p| p.into_inner());
    for h in handlers.iter_mut() {
        match open_file(&h.handler.destination) {
            Ok(Some(f)) => h.file = Some(f),
            Ok(None) => {}
            Err(e) => eprintln!("cannot reopen log file: {e}"),
        }
    }
}

/// Target prefix that marks an error record as CRITICAL (the `log` crate has no
/// such level): `log::error!(target: "critical:ZEO.StorageServer", ...)` prints
/// `CRITICAL ZEO.StorageServer ...`, as runzeo logs a transaction timeout.
pub const CRITICAL_PREFIX: &str = "critical:";

/// Python's level name and number, and the logger name, of a record.
fn level_and_name<'a>(record: &'a log::Record<'_>) -> (&'static str, &'static str, &'a str) {
    if record.level() == log::Level::Error {
        if let Some(name) = record.target().strip_prefix(CRITICAL_PREFIX) {
            return ("CRITICAL", "50", name);
        }
    }
    let no = match record.level() {
        log::Level::Error => "40",
        log::Level::Warn => "30",
        log::Level::Info => "20",
        log::Level::Debug => "10",
        log::Level::Trace => "5",
    };
    (level_name(record.level()), no, record.target())
}

/// Python's level names (ZConfig levels map onto the `log` crate's five).
pub fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

/// ZConfig's `logging-level` names and numbers to a filter.
pub fn parse_level(text: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter::*;
    let t = text.trim().to_ascii_lowercase();
    Some(match t.as_str() {
        "critical" | "fatal" | "error" => Error,
        "warn" | "warning" => Warn,
        "info" => Info,
        "blather" | "debug" => Debug,
        "trace" | "all" | "notset" => Trace,
        _ => {
            let n: u32 = t.parse().ok()?;
            match n {
                40.. => Error,
                30..=39 => Warn,
                20..=29 => Info,
                10..=19 => Debug,
                _ => Trace,
            }
        }
    })
}

/// Local time formatted with a strftime pattern.
pub fn local_time(fmt: &str, t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    let Ok(cfmt) = std::ffi::CString::new(fmt) else {
        return String::new();
    };
    // SAFETY: localtime_r and strftime write only into the buffers we pass; `tm` is
    // plain data and `buf` is large enough (strftime reports 0 when it is not).
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return String::new();
        }
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cfmt.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Render one record with a Python %-style format.
pub fn render(
    format: &str,
    dateformat: &str,
    record: &log::Record<'_>,
    now: std::time::SystemTime,
) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find("%(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(close) = after.find(')') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let key = &after[..close];
        // Skip the conversion spec (e.g. `s`, `d`, `-8s`): up to the first letter.
        let spec = &after[close + 1..];
        let conv_len = spec
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        let (levelname, levelno, name) = level_and_name(record);
        let value = match key {
            "asctime" => local_time(dateformat, now),
            "levelname" => levelname.to_string(),
            "name" => name.to_string(),
            "message" => record.args().to_string(),
            "process" => std::process::id().to_string(),
            "created" => format!(
                "{:.6}",
                now.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            ),
            "levelno" => levelno.to_string(),
            other => format!("%({other})"),
        };
        // Width and alignment, as Python's %-formatting applies them.
        let flags = &spec[..conv_len.saturating_sub(1)];
        let left = flags.starts_with('-');
        let width: usize = flags.trim_start_matches('-').parse().unwrap_or(0);
        let pad = width.saturating_sub(value.chars().count());
        if left {
            out.push_str(&value);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&value);
        }
        rest = &spec[conv_len..];
    }
    out.push_str(rest);
    out
}

impl log::Log for EventLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let now = std::time::SystemTime::now();
        let mut handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        for h in handlers.iter_mut() {
            if record.level() > h.handler.level {
                continue;
            }
            let mut line = render(&h.handler.format, &h.handler.dateformat, record, now);
            line.push('\n');
            let _ = match (&h.handler.destination, &mut h.file) {
                (Destination::Stdout, _) => std::io::stdout().write_all(line.as_bytes()),
                (Destination::Stderr, _) => std::io::stderr().write_all(line.as_bytes()),
                (Destination::File(_), Some(f)) => f.write_all(line.as_bytes()),
                (Destination::File(_), None) => Ok(()),
            };
        }
    }

    fn flush(&self) {
        let mut handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        for h in handlers.iter_mut() {
            if let Some(f) = &mut h.file {
                let _ = f.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(args: std::fmt::Arguments<'a>) -> log::Record<'a> {
        log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("ZEO.StorageServer")
            .build()
    }

    #[test]
    fn renders_zconfig_default_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let line = render(
            DEFAULT_FORMAT,
            DEFAULT_DATEFORMAT,
            &rec(format_args!("hello {}", 1)),
            t,
        );
        let (dash, rest) = line.split_once('\n').unwrap();
        assert_eq!(dash, "------");
        let (date, msg) = rest.split_once(' ').unwrap();
        assert_eq!(date.len(), 19, "{date}");
        assert_eq!(msg, "INFO ZEO.StorageServer hello 1");
    }

    #[test]
    fn unknown_keys_and_widths() {
        let t = std::time::UNIX_EPOCH;
        let line = render(
            "%(levelname)-8s|%(foo)s|%(message)5s",
            "%Y",
            &rec(format_args!("m")),
            t,
        );
        assert_eq!(line, "INFO    |%(foo)|    m");
    }

    #[test]
    fn critical_prefix_prints_critical_and_the_plain_name() {
        let args = format_args!("Transaction timeout after 1 seconds");
        let r = log::Record::builder()
            .args(args)
            .level(log::Level::Error)
            .target("critical:ZEO.StorageServer")
            .build();
        let line = render(
            "%(levelname)s %(levelno)s %(name)s %(message)s",
            "%Y",
            &r,
            std::time::UNIX_EPOCH,
        );
        assert_eq!(
            line,
            "CRITICAL 50 ZEO.StorageServer Transaction timeout after 1 seconds"
        );
        // Only at error level; elsewhere the prefix is just part of the name.
        let args = format_args!("m");
        let r = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("critical:x")
            .build();
        assert_eq!(
            render("%(levelname)s %(name)s", "%Y", &r, std::time::UNIX_EPOCH),
            "INFO critical:x"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("WARN"), Some(log::LevelFilter::Warn));
        assert_eq!(parse_level("blather"), Some(log::LevelFilter::Debug));
        assert_eq!(parse_level("35"), Some(log::LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
