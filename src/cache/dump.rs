//! `zeo trace`: one readable line per record, with filters (oid, code, time range) and
//! `--follow` for a trace that is still being written (spec §8).
//!
//! Line formats: `line` (default) is
//! `YYYY-MM-DD HH:MM:SS CODE OID TID1 TID2 V|- DLEN  EVENT`; `stats` is exactly the
//! per-record line of `cache_stats -v`, so the two can be compared line by line. With
//! `offsets`, each line is prefixed by the record's byte offset and raw code byte, and
//! oids that are not 8 bytes long get their length; misaligned heads are listed too.
//!
//! Invariants: filters never change which bytes are read or how records are aligned,
//! only which lines are printed; `--follow` keeps a partial record buffered until the
//! rest of it arrives and starts over if the file is truncated.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::time::Duration;

use super::format::{self, py_bytes_repr, Tm};
use super::reader::{self, Item, Realign, Source, TraceReader};
use super::record::{explain, Record};
use super::TraceError;

/// Output line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LineFormat {
    /// Date, time, code, oid, tids, version mark, data length and event name.
    #[default]
    Line,
    /// Exactly `cache_stats -v`'s record line.
    Stats,
}

/// Filters and presentation of `zeo trace`.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    pub utc: bool,
    pub format: LineFormat,
    pub offsets: bool,
    /// Oids to show (raw bytes); empty = all.
    pub oids: Vec<Vec<u8>>,
    /// Masked codes to show; empty = all.
    pub codes: Vec<u8>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub follow: bool,
    /// Poll interval of `--follow`.
    pub poll: Duration,
}

impl DumpOptions {
    fn wants(&self, r: &Record<'_>) -> bool {
        (self.oids.is_empty() || self.oids.iter().any(|o| o == r.oid))
            && (self.codes.is_empty() || self.codes.contains(&r.code()))
            && self.since.is_none_or(|s| i64::from(r.ts) >= s)
            && self.until.is_none_or(|u| i64::from(r.ts) <= u)
    }
}

/// Parse an oid given in hex (`0x1a`, `1a`, `000000000000001a`) as 8 big-endian bytes.
pub fn parse_oid(s: &str) -> Result<Vec<u8>, String> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if h.is_empty() || h.len() > 16 {
        return Err(format!("invalid oid {s:?}: expected up to 16 hex digits"));
    }
    u64::from_str_radix(h, 16)
        .map(|v| v.to_be_bytes().to_vec())
        .map_err(|_| format!("invalid oid {s:?}: expected up to 16 hex digits"))
}

/// Parse an event code in hex (`22`, `0x52`); it is compared after masking with 0x7e.
pub fn parse_code(s: &str) -> Result<u8, String> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    match u8::from_str_radix(h, 16) {
        Ok(c) if c & 0x81 == 0 => Ok(c),
        Ok(c) => Err(format!(
            "code {c:02x} can never match: codes are even and below 0x80"
        )),
        Err(_) => Err(format!(
            "invalid code {s:?}: expected two hex digits, e.g. 22"
        )),
    }
}

/// Parse a time: epoch seconds, or `YYYY-MM-DD[(T| )HH:MM[:SS]]` in local time (UTC
/// when `utc`).
pub fn parse_time(s: &str, utc: bool) -> Result<i64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("time {s:?} is out of range"));
    }
    let bad = || format!("invalid time {s:?}: use epoch seconds or YYYY-MM-DD[THH:MM[:SS]]");
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.map(|t| t.split(':').collect()).unwrap_or_default();
    if d.len() != 3 || !(t.is_empty() || t.len() == 2 || t.len() == 3) {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (year, mon, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let hour = t.first().map_or(Ok(0), |x| num(x))?;
    let min = t.get(1).map_or(Ok(0), |x| num(x))?;
    let sec = t.get(2).map_or(Ok(0), |x| num(x))?;
    if !(1..=12).contains(&mon)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&min)
        || !(0..=60).contains(&sec)
    {
        return Err(bad());
    }
    if utc {
        Ok(days_from_civil(year, mon, day) * 86_400 + hour * 3600 + min * 60 + sec)
    } else {
        mktime_local(year, mon, day, hour, min, sec).ok_or_else(bad)
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn mktime_local(year: i64, mon: i64, day: i64, hour: i64, min: i64, sec: i64) -> Option<i64> {
    // Make sure TZ has been read (format::localtime calls tzset once).
    let _ = format::localtime(0);
    // SAFETY: an all-zero `tm` is a valid value.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(year - 1900).ok()?;
    tm.tm_mon = (mon - 1) as i32;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = min as i32;
    tm.tm_sec = sec as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, initialised struct owned by us.
    let t = unsafe { nix::libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

struct Printer<'a> {
    o: &'a DumpOptions,
    last_ts: Option<i64>,
    time: String,
    line: String,
}

impl Printer<'_> {
    fn time_of(&mut self, ts: i64) -> &str {
        if self.last_ts != Some(ts) {
            let tm: Tm = if self.o.utc {
                format::utctime(ts)
            } else {
                format::localtime(ts)
            };
            self.time = match self.o.format {
                LineFormat::Line => format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    tm.year,
                    tm.mon + 1,
                    tm.mday,
                    tm.hour,
                    tm.min,
                    tm.sec
                ),
                LineFormat::Stats => format::ctime_mid(&format::asctime(&tm)).to_string(),
            };
            self.last_ts = Some(ts);
        }
        &self.time
    }

    fn record(&mut self, offset: u64, r: &Record<'_>, out: &mut dyn Write) -> io::Result<()> {
        let time = self.time_of(i64::from(r.ts)).to_string();
        let o = self.o;
        let line = &mut self.line;
        line.clear();
        if o.offsets {
            let _ = write!(line, "{offset:>12} {:02x} ", r.raw_code());
        }
        let oid = match r.oid_u64() {
            Some(v) => format!("{v:16x}"),
            None => py_bytes_repr(r.oid),
        };
        let v = if r.has_version() { 'V' } else { '-' };
        let code = r.code();
        let _ = write!(
            line,
            "{time} {code:02x} {oid} {:016x} {:016x} {v}",
            r.tid1, r.tid2
        );
        match o.format {
            LineFormat::Stats => {
                if r.dlen() != 0 {
                    let _ = write!(line, " {}", r.dlen());
                }
            }
            LineFormat::Line => {
                let _ = write!(
                    line,
                    " {:>7}  {}",
                    r.dlen(),
                    explain(code).unwrap_or("*** unknown code ***")
                );
            }
        }
        if o.offsets && r.oid.len() != 8 {
            let _ = write!(line, " (oid length {})", r.oid.len());
        }
        line.push('\n');
        out.write_all(line.as_bytes())
    }
}

/// Print the records of `src` that pass the filters.
pub fn dump(
    src: &Source,
    o: &DumpOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), TraceError> {
    let name = src.display_name();
    let io_err = |e: io::Error| TraceError::Io {
        path: name.clone(),
        source: e,
    };
    let follow_path = match (o.follow, src) {
        (true, Source::Plain(p)) => Some(p.clone()),
        _ => None,
    };
    let mut reader = TraceReader::new(src.open().map_err(io_err)?, Realign::Resync);
    let mut p = Printer {
        o,
        last_ts: None,
        time: String::new(),
        line: String::with_capacity(128),
    };
    loop {
        loop {
            let item = match reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    return Err(TraceError::Format {
                        path: name.clone(),
                        offset: reader.bytes_read(),
                        what: format!("cannot read further: {e}"),
                    })
                }
            };
            match item {
                Item::Record { offset, rec } => {
                    if o.wants(&rec) {
                        p.record(offset, &rec, out).map_err(io_err)?;
                    }
                }
                Item::Misaligned { offset } => {
                    if o.offsets {
                        writeln!(out, "{offset:>12} -- zero timestamp: skipping 8 bytes")
                            .map_err(io_err)?;
                    }
                }
            }
        }
        let Some(path) = &follow_path else {
            return out.flush().map_err(io_err);
        };
        out.flush().map_err(io_err)?;
        std::thread::sleep(o.poll);
        let len = std::fs::metadata(path).map_err(io_err)?.len();
        if len < reader.bytes_read() {
            writeln!(
                err,
                "zeo trace: {name}: file shrank to {len} bytes; reading it again from the start"
            )
            .map_err(io_err)?;
            let f: Box<dyn Read> = Box::new(reader::open_file(path).map_err(io_err)?);
            reader = TraceReader::new(f, Realign::Resync);
        } else {
            reader.clear_eof();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        assert_eq!(parse_oid("0x1a").unwrap(), 26u64.to_be_bytes());
        assert_eq!(parse_oid("000000000000001a").unwrap(), 26u64.to_be_bytes());
        assert!(parse_oid("12345678901234567").is_err());
        assert!(parse_oid("zz").is_err());
        assert_eq!(parse_code("22"), Ok(0x22));
        assert_eq!(parse_code("0x52"), Ok(0x52));
        assert!(parse_code("23").is_err());
        assert!(parse_code("x").is_err());
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("1772952091", true), Ok(1_772_952_091));
        assert_eq!(parse_time("2026-03-08T06:41:31", true), Ok(1_772_952_091));
        assert_eq!(parse_time("2026-03-08 06:41", true), Ok(1_772_952_060));
        assert_eq!(parse_time("1970-01-01", true), Ok(0));
        assert!(parse_time("2026-13-01", true).is_err());
        assert!(parse_time("yesterday", true).is_err());
    }

    #[test]
    fn filters_and_formats() {
        let mut w = super::super::writer::TraceWriter::new(Vec::new());
        w.restart(1_772_952_091).unwrap();
        w.record(1_772_952_092, 0x52, 3, 7, 0, 134).unwrap();
        w.record(1_772_952_093, 0x22, 4, 7, 0, 10).unwrap();
        let data = w.finish().unwrap();
        let path = std::env::temp_dir().join(format!("zeo-dump-test-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let src = Source::Plain(path.clone().into_os_string());
        let o = DumpOptions {
            utc: true,
            codes: vec![0x52],
            ..DumpOptions::default()
        };
        let mut out = Vec::new();
        dump(&src, &o, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-03-08 06:41:32 52                3 0000000000000007 0000000000000000 -     134  store (current, non-version)\n"
        );
        let o = DumpOptions {
            utc: true,
            format: LineFormat::Stats,
            offsets: true,
            since: Some(1_772_952_093),
            ..DumpOptions::default()
        };
        let mut out = Vec::new();
        dump(&src, &o, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "          60 22 Mar  8 06:41:33 22                4 0000000000000007 0000000000000000 - 10\n"
        );
        std::fs::remove_file(path).unwrap();
    }
}
