//! Times in seconds since the epoch, written as UTC dates (the proleptic
//! Gregorian calendar), without a time-zone database.

/// `YYYYMMDD`.
pub fn day(secs: i64) -> String {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    format!("{y:04}{m:02}{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(secs: i64) -> String {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The date of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
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
    fn days() {
        assert_eq!(day(0), "19700101");
        assert_eq!(day(951_782_400), "20000229");
        assert_eq!(day(1_764_720_000), "20251203");
        assert_eq!(day(-1), "19691231");
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(951_868_799), "2000-02-29 23:59:59 UTC");
        assert_eq!(time(1_796_314_832), "2026-12-03 16:20:32 UTC");
        assert_eq!(time(-1), "1969-12-31 23:59:59 UTC");
    }
}
