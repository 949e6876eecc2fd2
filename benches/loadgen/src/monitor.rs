//! Silent listeners (`--monitors N`): for every session a participant establishes, N QA
//! monitors listen in as the monitor page does, each a receive-only webrtc-rs peer that makes
//! the WHEP exchange (`POST /v1/sessions/{id}/whep` with the admin token) and counts the audio
//! packets it receives. They leave (`DELETE` of the WHEP resource) when the participant's
//! session ends or the run stops; when the server ends the session it closes them itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::peer::PeerEvent;
use reqwest::StatusCode;
use tokio::sync::watch;
use tracing::debug;

use super::participant::{Ctx, http_error, transport_error};

/// Pause before asking again while the session is not yet live.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Listens to `session_id` until `done` turns true or the server closes the listen-in.
pub async fn listen(ctx: Arc<Ctx>, session_id: String, mut done: watch::Receiver<bool>) {
    let hub = &ctx.hub;
    let config = ClientConfig {
        receive_only: true,
        ..ctx.client.clone()
    };
    let (peer, offer, mut events) = match ClientPeer::offer(&config).await {
        Ok(x) => x,
        Err(e) => return hub.monitor_fail(&format!("monitor peer: {e}")),
    };
    // The session turns live (in progress) a moment after its participant connected: until
    // then the server answers 409 `no_live_media`, and the listener asks again.
    let deadline = tokio::time::Instant::now() + ctx.connect_timeout;
    let mut answered = whep(&ctx, &session_id, &offer).await;
    while matches!(&answered, Err(e) if e.ends_with("no_live_media"))
        && tokio::time::Instant::now() < deadline
    {
        tokio::select! {
            _ = told_to_leave(&mut done) => {
                peer.close().await;
                return;
            }
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
        answered = whep(&ctx, &session_id, &offer).await;
    }
    let location = match answered {
        Ok((location, answer)) => {
            if let Err(e) = peer.apply_answer(&answer).await {
                peer.close().await;
                ctx.hang_up(&location).await;
                return hub.monitor_fail(&format!("monitor answer: {e}"));
            }
            location
        }
        Err(e) => {
            peer.close().await;
            return hub.monitor_fail(&e);
        }
    };
    let connected = tokio::time::timeout(ctx.connect_timeout, async {
        loop {
            match events.recv().await {
                Some(PeerEvent::Connected) => return Ok(()),
                Some(PeerEvent::Failed | PeerEvent::Closed) | None => {
                    return Err("monitor connect: failed or closed");
                }
                Some(_) => {}
            }
        }
    })
    .await
    .unwrap_or(Err("monitor connect: timeout"));
    if let Err(e) = connected {
        peer.close().await;
        ctx.hang_up(&location).await;
        return hub.monitor_fail(e);
    }
    hub.monitors_connected.fetch_add(1, Ordering::Relaxed);
    hub.monitors_live.fetch_add(1, Ordering::Relaxed);
    let closed_by_server = loop {
        tokio::select! {
            _ = told_to_leave(&mut done) => break false,
            ev = events.recv() => match ev {
                Some(PeerEvent::Audio(_)) => {
                    hub.monitor_packets.fetch_add(1, Ordering::Relaxed);
                }
                Some(PeerEvent::Failed | PeerEvent::Closed) | None => break true,
                Some(_) => {}
            },
        }
    };
    hub.monitors_live.fetch_sub(1, Ordering::Relaxed);
    hub.monitor_client_dropped
        .fetch_add(peer.dropped_audio_packets(), Ordering::Relaxed);
    debug!(session = %session_id, closed_by_server, "monitor left");
    if !closed_by_server {
        ctx.hang_up(&location).await;
    }
    peer.close().await;
}

/// Resolves once `done` is true (or its sender is gone); the borrow of the value never
/// outlives this future, so the listener's task stays `Send`.
async fn told_to_leave(done: &mut watch::Receiver<bool>) {
    let _ = done.wait_for(|d| *d).await;
}

/// WHEP: offer in, (resource location, answer) out.
async fn whep(ctx: &Ctx, session_id: &str, offer: &str) -> Result<(String, String), String> {
    let r = ctx
        .http
        .post(ctx.url(&format!("/v1/sessions/{session_id}/whep")))
        .bearer_auth(&ctx.admin_token)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .map_err(|e| transport_error("whep", &e))?;
    if r.status() != StatusCode::CREATED {
        return Err(http_error("whep", r).await);
    }
    let location = r
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| "whep: no Location".to_owned())?;
    let answer = r.text().await.map_err(|e| transport_error("whep", &e))?;
    Ok((location, answer))
}

/// Starts `n` listeners of `session_id`; they leave when the returned sender says so (or is
/// dropped) and are waited for up to `grace`.
pub struct Listeners {
    done: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    pub fn start(ctx: &Arc<Ctx>, session_id: &str, n: usize) -> Listeners {
        let (done, _) = watch::channel(false);
        let tasks = (0..n)
            .map(|_| {
                tokio::spawn(listen(
                    Arc::clone(ctx),
                    session_id.to_owned(),
                    done.subscribe(),
                ))
            })
            .collect();
        Listeners { done, tasks }
    }

    /// Tells every listener to leave and waits for them (at most `grace` in all).
    pub async fn stop(self, grace: Duration) {
        let _ = self.done.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for t in self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                debug!("a monitor did not leave in time");
            }
        }
    }
}
