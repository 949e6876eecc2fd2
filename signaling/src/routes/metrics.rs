//! `GET /metrics` (F11): Prometheus text exposition of sessions by state and the media plane's
//! counters (live sessions, missed 20 ms deadlines, tick lateness, packets, end-of-session
//! work). Admin only: scrape it with the admin token as a bearer token.

use super::auth::Admin;
use super::state::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write as _;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(
    _: Admin,
    State(app): State<AppState>,
    http: Option<axum::Extension<std::sync::Arc<super::http_metrics::HttpMetrics>>>,
) -> Result<impl IntoResponse, ApiError> {
    let counts = app.service.sessions_by_state().await?;
    let mut out = String::with_capacity(4096);
    let name = "earshot_sessions";
    let _ = writeln!(
        out,
        "# HELP {name} Sessions stored, by lifecycle state.\n# TYPE {name} gauge"
    );
    // Every state a session can be in, so each series exists from the start.
    for state in earshot_vocab::State::ALL.iter().map(|s| s.as_str()) {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }
    let name = "earshot_live_monitors";
    let _ = writeln!(
        out,
        "# HELP {name} Live transcript WebSocket subscribers connected.\n# TYPE {name} gauge\n{name} {}",
        app.service.live_monitor_count()
    );
    let name = "earshot_listen_ins";
    let _ = writeln!(
        out,
        "# HELP {name} QA monitors listening in over WHEP.\n# TYPE {name} gauge\n{name} {}",
        app.service.listen_in_count()
    );
    let name = "earshot_participant_feeds";
    let _ = writeln!(
        out,
        "# HELP {name} Participant pages' own live feeds connected.\n# TYPE {name} gauge\n{name} {}",
        app.service.participant_feed_count()
    );
    let deliveries = app.service.deliveries_by_status().await?;
    let name = "earshot_webhook_deliveries";
    let _ = writeln!(
        out,
        "# HELP {name} Webhook deliveries stored, by status.\n# TYPE {name} gauge"
    );
    for status in ["pending", "delivered", "failed"] {
        let n = deliveries
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
    }
    let retention = app.service.retention_counters();
    for (name, help, counter) in [
        (
            "earshot_retention_sweeps_total",
            "Retention sweeps run.",
            &retention.sweeps,
        ),
        (
            "earshot_retention_recordings_deleted_total",
            "Sessions whose recordings the retention sweep deleted.",
            &retention.recordings_deleted,
        ),
        (
            "earshot_retention_transcripts_redacted_total",
            "Sessions whose transcript the retention sweep redacted.",
            &retention.transcripts_redacted,
        ),
        (
            "earshot_retention_failures_total",
            "Sessions (or whole sweeps) the retention sweep could not handle.",
            &retention.failures,
        ),
    ] {
        let n = counter.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
        );
    }
    out.push_str(&app.service.media_metrics());
    out.push_str(&app.service.bus_metrics());
    if let Some(axum::Extension(http)) = http {
        http.render(&mut out);
    }
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out))
}
