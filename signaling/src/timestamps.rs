//! Times on the wire: stored unix milliseconds rendered as RFC 3339 (UTC) in JSON.

use serde_json::Value;

/// Unix milliseconds as an RFC 3339 string (UTC); `null` if out of range.
pub fn rfc3339(ms: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// A time from a query: RFC 3339, or a date `YYYY-MM-DD` (its start, UTC), as unix ms; with
/// `end_of_day` a date means the start of the next day (an inclusive "to" date). `None` if
/// it is neither.
pub fn parse_query_time(s: &str, end_of_day: bool) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s, &format).ok()?;
    let date = if end_of_day { date.next_day()? } else { date };
    let t = date.midnight().assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_times() {
        assert_eq!(parse_query_time("1970-01-02", false), Some(86_400_000));
        assert_eq!(parse_query_time("1970-01-02", true), Some(2 * 86_400_000));
        assert_eq!(parse_query_time("1970-01-01T00:00:01Z", true), Some(1000));
        assert_eq!(parse_query_time("yesterday", false), None);
        assert_eq!(parse_query_time("2026-13-01", false), None);
    }
}
