//! A participant driven from Rust instead of a browser: the HTTP steps the participant page
//! takes (invite, page, consent, WHIP offer) and a real WebRTC peer
//! (`earshot_media::client::ClientPeer`) that sends the Opus packets it is given every 20 ms and
//! keeps every AI packet it receives. Optionally through the impairing [`super::relay`]: the
//! answer's host candidate is rewritten to the relay before the peer applies it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings};
use earshot_media::peer::{PeerEvent, RtpAudioPacket};
use tokio::sync::mpsc;

use super::relay::{Impairment, Relay};

const FRAME: Duration = Duration::from_millis(20);

/// Both directions' impairment and the seed of a relay.
#[derive(Debug, Clone, Copy)]
pub struct Impair {
    pub to_server: Impairment,
    pub to_client: Impairment,
    pub seed: u64,
}

/// The server's jitter buffer decisions, read from its debug log (`earshot_media=debug`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerJitter {
    /// Packets declared lost (each concealed).
    pub lost: usize,
    /// Of those, the ones whose next packet was there, so the decoder was asked for FEC (a
    /// packet sent without FEC data then gives concealment all the same).
    pub next_there: usize,
    /// Sequence numbers of the packets that came after their slot was given up (dropped).
    pub late: Vec<u16>,
}

/// A log line without its colour codes.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads [`ServerJitter`] from the server's log (colour codes stripped).
pub fn server_jitter(log: &str) -> ServerJitter {
    let mut out = ServerJitter::default();
    for line in log.lines() {
        let plain = strip_ansi(line);
        if plain.contains("jitter: packet lost") {
            out.lost += 1;
            if plain.contains("fec=true") {
                out.next_there += 1;
            }
        } else if plain.contains("jitter: late packet dropped")
            && let Some(seq) = plain
                .split_whitespace()
                .find_map(|w| w.strip_prefix("seq=")?.parse().ok())
        {
            out.late.push(seq);
        }
    }
    out
}

/// One participant's session, connected.
pub struct Participant {
    pub http: reqwest::Client,
    pub base: String,
    admin_token: String,
    pub token: String,
    pub session_id: String,
    /// The WHIP resource (hang up with DELETE).
    pub location: String,
    pub peer: Arc<ClientPeer>,
    events: mpsc::Receiver<PeerEvent>,
    pub relay: Option<Relay>,
    /// WHIP offer sent -> DTLS-SRTP up.
    pub connect_time: Duration,
}

/// What [`Participant::stream`] saw.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Opus packets sent.
    pub sent: usize,
    /// AI packets received, in arrival order.
    pub received: Vec<RtpAudioPacket>,
    /// The server ended the session (or closed the peer) before everything was sent.
    pub ended_by_server: bool,
}

/// Encodes 48 kHz mono PCM into 20 ms Opus packets (the last frame padded with silence), as a
/// browser sends it: `settings.fec` and `settings.expected_loss_pct` decide the in-band FEC.
pub fn encode(pcm: &[i16], settings: OpusSettings) -> Vec<Bytes> {
    let mut enc = OpusEncoder::new(settings).expect("opus encoder");
    pcm.chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f[..c.len()].copy_from_slice(c);
            enc.encode(&f).expect("opus encode")
        })
        .collect()
}

async fn ok_json(r: reqwest::Result<reqwest::Response>, step: &str) -> serde_json::Value {
    let r = r.unwrap_or_else(|e| panic!("{step}: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "{step}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

impl Participant {
    /// Invite (admin), page, consent, WHIP, connected. `impair`: through a relay.
    pub async fn join(base: &str, admin_token: &str, impair: Option<Impair>) -> Participant {
        Self::join_with(reqwest::Client::new(), base, admin_token, impair).await
    }

    /// As [`Participant::join`], with the HTTP client given (e.g. one that trusts a test CA).
    pub async fn join_with(
        http: reqwest::Client,
        base: &str,
        admin_token: &str,
        impair: Option<Impair>,
    ) -> Participant {
        Self::join_invite(http, base, admin_token, serde_json::json!({}), impair).await
    }

    /// As [`Participant::join_with`], the invite made with `invite_body` (e.g. a `script_id`).
    pub async fn join_invite(
        http: reqwest::Client,
        base: &str,
        admin_token: &str,
        invite_body: serde_json::Value,
        impair: Option<Impair>,
    ) -> Participant {
        let url = |p: &str| format!("{base}{p}");
        let v = ok_json(
            http.post(url("/v1/invites"))
                .bearer_auth(admin_token)
                .json(&invite_body)
                .send()
                .await,
            "invite",
        )
        .await;
        let token = v["token"].as_str().expect("token").to_owned();
        let page = http
            .get(url(&format!("/i/{token}")))
            .send()
            .await
            .expect("page");
        assert!(page.status().is_success(), "page: {}", page.status());
        let v = ok_json(
            http.post(url(&format!("/v1/invites/{token}/consent")))
                .json(&serde_json::json!({"accept": true}))
                .send()
                .await,
            "consent",
        )
        .await;
        let session_id = v["session_id"].as_str().expect("session_id").to_owned();

        let (peer, offer, mut events) = ClientPeer::offer(&ClientConfig::default())
            .await
            .expect("client peer");
        let offered = Instant::now();
        let r = http
            .post(url(&format!("/v1/invites/{token}/whip")))
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .expect("whip");
        assert_eq!(r.status(), 201, "whip");
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned();
        let answer = r.text().await.expect("answer");
        let (relay, answer) = match impair {
            Some(i) => {
                let (relay, sdp) = Relay::for_answer(&answer, i.to_server, i.to_client, i.seed)
                    .await
                    .expect("relay");
                (Some(relay), sdp)
            }
            None => (None, answer),
        };
        peer.apply_answer(&answer).await.expect("apply answer");
        let connected = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match events.recv().await {
                    Some(PeerEvent::Connected) => return true,
                    Some(PeerEvent::Failed | PeerEvent::Closed) | None => return false,
                    Some(_) => {}
                }
            }
        })
        .await;
        assert_eq!(connected, Ok(true), "client peer connected");
        Participant {
            http,
            base: base.to_owned(),
            admin_token: admin_token.to_owned(),
            token,
            session_id,
            location,
            peer: Arc::new(peer),
            events,
            relay,
            connect_time: offered.elapsed(),
        }
    }

    fn url(&self, p: &str) -> String {
        if p.starts_with("http") {
            p.to_owned()
        } else {
            format!("{}{p}", self.base)
        }
    }

    /// Whether the server has ended the session.
    pub async fn session_ended(&self) -> bool {
        let Ok(r) = self
            .http
            .get(self.url(&format!("/v1/invites/{}", self.token)))
            .send()
            .await
        else {
            return false;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        !v["session"]["ended_at"].is_null()
    }

    /// Sends `packets` at real-time pace (packet k at start + 20 ms * k, catching up after a
    /// stall as a capture clock does) while keeping every AI packet received. Stops early when
    /// the server ends the session.
    pub async fn stream(&mut self, packets: &[Bytes]) -> Streamed {
        let mut out = Streamed::default();
        let start = tokio::time::Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while out.sent < packets.len() {
            let due = start + FRAME * out.sent as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {
                    let _ = self.peer.send_opus(packets[out.sent].clone(), FRAME).await;
                    out.sent += 1;
                }
                ev = self.events.recv() => match ev {
                    Some(PeerEvent::Audio(p)) => out.received.push(p),
                    Some(PeerEvent::Failed | PeerEvent::Closed) | None => {
                        out.ended_by_server = true;
                        break;
                    }
                    Some(_) => {}
                },
                _ = check.tick() => {
                    if self.session_ended().await {
                        out.ended_by_server = true;
                        break;
                    }
                }
            }
        }
        // What is still queued.
        while let Ok(ev) = self.events.try_recv() {
            if let PeerEvent::Audio(p) = ev {
                out.received.push(p);
            }
        }
        out
    }

    /// Ends the interview as the page's End button does (`DELETE` of the WHIP resource; the
    /// server finalizes the recordings) and closes the peer.
    pub async fn hang_up(&self) {
        let _ = self.http.delete(self.url(&self.location)).send().await;
        self.peer.close().await;
    }

    /// Waits until the session lists `track`.wav, downloads it into `dir`, returns its path.
    pub async fn download(&self, track: &str, dir: &Path) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = ok_json(
                self.http
                    .get(self.url(&format!("/v1/sessions/{}", self.session_id)))
                    .bearer_auth(&self.admin_token)
                    .send()
                    .await,
                "session",
            )
            .await;
            let listed = v["recordings"].as_array().is_some_and(|rs| {
                rs.iter()
                    .any(|r| r["track"] == track && r["format"] == "wav")
            });
            if listed {
                break;
            }
            assert!(Instant::now() < deadline, "{track}.wav never listed: {v:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = self
            .http
            .get(self.url(&format!(
                "/v1/sessions/{}/recordings/{track}.wav",
                self.session_id
            )))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("download");
        assert_eq!(r.status(), 200, "download {track}.wav");
        let path = dir.join(format!("{}-{track}.wav", self.session_id));
        std::fs::write(&path, r.bytes().await.expect("body")).expect("write wav");
        path
    }
}
