//! Wall-clock helpers. Reading the clock is the one side effect allowed here:
//! every timestamp in Clawhive is milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The UTC calendar day (`YYYY-MM-DD`) of a Unix time in milliseconds.
pub fn utc_day(unix_ms: i64) -> String {
    // Civil-from-days (Howard Hinnant), proleptic Gregorian calendar.
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_days_are_calendar_dates() {
        assert_eq!(super::utc_day(0), "1970-01-01");
        assert_eq!(super::utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(super::utc_day(1_735_689_599_999), "2024-12-31");
        assert_eq!(super::utc_day(1_735_689_600_000), "2025-01-01");
        assert_eq!(super::utc_day(-1), "1969-12-31");
    }
}
