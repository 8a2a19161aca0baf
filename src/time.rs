//! Time, in one place: the clock, RFC 3339 timestamps (with `jiff`), and the durations users
//! write (`30s`, `1m30s`). This is the only module that reads the clock; the pure core is given
//! the time as a number of seconds.

use std::time::Duration;

use jiff::Timestamp;

/// Seconds since 1970 (UTC), now.
pub fn now() -> i64 {
    Timestamp::now().as_second()
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(now())
}

/// `secs` (since 1970) as RFC 3339 in UTC with second precision: `2026-11-22T13:26:40Z`.
/// Times outside jiff's range (years -9999 to 9999) are clamped to it.
pub fn rfc3339(secs: i64) -> String {
    let secs = secs.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(secs)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Seconds since 1970 of an RFC 3339 timestamp (any offset; fractions are dropped), or `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// A duration as users write it: `20s`, `1m`, `1m30s`, `500ms`, `2h`, or plain seconds.
/// Numbers too large for a `Duration` are an error, not a wrap-around.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (use e.g. 20s, 1m, 1m30s, 500ms)");
    let too_long = || format!("{s:?} is too long a duration");
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| too_long());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration the way [`parse_duration`] reads it: `90s` is `1m30s`, `2h`, `500ms`.
pub fn human(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s if s > 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_date_u() {
        // Expected values from `date -u -d @N +%FT%TZ`.
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // jiff's range ends late on 9999-12-30 UTC: later times are clamped to it.
        assert_eq!(rfc3339(i64::MAX), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn parses_what_it_writes_and_any_offset() {
        for secs in [
            0,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            253_402_207_199,
            -1,
            -86_401,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{}", rfc3339(secs));
        }
        assert_eq!(
            parse_rfc3339("2026-12-01T01:00:00+01:00"),
            parse_rfc3339("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-12-01T00:00:00.75Z"),
            parse_rfc3339("2026-12-01T00:00:00Z")
        );
        for bad in ["", "2026-13-01T00:00:00Z", "2026-12-01 00:00:00", "x", "2026-12-01"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("20s", Duration::from_secs(20)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("2h", Duration::from_secs(7200)),
            ("1h1m1s1ms", Duration::from_millis(3_661_001)),
            ("45", Duration::from_secs(45)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "1", "1x", "1.5s", "-1s", "1s ", " 1s", "m1", "1mm", "1 s"] {
            if bad == "1" {
                continue; // plain seconds
            }
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_that_overflow_are_errors() {
        let e = parse_duration("99999999999999999999s").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = parse_duration(&format!("{}h", u64::MAX / 3600 + 1)).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = parse_duration(&format!("{}s{}s", u64::MAX, u64::MAX)).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn human_reads_back() {
        for d in [0, 500, 1000, 59_000, 60_000, 90_000, 3_600_000, 5_400_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&human(d)), Ok(d), "{}", human(d));
        }
    }
}
