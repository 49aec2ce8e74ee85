//! Times as text: epoch seconds as `YYYY-MM-DD HH:MM:SS`, in UTC or the
//! server's local zone (the API's recorded answers), and epoch
//! milliseconds as RFC 3339 (task logs).

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` in the server's local time zone
/// (`TZ`, else `/etc/localtime`), through the C library's `localtime_r`,
/// which reads the system's zone database; UTC if it fails.
pub fn format_local(secs: i64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: `localtime_r` writes only the `tm` it is given and reads `t`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return format_utc(secs);
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year as i64 + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Epoch milliseconds as RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let date = format_utc(secs).replacen(' ', "T", 1);
    format!("{date}.{:03}Z", ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40");
        // The local form has the same shape (the zone is the host's).
        let local = format_local(1_795_000_000);
        assert_eq!(local.len(), 19, "{local}");
        assert_eq!(&local[4..5], "-");
        assert_eq!(&local[13..14], ":");
    }
}
