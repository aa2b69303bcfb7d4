//! Time values as HAMi writes them, without a date library.
//!
//! HAMi writes two layouts: RFC 3339 (`2006-01-02T15:04:05Z07:00`, node lock) and Go's
//! `time.DateTime` (`2006-01-02 15:04:05`, handshake, no zone). Both are converted from and to
//! plain Unix seconds here with the civil-calendar algorithm, so the core stays clock-free.

/// A point in time as written on the wire: Unix seconds plus the UTC offset it was written with.
///
/// Contract: `unix_seconds` is the instant; `utc_offset_seconds` only affects formatting (HAMi
/// formats in the writer's local zone), so re-encoding a decoded value gives the same text.
/// Fractional seconds in the input are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WireTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: i64,
    /// Offset of the zone the value was written in, seconds east of UTC.
    pub utc_offset_seconds: i32,
}

impl WireTime {
    /// An instant written in UTC (`Z`), how hami-rs writes every time.
    pub fn utc(unix_seconds: i64) -> WireTime {
        WireTime {
            unix_seconds,
            utc_offset_seconds: 0,
        }
    }

    /// RFC 3339 text as Go's `time.RFC3339` layout writes it (`Z` for UTC, else `+hh:mm`).
    pub fn to_rfc3339(self) -> String {
        let local = self
            .unix_seconds
            .saturating_add(i64::from(self.utc_offset_seconds));
        let mut out = format_date_time(local, 'T');
        if self.utc_offset_seconds == 0 {
            out.push('Z');
        } else {
            let sign = if self.utc_offset_seconds < 0 {
                '-'
            } else {
                '+'
            };
            let abs = self.utc_offset_seconds.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
        }
        out
    }

    /// Parse RFC 3339 as Go's `time.Parse(time.RFC3339, ..)` accepts it (`T` separator,
    /// optional fraction, `Z` or `±hh:mm`); `None` when it is not such a time.
    pub fn parse_rfc3339(s: &str) -> Option<WireTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b.get(10) != Some(&b'T') {
            return None;
        }
        let local = parse_date_time(s.get(..19)?, b'T')?;
        let mut rest = s.get(19..)?;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = frac.get(digits..)?;
        }
        let offset = if rest == "Z" {
            0
        } else {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb.get(3) != Some(&b':') {
                return None;
            }
            let sign = match rb.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let hh = two_digits(rest.get(1..3)?)?;
            let mm = two_digits(rest.get(4..6)?)?;
            if hh > 23 || mm > 59 {
                return None;
            }
            sign * (hh * 3600 + mm * 60)
        };
        Some(WireTime {
            unix_seconds: local - i64::from(offset),
            utc_offset_seconds: offset,
        })
    }
}

/// Go's `time.DateTime` layout (`2006-01-02 15:04:05`) for wall-clock seconds.
///
/// The layout has no zone: the handshake is written in the scheduler's local time. hami-rs
/// writes and reads it as UTC wall time; compare only values written by the same convention.
pub fn format_datetime(wall_seconds: i64) -> String {
    format_date_time(wall_seconds, ' ')
}

/// Parse Go's `time.DateTime` layout exactly (19 characters); `None` otherwise.
pub fn parse_datetime(s: &str) -> Option<i64> {
    if s.len() != 19 {
        return None;
    }
    parse_date_time(s, b' ')
}

fn format_date_time(secs: i64, sep: char) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `YYYY-MM-DD?HH:MM:SS` with the given separator, validated like Go (month 1-12, day within
/// the month, hour < 24, minute and second < 60).
fn parse_date_time(s: &str, sep: u8) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&sep)
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let y = digits(s.get(0..4)?)?;
    let mo = two_digits(s.get(5..7)?)?;
    let d = two_digits(s.get(8..10)?)?;
    let h = two_digits(s.get(11..13)?)?;
    let mi = two_digits(s.get(14..16)?)?;
    let se = two_digits(s.get(17..19)?)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo as u32, d as u32);
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + se))
}

fn digits(s: &str) -> Option<i32> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn two_digits(s: &str) -> Option<i32> {
    if s.len() == 2 { digits(s) } else { None }
}

fn days_in_month(y: i32, m: i32) -> i32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let t = WireTime::parse_rfc3339("2026-08-21T06:20:39Z").unwrap();
        assert_eq!(t.unix_seconds, 1_787_293_239);
        assert_eq!(t.to_rfc3339(), "2026-08-21T06:20:39Z");
        let t = WireTime::parse_rfc3339("2024-02-29T08:00:00+08:00").unwrap();
        assert_eq!(t.unix_seconds, 1_709_164_800);
        assert_eq!(t.to_rfc3339(), "2024-02-29T08:00:00+08:00");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(parse_datetime("2000-03-01 00:00:00"), Some(951_868_800));
        assert_eq!(parse_datetime("2023-02-29 00:00:00"), None);
        assert_eq!(WireTime::parse_rfc3339("2026-08-21 06:20:39Z"), None);
    }
}
