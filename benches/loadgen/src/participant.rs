//! One simulated participant: the same HTTP steps and WebRTC peer a browser uses, sending
//! pre-encoded speech every 20 ms and measuring the AI audio it receives.
//!
//! A participant runs sessions back to back until told to stop: invite (admin API), open the
//! invite page (creates the session), consent, WHIP offer -> answer, connected, stream. When the
//! server ends the session (the built-in interview is over) it starts a new one at once, so the
//! load stays at N streaming sessions and the server's end-of-session work (mix, MP3s) is part
//! of what is measured. When told to stop it hangs up with `DELETE` on the WHIP resource.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::peer::{PeerEvent, RtpAudioPacket};
use reqwest::StatusCode;
use tokio::sync::watch;
use tracing::debug;

use super::hub::Hub;
use super::latency::Probe;
use super::monitor::Listeners;
use super::pesq::Capture;
use super::stats::RtpReceiver;

const FRAME: Duration = Duration::from_millis(20);
/// Opus RTP clock.
const CLOCK_RATE: u32 = 48_000;
/// No AI packet for this long: ask the server whether the session ended.
const SILENCE_CHECK: Duration = Duration::from_millis(1500);
/// Pause after a failed attempt before the next one.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What every participant shares.
pub struct Ctx {
    pub http: reqwest::Client,
    /// Server base URL without a trailing slash.
    pub base: String,
    pub admin_token: String,
    /// Script of the invites: the generator's test agent (`--agent`), or the server's default.
    pub script_id: Option<String>,
    /// The speech as Opus packets, looped by every participant from its own offset.
    pub packets: Arc<Vec<Bytes>>,
    pub client: ClientConfig,
    pub connect_timeout: Duration,
    /// Start a new session when the server ends one.
    pub renew: bool,
    /// Silent listeners (WHEP) started for every session (`--monitors`).
    pub monitors: usize,
    pub hub: Arc<Hub>,
    /// The AI audio of the sessions sampled for PESQ-WB.
    pub pesq: Capture,
}

enum Outcome {
    /// We were told to stop (and hung up).
    Stopped,
    /// The server ended the session.
    EndedByServer,
    /// Never connected.
    Failed(String),
    /// Connected, then lost.
    Dropped(String),
}

/// Runs sessions for participant number `slot` until `stop` turns true.
pub async fn run(ctx: Arc<Ctx>, slot: usize, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match session(&ctx, slot, &mut stop).await {
            Outcome::Stopped => break,
            Outcome::EndedByServer => {
                ctx.hub.ended_by_server.fetch_add(1, Ordering::Relaxed);
                if !ctx.renew {
                    break;
                }
            }
            Outcome::Failed(reason) => {
                if *stop.borrow() {
                    break; // torn down while connecting: not a server failure
                }
                debug!(slot, %reason, "session failed");
                ctx.hub.fail(&reason);
                let _ = tokio::time::timeout(RETRY_AFTER, stopped(&mut stop)).await;
            }
            Outcome::Dropped(reason) => {
                debug!(slot, %reason, "session dropped");
                ctx.hub.drop_session(&reason);
            }
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone). The borrow of the value never
/// outlives this future, so callers stay `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Short, countable reason for an HTTP failure: "whip: 409 session_ended".
pub(crate) async fn http_error(step: &str, r: reqwest::Response) -> String {
    let status = r.status();
    let code = r
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{step}: {} {code}", status.as_u16())
        .trim_end()
        .to_owned()
}

pub(crate) fn transport_error(step: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "transport error"
    };
    format!("{step}: {kind}")
}

impl Ctx {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create_invite(&self) -> Result<String, String> {
        let r = self
            .http
            .post(self.url("/v1/invites"))
            .bearer_auth(&self.admin_token)
            .json(&match &self.script_id {
                Some(id) => serde_json::json!({ "script_id": id }),
                None => serde_json::json!({}),
            })
            .send()
            .await
            .map_err(|e| transport_error("invite", &e))?;
        if r.status() != StatusCode::CREATED {
            return Err(http_error("invite", r).await);
        }
        let v: serde_json::Value = r.json().await.map_err(|_| "invite: bad json".to_owned())?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "invite: no token".to_owned())
    }

    /// Opens the invite page and consents; returns the session id.
    async fn open_and_consent(&self, token: &str) -> Result<String, String> {
        let r = self
            .http
            .get(self.url(&format!("/i/{token}")))
            .send()
            .await
            .map_err(|e| transport_error("page", &e))?;
        if !r.status().is_success() {
            return Err(http_error("page", r).await);
        }
        let r = self
            .http
            .post(self.url(&format!("/v1/invites/{token}/consent")))
            .json(&serde_json::json!({"accept": true}))
            .send()
            .await
            .map_err(|e| transport_error("consent", &e))?;
        if !r.status().is_success() {
            return Err(http_error("consent", r).await);
        }
        let v: serde_json::Value = r.json().await.map_err(|_| "consent: bad json".to_owned())?;
        v["session_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "consent: no session_id".to_owned())
    }

    /// WHIP: offer in, (resource location, answer) out.
    async fn whip(&self, token: &str, offer: String) -> Result<(String, String), String> {
        let r = self
            .http
            .post(self.url(&format!("/v1/invites/{token}/whip")))
            .header(reqwest::header::CONTENT_TYPE, "application/sdp")
            .body(offer)
            .send()
            .await
            .map_err(|e| transport_error("whip", &e))?;
        if r.status() != StatusCode::CREATED {
            return Err(http_error("whip", r).await);
        }
        let location = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "whip: no Location".to_owned())?;
        let answer = r.text().await.map_err(|e| transport_error("whip", &e))?;
        Ok((location, answer))
    }

    pub(crate) async fn hang_up(&self, location: &str) {
        let url = if location.starts_with("http") {
            location.to_owned()
        } else {
            self.url(location)
        };
        match self.http.delete(url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => debug!(status = %r.status(), "hang up refused"),
            Err(e) => debug!(error = %e, "hang up failed"),
        }
    }

    /// Whether the server has ended the invite's session.
    async fn session_ended(&self, token: &str) -> bool {
        let Ok(r) = self
            .http
            .get(self.url(&format!("/v1/invites/{token}")))
            .send()
            .await
        else {
            return false;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return false;
        };
        let s = &v["session"];
        !s["ended_at"].is_null()
            || s["state"]
                .as_str()
                .and_then(|s| s.parse::<earshot_vocab::State>().ok())
                .is_some_and(earshot_vocab::State::is_terminal)
    }
}

async fn session(ctx: &Arc<Ctx>, slot: usize, stop: &mut watch::Receiver<bool>) -> Outcome {
    let hub = &ctx.hub;
    hub.attempted.fetch_add(1, Ordering::Relaxed);
    let token = match ctx.create_invite().await {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(e),
    };
    let session_id = match ctx.open_and_consent(&token).await {
        Ok(id) => id,
        Err(e) => return Outcome::Failed(e),
    };
    // With the generator's agent: the records both sides of this session fill.
    let probe = ctx.hub.with_agent.then(|| {
        let probe = Arc::new(Probe::default());
        ctx.hub.probes.insert(&session_id, Arc::clone(&probe));
        probe
    });
    let outcome = stream(ctx, slot, stop, &token, &session_id, probe.as_ref()).await;
    if let Some(probe) = probe {
        ctx.hub.latencies(probe.drain());
        ctx.hub.probes.remove(&session_id);
    }
    outcome
}

/// Offer, connect, and stream until the session ends, we are stopped, or the peer is lost.
async fn stream(
    ctx: &Arc<Ctx>,
    slot: usize,
    stop: &mut watch::Receiver<bool>,
    token: &str,
    session_id: &str,
    probe: Option<&Arc<Probe>>,
) -> Outcome {
    let hub = &ctx.hub;
    let (peer, offer, mut events) = match ClientPeer::offer(&ctx.client).await {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(format!("client peer: {e}")),
    };
    let peer = Arc::new(peer);
    let offered_at = Instant::now();
    let (location, answer) = match ctx.whip(token, offer).await {
        Ok(x) => x,
        Err(e) => {
            peer.close().await;
            return Outcome::Failed(e);
        }
    };
    if let Err(e) = peer.apply_answer(&answer).await {
        peer.close().await;
        ctx.hang_up(&location).await;
        return Outcome::Failed(format!("answer: {e}"));
    }

    // Offer -> connected (DTLS-SRTP up).
    let connected = tokio::time::timeout(ctx.connect_timeout, async {
        loop {
            match events.recv().await {
                Some(PeerEvent::Connected) => return Ok(()),
                Some(PeerEvent::Audio(_)) => {}
                Some(PeerEvent::Disconnected | PeerEvent::Restored) => {}
                Some(PeerEvent::Failed) => return Err("connect: ICE/DTLS failed"),
                Some(PeerEvent::Closed) | None => return Err("connect: closed"),
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            peer.close().await;
            ctx.hang_up(&location).await;
            return Outcome::Failed(e.to_owned());
        }
        Err(_) => {
            peer.close().await;
            ctx.hang_up(&location).await;
            return Outcome::Failed("connect: timeout".to_owned());
        }
    }
    hub.connected(offered_at.elapsed().as_secs_f64() * 1000.0);
    let listeners = (ctx.monitors > 0).then(|| Listeners::start(ctx, session_id, ctx.monitors));
    // Sampled for PESQ-WB: keep the AI packets (decoded after the run).
    let mut heard: Option<Vec<RtpAudioPacket>> = ctx.pesq.claim().then(Vec::new);

    let sender = tokio::spawn(send_loop(
        Arc::clone(&peer),
        Arc::clone(&ctx.packets),
        slot * 37,
        Arc::clone(hub),
        probe.cloned(),
    ));
    let mut rtp = RtpReceiver::new(CLOCK_RATE, FRAME.as_millis() as u32);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_packet = Instant::now();
    let mut last_check = Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = stopped(stop) => break Outcome::Stopped,
            ev = events.recv() => match ev {
                Some(PeerEvent::Audio(p)) => {
                    let d = rtp.on_packet(p.sequence, p.timestamp, hub.secs(p.arrival));
                    hub.rx_received.fetch_add(1, Ordering::Relaxed);
                    hub.rx_expected.fetch_add(d.expected, Ordering::Relaxed);
                    hub.rx_expected_by_clock.fetch_add(d.expected_by_clock, Ordering::Relaxed);
                    last_packet = p.arrival;
                    if let Some(probe) = probe {
                        probe.ai_packet(p.timestamp, &p.payload, p.arrival);
                    }
                    if let Some(heard) = heard.as_mut() {
                        heard.push(p);
                    }
                }
                // A transient ICE disconnect may recover; a lasting one shows as silence.
                Some(PeerEvent::Connected | PeerEvent::Disconnected | PeerEvent::Restored) => {}
                Some(PeerEvent::Failed | PeerEvent::Closed) | None => {
                    break if ctx.session_ended(token).await {
                        Outcome::EndedByServer
                    } else {
                        Outcome::Dropped("peer disconnected".to_owned())
                    };
                }
            },
            _ = tick.tick() => {
                if rtp.received() > 0 {
                    hub.jitter_sample(rtp.jitter_ms());
                }
                if let Some(probe) = probe {
                    hub.latencies(probe.drain());
                }
                if last_packet.elapsed() > SILENCE_CHECK && last_check.elapsed() > SILENCE_CHECK {
                    last_check = Instant::now();
                    if ctx.session_ended(token).await {
                        break Outcome::EndedByServer;
                    }
                }
            }
        }
    };
    hub.live.fetch_sub(1, Ordering::Relaxed);
    sender.abort();
    if let Some(heard) = heard {
        ctx.pesq.keep(heard);
    }
    if let Some(listeners) = listeners {
        listeners.stop(Duration::from_secs(5)).await;
    }
    debug!(
        slot,
        received = rtp.received(),
        expected = rtp.expected(),
        lost = rtp.lost(),
        expected_by_clock = rtp.expected_by_clock(),
        jitter_ms = rtp.jitter_ms(),
        "session over"
    );
    hub.client_dropped
        .fetch_add(peer.dropped_audio_packets(), Ordering::Relaxed);
    if !matches!(outcome, Outcome::EndedByServer) {
        ctx.hang_up(&location).await;
    }
    peer.close().await;
    outcome
}

/// Sends the looped speech packets at real-time pace (20 ms), starting at `offset`.
async fn send_loop(
    peer: Arc<ClientPeer>,
    packets: Arc<Vec<Bytes>>,
    offset: usize,
    hub: Arc<Hub>,
    probe: Option<Arc<Probe>>,
) {
    if packets.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(FRAME);
    // A browser's capture clock does not skip: catch up after a stall.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = offset;
    loop {
        tick.tick().await;
        let frame = packets[i % packets.len()].clone();
        if let Some(probe) = &probe {
            probe.packet_sent(Instant::now());
        }
        if peer.send_opus(frame, FRAME).await.is_err() {
            hub.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
}
