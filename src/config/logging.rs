//! `<eventlog>` and its handler sections as ZConfig's logger component defines them:
//! `level`, `<logfile>` (path incl. STDOUT/STDERR, format, dateformat, level, style,
//! rotation keys) and `<syslog>`; format strings checked the way ZConfig checks them.
//!
//! Invariants: formats are stored with their `\n`-style escapes applied; the checks
//! ZConfig's handler factories make at load time (rotation needs old-files, no rotation
//! of STDOUT, ...) are made here, so a config Python rejects is rejected here too.

use super::keys::Keys;
use super::parser::Section;
use super::schema::*;
use super::typed::{check_unique_names, misplaced};
use super::units::{self, Host};
use super::ConfigError;
use std::path::PathBuf;

const DEFAULT_LOGFILE_FORMAT: &str = "------\n%(asctime)s %(levelname)s %(name)s %(message)s";
const DEFAULT_DATEFORMAT: &str = "%Y-%m-%dT%H:%M:%S";
const COMMON_KEYS: &[&str] = &[
    "formatter",
    "dateformat",
    "level",
    "style",
    "arbitrary-fields",
];

/// `<eventlog>`.
pub fn eventlog(
    s: &Section,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<EventLogConfig, ConfigError> {
    logger_section(s, host, warnings)
}

/// `<eventlog>` or (inside `<runner>`) `<logger>`.
pub fn logger_section(
    s: &Section,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<EventLogConfig, ConfigError> {
    let allowed: &[&str] = if s.type_ == "logger" {
        &["level", "propagate", "name"]
    } else {
        &["level"]
    };
    let k = Keys::new(s, allowed)?;
    if s.type_ == "logger" {
        k.get("propagate", units::boolean)?;
        k.get("name", |v| dotted_name(v).map(|_| ()))?;
    }
    check_unique_names(s)?;
    let level = k.or("level", 20, units::logging_level)?;
    let mut handlers = Vec::new();
    for c in &s.sections {
        match c.type_.as_str() {
            "logfile" => handlers.push(LogHandler::File(logfile(c, host, warnings)?)),
            "syslog" => handlers.push(LogHandler::Syslog(syslog(c, warnings)?)),
            "win32-eventlog" | "http-logger" | "email-notifier" => {
                return Err(c.pos.error(
                    None,
                    format!(
                        "log handler {} is not supported by zeo serve \
                         (use <logfile> or <syslog>)",
                        c.label()
                    ),
                ))
            }
            _ => return Err(misplaced(c, s)),
        }
    }
    Ok(EventLogConfig { level, handlers })
}

fn dotted_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.split('.').all(|p| {
            let mut cs = p.chars();
            cs.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("not a valid dotted name: {}", units::py_repr(v)))
    }
}

/// ZConfig's `escaped_string`: `\n`, `\t`, `\b`, `\f`, `\r` become control characters.
pub fn escaped_string(v: &str) -> String {
    v.replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\b", "\u{8}")
        .replace("\\f", "\u{c}")
        .replace("\\r", "\r")
}

fn style(v: &str) -> Result<LogStyle, String> {
    match v.to_lowercase().as_str() {
        "classic" => Ok(LogStyle::Classic),
        "format" => Ok(LogStyle::Format),
        "template" => Ok(LogStyle::Template),
        "safe-template" => Ok(LogStyle::SafeTemplate),
        _ => Err(format!(
            "log_format_style must be one of 'classic', 'format', 'safe-template', \
             'template'; found {}",
            units::py_repr(v)
        )),
    }
}

/// Attributes of a Python `LogRecord` a format may use, and whether they are numbers.
const RECORD_FIELDS: &[(&str, bool)] = &[
    ("name", false),
    ("msg", false),
    ("args", false),
    ("levelname", false),
    ("levelno", true),
    ("pathname", false),
    ("filename", false),
    ("module", false),
    ("exc_info", false),
    ("exc_text", false),
    ("stack_info", false),
    ("lineno", true),
    ("funcName", false),
    ("created", true),
    ("msecs", true),
    ("relativeCreated", true),
    ("thread", true),
    ("threadName", false),
    ("processName", false),
    ("process", true),
    ("message", false),
    ("asctime", false),
];

/// Check a classic (`%`-style) format the way formatting a sample record would.
pub fn check_classic_format(fmt: &str, arbitrary_fields: bool) -> Result<(), String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            i += 1;
            continue;
        }
        i += 1;
        if chars.get(i) == Some(&'%') {
            i += 1;
            continue;
        }
        if chars.get(i) != Some(&'(') {
            return Err("format requires named placeholders like %(message)s".into());
        }
        // Python allows nested parentheses in the key.
        let mut depth = 1;
        let start = i + 1;
        i += 1;
        while i < chars.len() && depth > 0 {
            match chars[i] {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        if depth > 0 {
            return Err("incomplete format key".into());
        }
        let name: String = chars[start..i - 1].iter().collect();
        while i < chars.len() && "#0- +".contains(chars[i]) {
            i += 1;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
        while i < chars.len() && "hlL".contains(chars[i]) {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            return Err("incomplete format".into());
        };
        i += 1;
        let numeric_conv = "diouxXeEfFgGc".contains(conv);
        if !numeric_conv && !"rsa".contains(conv) {
            return Err(format!("unsupported format character '{conv}'"));
        }
        let is_number = match RECORD_FIELDS.iter().find(|(n, _)| *n == name) {
            Some((_, num)) => *num,
            None if arbitrary_fields => true,
            None => return Err(format!("unknown log record field '{name}'")),
        };
        if numeric_conv && !is_number {
            return Err(format!("%{conv} needs a number, but '{name}' is text"));
        }
    }
    Ok(())
}

fn common(
    s: &Section,
    k: &Keys,
    default_format: &str,
    warnings: &mut Vec<String>,
) -> Result<HandlerCommon, ConfigError> {
    let format = k
        .string("format")
        .map(|f| escaped_string(&f))
        .unwrap_or_else(|| default_format.to_string());
    let style = k.or("style", LogStyle::Classic, style)?;
    let arbitrary_fields = k.or("arbitrary-fields", false, units::boolean)?;
    if style == LogStyle::Classic {
        let effective = if format.is_empty() {
            "%(message)s"
        } else {
            &format
        };
        check_classic_format(effective, arbitrary_fields)
            .map_err(|m| k.error("format", format!("invalid log format: {m}")))?;
    }
    let formatter = k.get("formatter", dotted_name)?;
    if let (Some(f), Some(kv)) = (&formatter, k.raw("formatter")) {
        warnings.push(format!(
            "{}:{}: {} formatter {f} is a Python class; zeo serve uses its own formatter",
            kv.pos.file.display(),
            kv.pos.line,
            s.label()
        ));
    }
    Ok(HandlerCommon {
        format,
        dateformat: k
            .string("dateformat")
            .unwrap_or_else(|| DEFAULT_DATEFORMAT.to_string()),
        level: k.or("level", 0, units::logging_level)?,
        style,
        arbitrary_fields,
        formatter,
    })
}

fn with_common<'a>(specific: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = COMMON_KEYS.to_vec();
    v.extend_from_slice(specific);
    v
}

fn logfile(
    s: &Section,
    _host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Result<LogFileConfig, ConfigError> {
    let k = Keys::new(
        s,
        &with_common(&[
            "path",
            "old-files",
            "max-size",
            "when",
            "interval",
            "format",
            "encoding",
            "delay",
        ]),
    )?;
    if let Some(c) = s.sections.first() {
        return Err(misplaced(c, s));
    }
    let path_s = k.required("path", |v| Ok(v.to_string()))?;
    let common = common(s, &k, DEFAULT_LOGFILE_FORMAT, warnings)?;
    let old_files = k.or("old-files", 0, units::py_int)?;
    let max_size = k.or("max-size", 0, units::byte_size)?;
    let when = k.string("when").unwrap_or_default();
    let interval = k.or("interval", 0, units::py_int)?;
    let encoding = k.string("encoding");
    let delay = k.or("delay", false, units::boolean)?;
    let path = match path_s.as_str() {
        "STDOUT" => LogPath::Stdout,
        "STDERR" => LogPath::Stderr,
        p => LogPath::File(PathBuf::from(p)),
    };
    let bad = |m: String| Err(k.error("path", m));
    if !matches!(path, LogPath::File(_)) {
        if max_size != 0 || old_files != 0 || !when.is_empty() {
            return bad(format!("cannot rotate {path_s}"));
        }
        if delay {
            return bad(format!("cannot delay opening {path_s}"));
        }
        if encoding.as_deref().is_some_and(|e| !e.is_empty()) {
            return bad(format!("cannot specify encoding for {path_s}"));
        }
    } else if !when.is_empty() || max_size != 0 || old_files != 0 || interval != 0 {
        if old_files == 0 {
            return Err(k.error("old-files", "old-files must be set for log rotation"));
        }
        if !when.is_empty() && max_size != 0 {
            return Err(k.error("when", "can't set both max-size and when"));
        }
        if when.is_empty() && max_size == 0 {
            return Err(k.error("max-size", "max-size or when must be set for log rotation"));
        }
    }
    Ok(LogFileConfig {
        path,
        common,
        old_files,
        max_size,
        when,
        interval,
        encoding,
        delay,
    })
}

const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "kern", "lpr", "mail", "news", "security", "syslog",
    "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

fn syslog(s: &Section, warnings: &mut Vec<String>) -> Result<SyslogConfig, ConfigError> {
    let k = Keys::new(s, &with_common(&["facility", "address", "format"]))?;
    if let Some(c) = s.sections.first() {
        return Err(misplaced(c, s));
    }
    let common = common(s, &k, "%(name)s %(message)s", warnings)?;
    let facility = k.or("facility", "user".to_string(), |v| {
        let v = v.to_lowercase();
        if FACILITIES.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(format!(
                "Syslog facility must be one of {}",
                FACILITIES.join(", ")
            ))
        }
    })?;
    let address = k.or(
        "address",
        units::ListenAddress::Tcp {
            host: "localhost".into(),
            port: 514,
        },
        units::socket_binding_address,
    )?;
    Ok(SyslogConfig {
        common,
        facility,
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_formats() {
        let ok = |f: &str| check_classic_format(f, false).is_ok();
        assert!(ok(DEFAULT_LOGFILE_FORMAT));
        assert!(ok("%(levelno)3d %(created)f %(message)-20s 100%%"));
        assert!(ok("plain text"));
        assert!(!ok("%s"));
        assert!(!ok("%(nosuch)s"));
        assert!(check_classic_format("%(nosuch)s", true).is_ok());
        assert!(!ok("%(name)d"));
        assert!(!ok("%(message)"));
        assert!(!ok("%(message)y"));
        assert!(!ok("%(message"));
    }

    #[test]
    fn escapes() {
        assert_eq!(escaped_string(r"a\nb\tc\\d"), "a\nb\tc\\\\d");
    }
}
