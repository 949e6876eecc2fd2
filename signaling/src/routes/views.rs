//! How sessions look on the wire: the JSON views of a session that the participant,
//! admin and live routes answer with. Every shape here is documented in README.md ("HTTP
//! API", "Live events") and checked by the API tests; keys and value formats are stable.

use crate::service::admin::SessionDetail;
use crate::service::live_state::LatestSignals;
use crate::service::monitors::LiveOverview;
use crate::store::SessionRow;
use crate::timestamps::rfc3339;
use crate::turns::Turn;
use serde_json::{Value, json};

/// The session as participants and lists see it.
pub fn public_view(s: &SessionRow) -> Value {
    let lc = s.lifecycle().ok();
    json!({
        "id": s.id,
        "state": s.state,
        "campaign_id": s.campaign_id,
        "script_id": s.script_id,
        "created_at": rfc3339(s.created_at),
        "started_at": s.started_at.map(rfc3339),
        "ended_at": s.ended_at.map(rfc3339),
        "end_reason": s.end_reason,
        "drop_off": s.drop_off,
        "consented": lc.as_ref().map(|l| l.consented()),
        "pause_count": lc.as_ref().map(|l| l.pause_count()),
        "pauses_remaining": lc.as_ref().map(|l| l.pauses_remaining()),
        "resume_prompt": lc.as_ref().and_then(|l| l.current_pause()).is_some_and(|p| p.resume_prompt_at.is_some()),
        "pause_expires_at": lc.as_ref().and_then(|l| {
            let p = l.current_pause()?;
            Some(rfc3339(p.started_at.plus_secs(l.config.pause_expiry_secs).0))
        }),
    })
}

/// A row of the sessions list (admin): the public view plus the summary columns (active
/// duration as of `now`, turns, words, drop-off point, engagement and quality scores, AI
/// latency p50).
pub fn list_view(s: &SessionRow, now: crate::lifecycle::Millis) -> Value {
    let mut view = public_view(s);
    let active = s
        .lifecycle()
        .map_or(s.summary.active_ms, |l| l.active_duration_ms(now));
    if let Value::Object(m) = &mut view {
        m.insert("active_duration_ms".into(), json!(active));
        m.insert("turns".into(), json!(s.summary.turn_count));
        m.insert("words".into(), json!(s.summary.word_count));
        m.insert("drop_point".into(), json!(s.summary.drop_point));
        m.insert("engagement".into(), json!(s.summary.engagement));
        m.insert("quality".into(), json!(s.summary.quality));
        m.insert("ai_latency_p50_ms".into(), json!(s.summary.ai_latency_p50));
    }
    view
}

/// Everything about one session (admin): the public view plus client, metadata, durations,
/// pauses, recordings and transitions.
pub fn detail_view(d: &SessionDetail) -> Value {
    let s = &d.session;
    let id = &s.id;
    let recordings: Vec<Value> = d
        .recordings
        .iter()
        .map(|r| {
            json!({
                "track": r.track,
                "format": r.format,
                "duration_ms": r.duration_ms,
                "bytes": r.bytes,
                "url": format!("/v1/sessions/{}/recordings/{}.{}", id, r.track, r.format),
            })
        })
        .collect();
    let transitions: Vec<Value> = d
        .transitions
        .iter()
        .map(|t| json!({"at": rfc3339(t.at), "from": t.from_state, "to": t.to_state, "cause": t.cause}))
        .collect();
    let metadata: Value = serde_json::from_str(&s.metadata).unwrap_or(Value::Null);
    let lc = &d.lifecycle;
    let mut view = public_view(s);
    if let Value::Object(m) = &mut view {
        m.insert("invite_token".into(), json!(s.invite_token));
        m.insert("user_agent".into(), json!(s.user_agent));
        m.insert(
            "client".into(),
            json!(s.user_agent.as_deref().map(crate::user_agent::describe)),
        );
        m.insert("ip".into(), json!(s.ip));
        m.insert("metadata".into(), metadata);
        m.insert(
            "active_duration_ms".into(),
            json!(lc.active_duration_ms(d.as_of)),
        );
        m.insert(
            "total_duration_ms".into(),
            json!(lc.total_duration_ms(d.as_of)),
        );
        m.insert("pauses".into(), json!(lc.pauses));
        m.insert("recordings".into(), Value::Array(recordings));
        m.insert("transitions".into(), Value::Array(transitions));
        let monitors: Vec<Value> = d
            .monitors
            .iter()
            .map(|(r, live)| {
                json!({
                    "id": r.id,
                    "started_at": rfc3339(r.started_at),
                    "ended_at": r.ended_at.map(rfc3339),
                    "live": live,
                })
            })
            .collect();
        m.insert("monitors".into(), Value::Array(monitors));
    }
    view
}

/// A session's latest quality signals: `{<QualitySignals fields>, "attention", "at"}`.
pub fn signals_view(s: &LatestSignals) -> Value {
    let mut v = serde_json::to_value(&s.signals).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("attention".into(), json!(s.attention));
        m.insert("at".into(), json!(rfc3339(s.at.0)));
    }
    v
}

/// One live session on the dashboard (`GET /v1/monitor/sessions`).
pub fn overview_view(o: &LiveOverview) -> Value {
    let s = &o.session;
    let lc = s.lifecycle().ok();
    json!({
        "id": s.id,
        "state": s.state,
        "campaign": {"id": s.campaign_id, "name": o.campaign_name},
        "script": {"id": s.script_id, "name": o.script_name},
        "label": o.label,
        "started_at": s.started_at.map(rfc3339),
        "active_ms": o.active_ms,
        "point": o.point,
        "turns": o.turns,
        "speaking": o.speaking.as_str(),
        "pause_count": lc.as_ref().map(|l| l.pause_count()),
        "signals": o.signals.as_ref().map(signals_view),
        "attention": o.signals.as_ref().map(|x| x.attention.clone()).unwrap_or_default(),
        "listening": o.listening,
    })
}

/// A monitor's first line (and its re-sync after a lag):
/// `{"type":"snapshot","session","turns"}`.
pub fn snapshot_line(s: &SessionRow, turns: &[Turn]) -> String {
    json!({
        "type": "snapshot",
        "session": public_view(s),
        "turns": turns,
    })
    .to_string()
}

/// The turn log (admin): `{"session_id","turns"}`.
pub fn transcript_view(session_id: &str, turns: &[Turn]) -> Value {
    json!({"session_id": session_id, "turns": turns})
}

/// A session's raw JSON export: the detail view, campaign and script names, the turn log,
/// analytics and the links of its exports (absolute under `base`).
pub fn export_view(e: &crate::service::exports::SessionExport, base: &str) -> Value {
    let s = &e.detail.session;
    let mut view = detail_view(&e.detail);
    if let Value::Object(m) = &mut view {
        m.insert(
            "campaign".into(),
            json!({"id": s.campaign_id, "name": e.campaign_name}),
        );
        m.insert(
            "script".into(),
            json!({"id": s.script_id, "name": e.script_name}),
        );
        m.insert("turns".into(), json!(e.turns));
        m.insert(
            "analytics".into(),
            crate::exports::analytics(
                &e.turns,
                e.detail.lifecycle.active_duration_ms(e.detail.as_of),
            ),
        );
        m.insert("links".into(), crate::webhooks::session_links(base, &s.id));
        m.insert("exported_at".into(), rfc3339(e.detail.as_of.0));
    }
    view
}
