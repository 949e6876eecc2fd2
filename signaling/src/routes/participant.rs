//! Participant routes, authorized by possession of the invite token: the participant page,
//! the invite's public view, consent, and the WHIP peer resource (RFC 9725) with trickle ICE.

use super::extract::{body_rejection, path_or_not_found};
use super::handoff;
use super::headers::participant_page;
use super::limits::address_key;
use super::state::AppState;
use super::views::public_view;
use crate::error::{ApiError, json_rejection};
use crate::service::peers::TrickleFragment;
use crate::store::InviteRow;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/i/{token}", get(page))
        .route("/v1/invites/{token}", get(invite_view))
        .route("/v1/invites/{token}/consent", post(consent))
        .route("/v1/invites/{token}/whip", post(whip_offer))
        .route("/v1/invites/{token}/pause", post(pause))
        .route("/v1/invites/{token}/resume", post(resume))
        .route(
            "/v1/invites/{token}/whip/{peer_id}",
            axum::routing::patch(whip_trickle).delete(whip_hang_up),
        )
}

/// The participant page. Opening it creates the session (seed: "Session is initialized when
/// participant clicks invite link"), recording the browser and the link's custom parameters.
async fn page(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    Query(params): Query<BTreeMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Ok(token) = path_or_not_found(token, "invite_not_found") else {
        return participant_page(StatusCode::NOT_FOUND);
    };
    let invite = match app.service.invite(&token).await {
        Ok(invite) => invite,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return participant_page(StatusCode::NOT_FOUND);
        }
        Err(e) => return e.into_response(),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let ip = app.record_ip.then(|| peer.ip().to_string());
    let params: BTreeMap<String, String> = params
        .into_iter()
        .filter(|(k, _)| k.len() <= 64)
        .take(32)
        .map(|(k, v)| (k, v.chars().take(256).collect()))
        .collect();
    if let Err(e) = app
        .service
        .open_invite(&invite, user_agent.as_deref(), ip.as_deref(), &params)
        .await
    {
        return e.into_response();
    }
    participant_page(StatusCode::OK)
}

async fn invite_view(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let overview = app.service.invite_overview(&invite).await?;
    let privacy = app.service.campaign_privacy(&invite.campaign_id).await?;
    let mut ice_servers = app.ice_servers.clone();
    if let (Some(turn), Some(session)) = (&app.turn, &overview.session) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ice_servers.push(turn.mint(&session.id, now));
    }
    Ok(axum::Json(serde_json::json!({
        "token": invite.token,
        "campaign": {"name": overview.campaign.map(|c| c.name).unwrap_or_default()},
        "recording": overview.script.map(|s| s.recording_enabled).unwrap_or(true),
        "monitoring": true,
        // How long recordings are kept after the interview (0: until the team deletes them),
        // stated at the consent step.
        "audio_retention_days": privacy.audio_retention_days,
        "ice_servers": ice_servers,
        "session": overview.session.as_ref().map(public_view),
    })))
}

/// Unknown fields are refused, as on every other JSON body (a typo such as `"acept"` must not
/// pass silently).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    accept: bool,
}

async fn consent(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    body: Result<axum::Json<ConsentBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let axum::Json(body) = body.map_err(json_rejection)?;
    let session = app.service.consent(&invite, body.accept).await?;
    Ok(axum::Json(serde_json::json!({
        "session_id": session.id,
        "state": session.state,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    cause: PauseCauseParam,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum PauseCauseParam {
    #[default]
    Button,
    TabClosed,
}

/// Pause: the button, or the page being closed (`{"cause":"tab_closed"}`). An empty body is
/// the button.
async fn pause(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let body = body.map_err(body_rejection)?;
    let req: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
    };
    let session = app
        .service
        .pause(&invite, req.cause == PauseCauseParam::TabClosed)
        .await?;
    Ok(axum::Json(public_view(&session)))
}

async fn resume(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let session = app.service.resume(&invite).await?;
    Ok(axum::Json(public_view(&session)))
}

pub(super) fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: {expected}"),
        ))
    }
}

pub(super) fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_body", "body is not UTF-8"))
}

/// WHIP: the offer in, `201 Created` with the answer and the peer resource's `Location`.
///
/// Offers are rate limited per source address (before anything else, so guessing invite
/// tokens is limited too) and per invite: each one costs a peer's setup.
async fn whip_offer(
    State(app): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let limits = &app.limits;
    limits
        .whip_per_address
        .check(&address_key(peer.ip()), "WHIP offers from this address")?;
    let token = path_or_not_found(token, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    limits
        .whip_per_invite
        .check(&invite.token, "WHIP offers for this invite")?;
    require_content_type(&headers, "application/sdp")?;
    let body = body.map_err(body_rejection)?;
    let offer = body_text(&body)?;
    if let Some(handoff) = &app.handoff {
        let session_id = app.service.participant_session_id(&invite).await?;
        if let Some(node) = handoff::target(&app, &session_id, &headers, true)? {
            let path = format!("/v1/invites/{}/whip", invite.token);
            let answer = handoff
                .forward(
                    &node.http_url,
                    Method::POST,
                    &path,
                    &headers,
                    peer.ip(),
                    body,
                )
                .await;
            if answer.status().is_success() {
                app.cluster.remember(&session_id, Some(&node.node_id));
            }
            return Ok(answer);
        }
    }
    let started = app.service.start_media(&invite, offer).await?;
    if app.handoff.is_some() {
        // Until this node's next announcement lists it, other commands find it here.
        app.cluster
            .remember(&started.session_id, Some(app.cluster.node_id()));
    }
    let location = format!("/v1/invites/{}/whip/{}", invite.token, started.peer_id);
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        started.answer_sdp,
    )
        .into_response())
}

/// WHIP PATCH: trickled `a=candidate:` lines (and `a=end-of-candidates`) -> 204; with new ICE
/// credentials (`a=ice-ufrag`, `a=ice-pwd`) it is an ICE restart -> 200 with the server's new
/// credentials and candidates as a trickle-ice-sdpfrag (RFC 9725 §4.3).
async fn whip_trickle(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (token, peer_id) = path_or_not_found(path, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    let body = body.map_err(body_rejection)?;
    let path = format!("/v1/invites/{}/whip/{peer_id}", invite.token);
    if let Some(answer) = hand_on(&app, &invite, &path, Method::PATCH, &headers, peer, &body).await
    {
        return Ok(answer);
    }
    let frag = body_text(&body)?;
    let fragment = parse_sdpfrag(frag)?;
    match app.service.trickle(&invite, &peer_id, fragment).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(ours) => {
            let mut body = format!("a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", ours.ufrag, ours.pwd);
            for c in &ours.candidates {
                body.push_str(&format!("a={c}\r\n"));
            }
            body.push_str("a=end-of-candidates\r\n");
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag")],
                body,
            )
                .into_response())
        }
    }
}

/// WHIP DELETE of the peer resource: the participant ends the interview (the session ends as
/// `abandoned`, reason `participant_ended`). A replaced peer id is `404 peer_not_found`.
async fn whip_hang_up(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (token, peer_id) = path_or_not_found(path, "invite_not_found")?;
    let invite = app.service.invite(&token).await?;
    let path = format!("/v1/invites/{}/whip/{peer_id}", invite.token);
    if let Some(answer) = hand_on(
        &app,
        &invite,
        &path,
        Method::DELETE,
        &headers,
        peer,
        &Bytes::new(),
    )
    .await
    {
        return Ok(answer);
    }
    app.service.hang_up(&invite, &peer_id).await?;
    Ok(StatusCode::OK.into_response())
}

/// A WHIP PATCH or DELETE of a session whose media another node holds goes on to that node;
/// `None`: serve it here.
async fn hand_on(
    app: &AppState,
    invite: &InviteRow,
    path: &str,
    method: Method,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: &Bytes,
) -> Option<Response> {
    let handoff = app.handoff.as_ref()?;
    let session_id = app.service.participant_session_id(invite).await.ok()?;
    let node = handoff::target(app, &session_id, headers, false).ok()??;
    Some(
        handoff
            .forward(
                &node.http_url,
                method,
                path,
                headers,
                peer.ip(),
                body.clone(),
            )
            .await,
    )
}

/// Reads a trickle-ice-sdpfrag body (RFC 8840): its ICE credentials and candidate attributes.
/// Other lines (m=, mid, options) are accepted and ignored; a malformed candidate is refused.
pub(super) fn parse_sdpfrag(frag: &str) -> Result<TrickleFragment, ApiError> {
    let mut fragment = TrickleFragment::default();
    let out = &mut fragment.candidates;
    for line in frag.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            fragment.ufrag.get_or_insert_with(|| u.trim().to_owned());
        } else if let Some(p) = line.strip_prefix("a=ice-pwd:") {
            fragment.pwd.get_or_insert_with(|| p.trim().to_owned());
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            if c.split_whitespace().count() < 8 {
                return Err(ApiError::bad_request(
                    "invalid_candidate",
                    format!("malformed candidate line: {line}"),
                ));
            }
            out.push(format!("candidate:{c}"));
        } else if line == "a=end-of-candidates" {
            out.push(String::new());
        } else if !(line.starts_with("a=") || line.starts_with("m=") || line.starts_with("c=")) {
            return Err(ApiError::bad_request(
                "invalid_sdpfrag",
                format!("not an SDP fragment line: {line}"),
            ));
        }
    }
    Ok(fragment)
}

#[cfg(test)]
mod tests {
    use super::parse_sdpfrag;

    #[test]
    fn sdpfrag_candidates_are_extracted_and_garbage_refused() {
        let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:xyz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                    a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n\
                    a=end-of-candidates\r\n";
        let got = parse_sdpfrag(frag).expect("valid fragment");
        assert_eq!(got.ufrag.as_deref(), Some("abcd"));
        assert_eq!(got.pwd.as_deref(), Some("xyz"));
        assert_eq!(
            got.candidates,
            vec![
                "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0".to_string(),
                String::new()
            ]
        );
        assert!(parse_sdpfrag("a=candidate:1 2 3\r\n").is_err());
        assert!(parse_sdpfrag("hello world").is_err());
        assert_eq!(parse_sdpfrag("").expect("empty").ufrag, None);
    }
}
