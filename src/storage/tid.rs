//! Transaction ids (ZODB `TimeStamp`) and the oid/tid newtypes.
//!
//! A tid is 8 bytes whose big-endian value orders transactions in time: the high 4 bytes
//! count minutes since 1900-01-01 in a calendar where every month has 31 days, the low 4
//! bytes are seconds within the minute scaled by 2^32/60 (spec filestorage.md §3).
//! Invariant: `Tid` and `Oid` compare exactly as Python compares their 8-byte strings.

use std::fmt;

/// An object id: 8 bytes big-endian; 0 is the root object.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub u64);

/// A transaction id (TimeStamp).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub u64);

impl Oid {
    pub const ROOT: Oid = Oid(0);
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Oid(u64::from_be_bytes(b))
    }
    /// From a slice that must be exactly 8 bytes long.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Oid(u64::from_be_bytes(b.try_into().ok()?)))
    }
}

impl Tid {
    /// "No tid" (`z64`): the last transaction of an empty storage.
    pub const ZERO: Tid = Tid(0);
    /// `maxtid`, used as "current" by loadBefore.
    pub const MAX: Tid = Tid(0x7fff_ffff_ffff_ffff);

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Tid(u64::from_be_bytes(b))
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Tid(u64::from_be_bytes(b.try_into().ok()?)))
    }

    /// The TimeStamp for a UTC calendar time; `seconds` may be fractional.
    pub fn from_utc(year: i64, month: u32, day: u32, hour: u32, minute: u32, seconds: f64) -> Self {
        let a = ((((year - 1900) * 12 + (month as i64 - 1)) * 31 + (day as i64 - 1)) * 24
            + hour as i64)
            * 60
            + minute as i64;
        // Python's C TimeStamp: (unsigned int)(seconds / (60.0 / 2^32)).
        let b = (seconds / (60.0 / 4_294_967_296.0)) as u64;
        Tid(((a as u64 & 0xffff_ffff) << 32) | (b & 0xffff_ffff))
    }

    /// The TimeStamp for seconds since the Unix epoch (what `time.time()` gives).
    pub fn from_unix(t: f64) -> Self {
        let whole = t.floor();
        let days = (whole / 86400.0).floor() as i64;
        let secs_of_day = whole as i64 - days * 86400;
        let (y, m, d) = civil_from_days(days);
        let hour = (secs_of_day / 3600) as u32;
        let minute = ((secs_of_day % 3600) / 60) as u32;
        let sec = (secs_of_day % 60) as f64 + (t - whole);
        Tid::from_utc(y, m, d, hour, minute, sec)
    }

    /// Calendar fields (year, month, day, hour, minute, seconds) as TimeStamp decodes them.
    pub fn parts(self) -> (i64, u32, u32, u32, u32, f64) {
        let a = self.0 >> 32;
        let b = self.0 & 0xffff_ffff;
        let minute = (a % 60) as u32;
        let hour = (a / 60 % 24) as u32;
        let day = (a / 1440 % 31) as u32 + 1;
        let month = (a / 44640 % 12) as u32 + 1;
        let year = (a / 535680) as i64 + 1900;
        let seconds = b as f64 * (60.0 / 4_294_967_296.0);
        (year, month, day, hour, minute, seconds)
    }

    /// Seconds since the epoch, as Python's `TimeStamp.timeTime()`.
    pub fn time_time(self) -> f64 {
        let (y, mo, d, h, mi, s) = self.parts();
        let days = days_from_civil(y, mo, d);
        (days * 86400 + h as i64 * 3600 + mi as i64 * 60) as f64 + s
    }

    /// `TimeStamp.laterThan(prev)`: self if greater than `prev`, else the smallest
    /// TimeStamp after `prev` (low 4 bytes + 1, carrying into the next real minute).
    pub fn later_than(self, prev: Tid) -> Tid {
        if self > prev {
            return self;
        }
        let low = prev.0 & 0xffff_ffff;
        if low != 0xffff_ffff {
            return Tid(prev.0 + 1);
        }
        // Next minute with real month lengths, seconds 0.
        let (y, mo, d, h, mi, _) = prev.parts();
        let mut days = days_from_civil(y, mo, d);
        let mut mins = h as i64 * 60 + mi as i64 + 1;
        if mins == 24 * 60 {
            mins = 0;
            days += 1;
        }
        let (y2, m2, d2) = civil_from_days(days);
        Tid::from_utc(y2, m2, d2, (mins / 60) as u32, (mins % 60) as u32, 0.0)
    }
}

/// `oid_repr`/`tid_repr`: `0x` + lowercase hex, leading zero bytes stripped, even digits.
pub fn hex_repr(v: u64) -> String {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    let mut s = String::from("0x");
    for b in &bytes[first..] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_repr(self.0))
    }
}
impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_repr(self.0))
    }
}
impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_repr(self.0))
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_timestamps() {
        assert_eq!(
            Tid::from_utc(1970, 1, 1, 0, 0, 0.0),
            Tid(0x023c2b0000000000)
        );
        assert_eq!(
            Tid::from_utc(2000, 1, 1, 0, 0, 0.0),
            Tid(0x0331620000000000)
        );
        assert_eq!(
            Tid::from_utc(2024, 6, 1, 12, 0, 0.25),
            Tid(0x03f8f8b001111111)
        );
        assert_eq!(Tid::from_unix(0.0), Tid(0x023c2b0000000000));
        // 2024-06-01 12:00:00.25 UTC = 1717243200.25
        assert_eq!(Tid::from_unix(1717243200.25), Tid(0x03f8f8b001111111));
    }

    #[test]
    fn time_time_round_trips() {
        let t = Tid(0x03f8f8b001111111);
        assert!((t.time_time() - 1717243200.25).abs() < 1e-6);
    }

    #[test]
    fn later_than_carries_into_real_next_minute() {
        // 2023-02-28 23:59:59.99... -> 2023-03-01 00:00
        assert_eq!(
            Tid(0x03eead5fffffffff).later_than(Tid(0x03eead5fffffffff)),
            Tid(0x03eebe4000000000)
        );
        assert_eq!(Tid(5).later_than(Tid(9)), Tid(10));
        assert_eq!(Tid(11).later_than(Tid(9)), Tid(11));
    }

    #[test]
    fn reprs() {
        assert_eq!(hex_repr(0), "0x00");
        assert_eq!(hex_repr(1), "0x01");
        assert_eq!(hex_repr(0x100), "0x0100");
        assert_eq!(Tid(0x03f8f8b1deeeeeee).to_string(), "0x03f8f8b1deeeeeee");
    }
}
