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
