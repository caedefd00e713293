//! UTC timestamps for replies and message tags, without a date crate.

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn from_unix_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u64) {
    let ms = unix_millis(t);
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60, ms % 1000)
}

/// `2026-11-25 09:00:00 UTC`
pub fn human_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// IRCv3 `server-time` format: `2026-11-25T09:00:00.000Z`
pub fn iso8601(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_iso8601(&mut out, t);
    out
}

/// Appends [`iso8601`] to `out`. Written digit by digit: this runs for every room message,
/// and the formatting machinery of `format!` cost more than the date arithmetic.
pub fn write_iso8601(out: &mut String, t: SystemTime) {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    // Years outside 0..=9999 cannot be written in this format; clamp rather than misalign.
    let y = y.clamp(0, 9999) as u64;
    let fields: [(u64, usize, char); 7] = [
        (y, 4, '-'),
        (u64::from(mo), 2, '-'),
        (u64::from(d), 2, 'T'),
        (h, 2, ':'),
        (mi, 2, ':'),
        (s, 2, '.'),
        (ms, 3, 'Z'),
    ];
    for (value, width, sep) in fields {
        push_decimal(out, value, width);
        out.push(sep);
    }
}

/// `value` in decimal, zero-padded to at least `width` digits. Written by hand: it runs for
/// every room message (its timestamp), where `format!` cost more than the rest of the line.
pub fn push_decimal(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    start = start.min(digits.len() - width.clamp(1, 20));
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Parses the `server-time` format back (for `CHATHISTORY ... timestamp=`).
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?;
    let ms = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
            let padded = format!("{digits:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        }
        None => 0,
    };
    if !rest.ends_with('Z') || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    // Civil date to days (inverse of `civil`).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms).max(0) as u64;
    Some(from_unix_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = from_unix_millis(1_795_597_200_123);
        assert_eq!(human_utc(t), "2026-11-25 09:00:00 UTC");
        assert_eq!(iso8601(t), "2026-11-25T09:00:00.123Z");
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        for (v, width) in [
            (0, 1),
            (7, 1),
            (7, 3),
            (10, 1),
            (1_795_597_200_123, 1),
            (u64::MAX, 2),
        ] {
            let mut out = String::from("x");
            push_decimal(&mut out, v, width);
            assert_eq!(out, format!("x{v:0width$}"));
        }
        assert_eq!(
            iso8601(from_unix_millis(4_102_444_799_009)),
            "2099-12-31T23:59:59.009Z"
        );
    }

    #[test]
    fn parse_round_trips() {
        for ms in [0u64, 951_782_400_000, 1_795_597_200_123, 4_102_444_799_999] {
            let t = from_unix_millis(ms);
            assert_eq!(parse_iso8601(&iso8601(t)), Some(t), "{}", iso8601(t));
        }
        assert_eq!(
            parse_iso8601("2026-11-25T09:00:00Z"),
            Some(from_unix_millis(1_795_597_200_000))
        );
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_iso8601("2026-13-25T09:00:00.000Z"), None);
    }
}
