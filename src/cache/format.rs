//! Formatting exactly as the Python tools print (spec §7): `time.ctime` in local time
//! (C library `localtime_r`, so `TZ`, DST and half-hour zones behave as in Python),
//! thousands separators, `cache_simul`'s durations, and Python `repr` of bytes and str.
//!
//! Invariant: every function here is total (no panics) for any input value.

use std::fmt::Write as _;
use std::sync::Once;

/// Broken-down time, as the C library returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    /// 0 = January.
    pub mon: u32,
    pub mday: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// 0 = Sunday.
    pub wday: u32,
}

static TZSET: Once = Once::new();

extern "C" {
    /// POSIX `tzset` (not exported by the libc crate): loads the zone named by `TZ`.
    fn tzset();
}

fn from_libc(tm: &nix::libc::tm) -> Tm {
    Tm {
        year: i64::from(tm.tm_year) + 1900,
        mon: tm.tm_mon.clamp(0, 11) as u32,
        mday: tm.tm_mday.clamp(0, 31) as u32,
        hour: tm.tm_hour.clamp(0, 23) as u32,
        min: tm.tm_min.clamp(0, 59) as u32,
        sec: tm.tm_sec.clamp(0, 60) as u32,
        wday: tm.tm_wday.clamp(0, 6) as u32,
    }
}

/// Local time of `ts` under the process's `TZ`, like Python's `time.localtime`.
pub fn localtime(ts: i64) -> Tm {
    TZSET.call_once(|| {
        // SAFETY: tzset only reads the environment and initialises libc's zone state;
        // it is called once, before any localtime_r of ours.
        unsafe { tzset() }
    });
    let t = ts as nix::libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer).
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is
    // the reentrant variant and writes only into `tm`.
    let ok = unsafe { !nix::libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        from_libc(&tm)
    } else {
        utctime(ts)
    }
}

/// UTC broken-down time of `ts` (proleptic Gregorian, no C library involved).
pub fn utctime(ts: i64) -> Tm {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Tm {
        year: y,
        mon: (m - 1) as u32,
        mday: d as u32,
        hour: (secs / 3600) as u32,
        min: (secs / 60 % 60) as u32,
        sec: (secs % 60) as u32,
        wday: (days + 4).rem_euclid(7) as u32,
    }
}

const WDAY: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MON: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Python's `time.ctime` of a broken-down time: `Www Mmm dd hh:mm:ss yyyy` with a
/// space-padded day.
pub fn asctime(tm: &Tm) -> String {
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}",
        WDAY[tm.wday as usize % 7],
        MON[tm.mon as usize % 12],
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        tm.year
    )
}

/// `time.ctime(ts)` in local time.
pub fn ctime(ts: i64) -> String {
    asctime(&localtime(ts))
}

/// A `ctime` that remembers the last second it formatted (traces have long runs of
/// records within one second).
#[derive(Default)]
pub struct CtimeCache {
    last: Option<(i64, String)>,
}

impl CtimeCache {
    pub fn get(&mut self, ts: i64) -> &str {
        if self.last.as_ref().map(|(t, _)| *t) != Some(ts) {
            self.last = Some((ts, ctime(ts)));
        }
        match &self.last {
            Some((_, s)) => s,
            None => "",
        }
    }
}

/// Python slice `s[a:len-b]` on an ASCII string, empty when out of range.
pub fn slice(s: &str, a: usize, from_end: usize) -> &str {
    let end = s.len().saturating_sub(from_end);
    s.get(a..end.max(a)).unwrap_or("")
}

/// `ctime(ts)[4:-5]`: `Mar  8 06:41:31`.
pub fn ctime_mid(s: &str) -> &str {
    slice(s, 4, 5)
}

/// `ctime(ts)[4:-8]`: `Mar  8 06:41`.
pub fn ctime_minute(s: &str) -> &str {
    slice(s, 4, 8)
}

/// `ctime(ts)[14:-8]`: the minutes, `41`.
pub fn ctime_minutes_only(s: &str) -> &str {
    slice(s, 14, 8)
}

/// Thousands separators: `1234567` → `1,234,567`, `-1234` → `-1,234`.
pub fn commas(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    let first = digits.len() % 3;
    for (i, ch) in digits.chars().enumerate() {
        if i != 0 && (i + 3 - first).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `cache_simul`'s duration: `h:mm:ss`, `m:ss` or plain seconds, with floor semantics
/// for negative values (−5 → `-1:59:55`).
pub fn duration(secs: i64) -> String {
    let (mm, ss) = (secs.div_euclid(60), secs.rem_euclid(60));
    let (hh, mm) = (mm.div_euclid(60), mm.rem_euclid(60));
    if hh != 0 {
        format!("{hh}:{mm:02}:{ss:02}")
    } else if mm != 0 {
        format!("{mm}:{ss:02}")
    } else {
        format!("{ss}")
    }
}

/// `100.0 * a / b` in double precision, as Python computes percentages.
pub fn percent(a: u64, b: u64) -> f64 {
    100.0 * a as f64 / b as f64
}

/// Python's `repr` of a bytes object: `b''`, `b'abc'`, `b'\x00'`, `b"'"`.
pub fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if char::from(c) == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(char::from(c)),
            c => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push(quote);
    s
}

/// Python's `repr` of a str (for argparse messages): single quotes unless the text has
/// a single quote and no double quote.
pub fn py_str_repr(t: &str) -> String {
    let quote = if t.contains('\'') && !t.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(t.len() + 2);
    s.push(quote);
    for c in t.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c if c == quote => {
                s.push('\\');
                s.push(quote);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(s, "\\x{:02x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push(quote);
    s
}

/// Python's `float()` of a command-line string: surrounding whitespace allowed,
/// underscores between digits, `inf`/`infinity`/`nan` in any case.
pub fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let b = t.as_bytes();
    let mut cleaned = String::with_capacity(t.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
            continue;
        }
        cleaned.push(char::from(c));
    }
    let lower = cleaned.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if body.len() + 1 < lower.len() {
        return None; // more than one sign
    }
    match body {
        "inf" | "infinity" | "nan" => {}
        _ if body.starts_with("inf") || body.starts_with("nan") => return None,
        _ => {}
    }
    cleaned.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_like_python() {
        assert_eq!(commas(0), "0");
        assert_eq!(commas(999), "999");
        assert_eq!(commas(1000), "1,000");
        assert_eq!(commas(1_234_567), "1,234,567");
        assert_eq!(commas(-1234), "-1,234");
        assert_eq!(commas(314_572), "314,572");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0");
        assert_eq!(duration(28), "28");
        assert_eq!(duration(197), "3:17");
        assert_eq!(duration(9001), "2:30:01");
        assert_eq!(duration(-5), "-1:59:55");
    }

    #[test]
    fn utc_ctime() {
        assert_eq!(asctime(&utctime(1_772_952_091)), "Sun Mar  8 06:41:31 2026");
        assert_eq!(asctime(&utctime(0)), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(&utctime(-1)), "Wed Dec 31 23:59:59 1969");
        assert_eq!(asctime(&utctime(4_294_967_295)), "Sun Feb  7 06:28:15 2106");
    }

    #[test]
    fn slices() {
        let s = "Sun Mar  8 06:41:31 2026";
        assert_eq!(ctime_mid(s), "Mar  8 06:41:31");
        assert_eq!(ctime_minute(s), "Mar  8 06:41");
        assert_eq!(ctime_minutes_only(s), "41");
        assert_eq!(slice("ab", 4, 5), "");
    }

    #[test]
    fn reprs() {
        assert_eq!(py_bytes_repr(b""), "b''");
        assert_eq!(py_bytes_repr(b"ab\x00\xff"), "b'ab\\x00\\xff'");
        assert_eq!(py_bytes_repr(b"'"), "b\"'\"");
        assert_eq!(py_bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(py_str_repr("x y"), "'x y'");
        assert_eq!(py_str_repr("it's"), "\"it's\"");
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(py_float(" 1.5 "), Some(1.5));
        assert_eq!(py_float("1_0"), Some(10.0));
        assert_eq!(py_float("1__0"), None);
        assert_eq!(py_float("_1"), None);
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(py_float("nan").is_some_and(f64::is_nan));
        assert_eq!(py_float("abc"), None);
        assert_eq!(py_float(""), None);
        assert_eq!(py_float("--1"), None);
        assert_eq!(py_float("infx"), None);
    }
}
