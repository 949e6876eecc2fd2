//! The participant's own live feed (F4, issue 11): `GET /v1/invites/{token}/live`, a
//! WebSocket authorized by the invite token that tells the participant page who is speaking,
//! the interviewer's words as captions and the interview's progress. It carries only what the
//! participant may see of their own session: the session's live lines pass through
//! [`participant_line`], which turns the interviewer's turns into `interviewer` (speaking or
//! not), keeps the interviewer's (`ai`) transcript lines as `caption`, `progress` and the new
//! state of a state change, and drops everything else (monitors joining or leaving, quality
//! signals, the participant's own turns and transcript, timings, causes of state changes).
//!
//! First message: `{"type":"hello","interviewer_speaking","progress":{"index","count"}|null,
//! "caption"}`.
//! Refusals come before the upgrade: `404 invite_not_found`, `409 consent_required` (no
//! session yet), `429 monitor_limit` / `503 server_busy` (the sockets count against the
//! monitor limits, per session).

use super::extract::path_or_not_found;
use super::state::AppState;
use crate::error::ApiError;
use crate::event_bus::Next;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/invites/{token}/live", get(participant_live))
}

async fn participant_live(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let session = app.service.invite_session(&invite).await?;
    let upgrade = upgrade.map_err(|rej| {
        ApiError::new(
            rej.status(),
            "websocket_required",
            format!("this route is a WebSocket: {}", rej.body_text()),
        )
    })?;
    let slot = app.limits.monitors.acquire(&session.id)?;
    let service = app.service.clone();
    let ended = session.state.is_terminal();
    Ok(upgrade
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            serve(socket, service, session.id, ended).await;
            drop(slot);
        }))
}

async fn serve(
    socket: WebSocket,
    service: std::sync::Arc<crate::service::SessionService>,
    id: String,
    ended: bool,
) {
    let mut feed = service.participant_feed(&id);
    let (now, ai_speaking) = service.interview_now(&id);
    let hello = json!({
        "type": "hello",
        "interviewer_speaking": ai_speaking,
        "progress": now.progress.map(|(index, count)| json!({"index": index, "count": count})),
        "caption": now.caption,
    });
    let (mut tx, mut rx) = socket.split();
    let writer = async move {
        if tx
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
            || ended
        {
            let _ = tx.send(Message::Close(None)).await;
            return;
        }
        loop {
            match feed.lines.next().await {
                Next::Line(line) => {
                    if let Some(out) = participant_line(&line.json)
                        && tx.send(Message::Text(out.into())).await.is_err()
                    {
                        return;
                    }
                    if line.last {
                        break;
                    }
                }
                // A participant that fell behind misses lines; the next ones catch it up.
                Next::Lagged(_) => {}
                Next::Closed => break,
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    };
    let reader = async move {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
}

/// What the participant sees of one live line of their session; `None` for what is not
/// theirs to see (see the module doc).
pub fn participant_line(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    let out = match v.get("type")?.as_str()? {
        "turn_start" if v.get("role")? == "ai" => json!({"type": "interviewer", "speaking": true}),
        "turn_end" if v.get("role")? == "ai" => json!({"type": "interviewer", "speaking": false}),
        "transcript" if v.get("role")? == "ai" => json!({
            "type": "caption",
            "text": v.get("text")?,
            "final": v.get("final")?,
        }),
        "progress" => json!({
            "type": "progress",
            "index": v.get("index")?,
            "count": v.get("count")?,
        }),
        "state" => json!({"type": "state", "state": v.get("to")?}),
        _ => return None,
    };
    Some(out.to_string())
}

#[cfg(test)]
mod tests {
    use super::participant_line;
    use serde_json::{Value, json};

    fn seen(line: Value) -> Option<Value> {
        participant_line(&line.to_string()).map(|s| serde_json::from_str(&s).unwrap())
    }

    #[test]
    fn the_participant_sees_speaking_captions_progress_and_state_only() {
        assert_eq!(
            seen(json!({"type": "turn_start", "role": "ai", "at_ms": 5})),
            Some(json!({"type": "interviewer", "speaking": true}))
        );
        assert_eq!(
            seen(json!({"type": "turn_end", "role": "ai", "start_ms": 5, "end_ms": 900})),
            Some(json!({"type": "interviewer", "speaking": false}))
        );
        assert_eq!(
            seen(
                json!({"type": "transcript", "role": "ai", "text": "How was your week?",
                        "final": true, "start_ms": 1, "end_ms": 2})
            ),
            Some(json!({"type": "caption", "text": "How was your week?", "final": true}))
        );
        assert_eq!(
            seen(json!({"type": "progress", "index": 2, "count": 5, "id": "q2"})),
            Some(json!({"type": "progress", "index": 2, "count": 5}))
        );
        assert_eq!(
            seen(
                json!({"type": "state", "from": "in_progress", "to": "paused",
                        "cause": "technical: agent: 10.0.0.5 refused", "at": "x"})
            ),
            Some(json!({"type": "state", "state": "paused"}))
        );
        for hidden in [
            json!({"type": "monitor", "event": "joined", "id": "mon_1", "listening": 1}),
            json!({"type": "signals", "loss": 0.5, "attention": ["loss"]}),
            json!({"type": "transcript", "role": "participant", "text": "my answer",
                   "final": true, "start_ms": 1, "end_ms": 2}),
            json!({"type": "turn_start", "role": "participant", "at_ms": 5}),
            json!({"type": "turn_end", "role": "participant", "start_ms": 5, "end_ms": 9}),
            json!({"type": "speaking", "who": "participant"}),
            json!({"type": "snapshot", "session": {}, "turns": []}),
            json!({"type": "lagged", "missed": 3}),
        ] {
            assert_eq!(seen(hidden.clone()), None, "{hidden}");
        }
        assert_eq!(participant_line("not json"), None);
    }
}
