//! Live monitoring (F7): `GET /v1/sessions/{id}/live`, a WebSocket streaming the session's
//! state changes, turns and transcript lines as JSON text messages (see README "Live events").
//!
//! Admin only: the token in `Authorization: Bearer`; or, since browsers cannot set headers
//! on a WebSocket, in the subprotocol list (`Sec-WebSocket-Protocol: earshot-live,
//! earshot-token.<the token's UTF-8 bytes in hex>`, answered with `earshot-live`: what the
//! monitoring pages use, so the token never stands in a URL), or in `?token=` (kept for
//! existing clients). Refusals (401, 404, and the monitor limits: `429 monitor_limit`
//! per session, `503 server_busy` in total) come before the upgrade. Each socket has its
//! own task, fed by the service's event bus; a monitor that falls behind is told
//! `{"type":"lagged","missed":n}` and re-synced with a fresh snapshot.

use super::auth::{Caller, ClientAddr, bearer_principal};
use super::extract::path_or_not_found;
use super::state::AppState;
use super::views::snapshot_line;
use crate::access::Permission;
use crate::audit::Outcome;
use crate::error::ApiError;
use crate::live::{self, LiveSink, Snapshot};
use crate::service::SessionService;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/sessions/{id}/live", get(live))
}

#[derive(Deserialize, Default)]
struct LiveQuery {
    token: Option<String>,
}

/// The subprotocol the monitoring pages ask for, with the token beside it.
const LIVE_PROTOCOL: &str = "earshot-live";
/// Prefix of the subprotocol entry that carries the admin token, hex-encoded.
const TOKEN_PROTOCOL_PREFIX: &str = "earshot-token.";

/// The admin token offered in the subprotocol list, if any (hex of its UTF-8 bytes: any
/// token fits a subprotocol name that way).
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
        .and_then(decode_hex)
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn live(
    header_auth: Result<Caller, ApiError>,
    ClientAddr(client): ClientAddr,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<LiveQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let query_token = query.ok().and_then(|Query(q)| q.token);
    let protocol_token = protocol_token(&headers);
    let by_protocol = protocol_token.is_some();
    let caller = match (header_auth, protocol_token.or(query_token)) {
        (Ok(caller), _) => caller,
        (Err(_), Some(token)) => Caller {
            principal: bearer_principal(&app, token.trim()).await?,
            client,
        },
        (Err(e), None) => return Err(e),
    };
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Listen, "listen.live")
        .await?;
    let upgrade = upgrade.map_err(|rej| {
        ApiError::new(
            rej.status(),
            "websocket_required",
            format!("this route is a WebSocket: {}", rej.body_text()),
        )
    })?;
    // A place among the session's and the server's monitors, held by the socket's task (and
    // released with it, or at once if the upgrade never happens).
    let slot = app.limits.monitors.acquire(&id)?;
    caller
        .audit(&app, "listen.live", &id, Some(&campaign), Outcome::Ok)
        .await;
    let service = app.service.clone();
    // A client that named subprotocols gets `earshot-live` chosen (browsers fail a socket
    // whose server picks none of those offered).
    let upgrade = if by_protocol {
        upgrade.protocols([LIVE_PROTOCOL])
    } else {
        upgrade
    };
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            serve_monitor(socket, service, id).await;
            drop(slot);
        }))
}

/// The snapshot source of one monitor.
struct SessionSnapshot {
    service: Arc<SessionService>,
    id: String,
}

impl Snapshot for SessionSnapshot {
    async fn snapshot(&self) -> Option<(Arc<str>, bool)> {
        match self.service.live_snapshot(&self.id).await {
            Ok(Some(s)) => Some((snapshot_line(&s.session, &s.turns).into(), s.ended)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(session = %self.id, code = e.code, "live snapshot failed: {}", e.message);
                None
            }
        }
    }
}

struct WsSink(futures_util::stream::SplitSink<WebSocket, Message>);

impl LiveSink for WsSink {
    async fn send(&mut self, json: Arc<str>) -> bool {
        self.0.send(Message::Text((&*json).into())).await.is_ok()
    }
}

/// One monitor's socket, in its own task: snapshot, then the stream until the session ends
/// or the monitor leaves. Incoming messages are read only to answer pings and see the close.
async fn serve_monitor(socket: WebSocket, service: Arc<SessionService>, id: String) {
    // Subscribe before reading the snapshot: nothing published in between is lost (a line
    // may show both in the snapshot and in the stream).
    let sub = service.subscribe_live(&id);
    let snapshot = SessionSnapshot { service, id };
    let (tx, mut rx) = socket.split();
    let writer = async move {
        let mut sink = WsSink(tx);
        if let Some((snap, ended)) = snapshot.snapshot().await
            && sink.send(snap).await
            && !ended
        {
            live::pump(sub, &snapshot, &mut sink).await;
        } else {
            drop(sub);
        }
        // The subscription is gone before the monitor sees the close.
        let _ = sink.0.send(Message::Close(None)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_subprotocol_list() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
            "earshot-live, earshot-token.61622f3d".parse().unwrap(),
        );
        assert_eq!(protocol_token(&h).as_deref(), Some("ab/="));
        h.insert(
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
            "earshot-live, earshot-token.6".parse().unwrap(),
        );
        assert_eq!(protocol_token(&h), None, "odd hex");
        h.insert(
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
            "earshot-live, earshot-token.zz".parse().unwrap(),
        );
        assert_eq!(protocol_token(&h), None, "not hex");
        assert_eq!(protocol_token(&HeaderMap::new()), None);
    }
}
