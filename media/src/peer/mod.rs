//! F1 WebRTC termination: the server-side peer of one participant or monitor.
//!
//! This module owns one WebRTC `PeerConnection` (webrtc-rs 0.21) per browser: it answers the
//! browser's offer (WHIP style, the browser offers), runs ICE-lite with host candidates only,
//! DTLS-SRTP, and moves Opus RTP packets both ways. It does not decode or encode audio (the
//! audio pipeline does), knows nothing of HTTP or signalling, and never configures a STUN/TURN
//! server on its own: the ICE server list is exactly what the caller passes.
//!
//! Facts about webrtc 0.21 this module depends on:
//! - mDNS is disabled (the default `QueryOnly` mode opens a multicast socket, which fails on
//!   this kind of host); host candidates are gathered only on the concrete `bind_ip` and
//!   `extra_bind_ips` (one socket on each).
//! - The library keeps `SettingEngine::nat_1to1_ips` but never applies it, so the public-IP
//!   mapping is done here by rewriting host candidates in the answer SDP.
//! - There is no UDP port-range setting: a free port in the range is chosen here and the
//!   connection is bound to it (retried on a bind race).
//! - ICE-lite is `SettingEngineBuilder::with_lite(true)`; the lite agent still only reports
//!   "connected" on its check tick (200 ms by default), so the tick is set to 20 ms here,
//!   which takes loopback offer-to-connected from ~200 ms to ~25 ms.
//! - Handler callbacks run inside the library's driver loop, so they never block: RTP is
//!   forwarded from a separate task with `try_send` (full channel = packet dropped and counted).
//! - The library's ICE agent judges liveness by STUN alone (5 s by default), which cut Firefox
//!   and aiortc clients; its timers are off and `liveness` decides from every datagram the
//!   watched socket (`socket`) receives. Its ICE-lite agent answered nominations late and sent
//!   checks of its own; that is fixed in a patched copy (`media/patches/`).
//!
//! Submodules: `library` (what server and client peers share: handler, event channel,
//! watchdog, builders), `liveness` (the quiet/failed rule, sans-IO), `socket` (the watched UDP
//! socket), `sdp` (offer inspection, trickled candidates), `nat` (1:1 NAT mapping), `ports`
//! (the UDP port range), `selected` (the client's candidate type in the selected pair).

mod library;
mod liveness;
mod nat;
mod ports;
mod report_blocks;
mod restart;
mod sdp;
mod selected;
mod socket;
pub mod stun_probe;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{PeerConnection, RTCIceServer, RTCSessionDescription};
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

use library::internal;
pub(crate) use library::{
    EVENT_CHANNEL_CAPACITY, Handler, OwnedConnection, PeerShared, build_connection,
    negotiated_payload_type, opus_media_engine, opus_track, setting_engine,
    spawn_liveness_watchdog, wait_gathered, write_opus,
};
pub use liveness::LivenessConfig;
use nat::{NatMapping, apply_nat_1to1, parse_nat_mappings};
use ports::bind_attempts;
pub use report_blocks::ReportBlock;
pub use restart::IceRestart;
pub(crate) use restart::{answer_with_credentials, credentials_of};
pub(crate) use sdp::add_candidate;
pub use sdp::{inspect_offer, normalise_candidate};
pub use selected::SelectedPath;

/// The ICE agent's tick while connecting. Even an ICE-lite agent (which sends no checks) only
/// moves to connected, and so starts DTLS, on this tick; the library default of 200 ms adds up
/// to 200 ms (about 180 ms measured on loopback) to every connection. While connected the
/// agent ticks at the 2 s keepalive interval instead, so this costs nothing afterwards.
const SERVER_ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Configuration of a server-side peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Concrete IP the host candidates are gathered on, e.g. 127.0.0.1 (never 0.0.0.0).
    pub bind_ip: IpAddr,
    /// More concrete addresses (other interfaces) to gather host candidates on, one UDP socket
    /// each: a participant uses whichever it can reach.
    pub extra_bind_ips: Vec<IpAddr>,
    /// Lowest UDP port to use; `0, 0` means an ephemeral port.
    pub udp_port_min: u16,
    /// Highest UDP port to use (inclusive).
    pub udp_port_max: u16,
    /// Public IP mapping for host candidates: `"203.0.113.7"` (all host candidates of that
    /// address family) or `"203.0.113.7/10.0.0.5"` (only candidates on 10.0.0.5). Empty = none.
    pub nat_1to1_ips: Vec<String>,
    /// Handed through to the library's configuration; empty by default.
    pub ice_servers: Vec<IceServer>,
    /// ICE-lite (true by default for the server).
    pub ice_lite: bool,
    /// Opus `a=fmtp` parameters we register, e.g. `minptime=10;useinbandfec=1`.
    pub opus_fmtp: String,
    /// When a silent peer is reported quiet and when it has failed (and is closed).
    pub liveness: LivenessConfig,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            extra_bind_ips: Vec::new(),
            udp_port_min: 0,
            udp_port_max: 0,
            nat_1to1_ips: Vec::new(),
            ice_servers: Vec::new(),
            ice_lite: true,
            opus_fmtp: DEFAULT_OPUS_FMTP.to_owned(),
            liveness: LivenessConfig::default(),
        }
    }
}

/// The Opus fmtp line browsers offer (in-band FEC negotiated).
pub const DEFAULT_OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// A STUN/TURN server (W3C `RTCIceServer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// What the browser does with audio on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// sendrecv audio: the browser's microphone in, the AI voice out.
    Participant,
    /// sendonly from the server: the browser only listens (silent monitoring).
    Monitor,
}

/// One received Opus RTP packet (not decoded).
#[derive(Debug, Clone)]
pub struct RtpAudioPacket {
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: Bytes,
    /// When the packet was taken off the library's track queue.
    pub arrival: Instant,
}

/// Events of one peer, in order of occurrence (state events are never dropped; audio packets
/// are dropped and counted when the channel is full).
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// DTLS-SRTP is up.
    Connected,
    /// Nothing heard from the other side for a while ([`LivenessConfig::quiet_after`]); the
    /// connection stays up and may come back ([`PeerEvent::Restored`]). Not a reason to act.
    Disconnected,
    /// Heard again after [`PeerEvent::Disconnected`].
    Restored,
    /// Nothing heard for [`LivenessConfig::failed_after`], or never connected that long after
    /// the answer, or the library gave up: the connection is to be closed.
    Failed,
    Closed,
    Audio(RtpAudioPacket),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("the offer has no usable audio (Opus) m-line")]
    NoAudio,
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("internal WebRTC error: {0}")]
    Internal(String),
}

/// The server side of one browser connection.
pub struct ServerPeer {
    conn: OwnedConnection,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    payload_type: u8,
    /// The client's offer as last applied (an ICE restart applies it again with new
    /// credentials), and the NAT mapping the answers are rewritten with.
    offer: tokio::sync::Mutex<String>,
    nat: Vec<NatMapping>,
}

impl ServerPeer {
    /// Applies the offer, creates the answer, waits for (host-only, fast) gathering to complete
    /// so the answer carries all candidates.
    pub async fn answer(
        config: &PeerConfig,
        offer_sdp: &str,
        role: PeerRole,
    ) -> Result<(ServerPeer, String, mpsc::Receiver<PeerEvent>), PeerError> {
        let (offer, offer_pt) = inspect_offer(offer_sdp)?;
        let nat = parse_nat_mappings(&config.nat_1to1_ips)?;
        if config.ice_lite && !config.ice_servers.is_empty() {
            // The library still queries them (delaying the answer until it has), but an
            // ICE-lite agent only uses host candidates.
            warn!("ICE servers configured on an ICE-lite server peer: they only slow gathering");
        }
        let ice_servers: Vec<RTCIceServer> = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();

        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let shared = PeerShared::new(events_tx);
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            shared: Arc::clone(&shared),
            gathered: gathered_tx,
            side: "server",
        });

        let mut last_err = None;
        let mut pc = None;
        let mut codec = None;
        for addrs in bind_attempts(config)? {
            let (media_engine, c) = opus_media_engine(offer_pt, &config.opus_fmtp)?;
            match build_connection(
                addrs.clone(),
                media_engine,
                setting_engine(config.ice_lite, Some(SERVER_ICE_CHECK_INTERVAL), None),
                ice_servers.clone(),
                Arc::clone(&handler),
            )
            .await
            {
                Ok(p) => {
                    pc = Some(p);
                    codec = Some(c);
                    break;
                }
                Err(e) => {
                    debug!(?addrs, error = %e, "bind attempt failed");
                    last_err = Some(e);
                }
            }
        }
        let (Some(pc), Some(codec)) = (pc, codec) else {
            return Err(last_err.unwrap_or_else(|| internal("build", "no address")));
        };

        match Self::negotiate(&pc, offer, &codec, role, &mut gathered_rx).await {
            Ok((track, ssrc, payload_type, answer)) => {
                let answer = apply_nat_1to1(&answer, &nat);
                spawn_liveness_watchdog(&shared, config.liveness, "server");
                tracing::trace!(%answer, "server answer");
                let peer = ServerPeer {
                    conn: OwnedConnection::new(pc, shared),
                    track,
                    ssrc,
                    payload_type,
                    offer: tokio::sync::Mutex::new(offer_sdp.to_owned()),
                    nat,
                };
                Ok((peer, answer, events_rx))
            }
            Err(e) => {
                // Stop the driver: a dropped connection would otherwise keep running.
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    async fn negotiate(
        pc: &Arc<dyn PeerConnection>,
        offer: RTCSessionDescription,
        codec: &RTCRtpCodec,
        role: PeerRole,
        gathered_rx: &mut watch::Receiver<bool>,
    ) -> Result<(Arc<TrackLocalStaticSample>, u32, u8, String), PeerError> {
        pc.set_remote_description(offer)
            .await
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;

        // Adding the track after the offer reuses the offered audio transceiver.
        let (track, ssrc) = opus_track(codec, "server")?;
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| internal("add track", e))?;
        if role == PeerRole::Monitor {
            for transceiver in pc.get_transceivers().await {
                let Ok(Some(s)) = transceiver.sender().await else {
                    continue;
                };
                if s.id() == sender.id() {
                    transceiver
                        .set_direction(RTCRtpTransceiverDirection::Sendonly)
                        .await
                        .map_err(|e| internal("set monitor direction", e))?;
                }
            }
        }

        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| PeerError::InvalidSdp(format!("cannot answer: {e}")))?;
        pc.set_local_description(answer)
            .await
            .map_err(|e| internal("set local description", e))?;
        wait_gathered(gathered_rx, "server").await;

        let payload_type = negotiated_payload_type(&sender)
            .await
            .ok_or_else(|| internal("negotiate", "no Opus codec negotiated for sending"))?;
        let answer = pc
            .local_description()
            .await
            .ok_or_else(|| internal("answer", "no local description"))?;
        Ok((track, ssrc, payload_type, answer.sdp))
    }

    /// Sends one encoded Opus frame (normally 20 ms) to the browser. Fails until the
    /// connection's sender is bound (i.e. before DTLS completes) and after close.
    pub async fn send_opus(&self, frame: Bytes, duration: Duration) -> Result<(), PeerError> {
        write_opus(&self.track, self.ssrc, self.payload_type, frame, duration).await
    }

    /// Trickle ICE from the browser: one `candidate:...` attribute (with or without the "a="
    /// prefix), or end-of-candidates (empty string or `end-of-candidates`).
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        mline_index: Option<u16>,
    ) -> Result<(), PeerError> {
        add_candidate(&self.conn.pc, candidate, sdp_mid, mline_index).await
    }

    /// WHIP ICE restart (RFC 9725 §4.3): the client's new ICE credentials in, the server's
    /// new credentials and candidates out. Media and DTLS carry on; checks with the new
    /// credentials select the new path. The client's current credentials are no restart:
    /// `None` (a trickle fragment names them too).
    pub async fn restart_ice(
        &self,
        ufrag: &str,
        pwd: &str,
    ) -> Result<Option<IceRestart>, PeerError> {
        let mut offer = self.offer.lock().await;
        if restart::credentials_of(&offer).is_some_and(|c| c.ufrag == ufrag && c.pwd == pwd) {
            return Ok(None);
        }
        restart::check_credentials(ufrag, pwd)?;
        let renewed = restart::offer_with_credentials(&offer, ufrag, pwd);
        let desc = RTCSessionDescription::offer(renewed.clone())
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        let pc = &self.conn.pc;
        pc.set_remote_description(desc)
            .await
            .map_err(|e| PeerError::InvalidSdp(format!("ICE restart: {e}")))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| internal("ICE restart answer", e))?;
        pc.set_local_description(answer)
            .await
            .map_err(|e| internal("ICE restart local description", e))?;
        let answer = pc
            .local_description()
            .await
            .ok_or_else(|| internal("ICE restart", "no local description"))?;
        let answer = apply_nat_1to1(&answer.sdp, &self.nat);
        let ours = restart::credentials_of(&answer)
            .ok_or_else(|| internal("ICE restart", "answer without ICE credentials"))?;
        *offer = renewed;
        debug!(ufrag = %ours.ufrag, candidates = ours.candidates.len(), "ICE restarted");
        Ok(Some(ours))
    }

    /// The client's candidate in the selected ICE pair (host, srflx, prflx or relay; UDP or
    /// TCP), once connected.
    pub async fn selected_path(&self) -> Option<SelectedPath> {
        let report = self
            .conn
            .pc
            .get_stats(Instant::now(), rtc::statistics::StatsSelector::None)
            .await;
        if let Some(path) = selected::from_stats(&report) {
            return Some(path);
        }
        // Where the next datagram goes: AI audio leaves every 20 ms.
        let activity = &self.conn.shared.activity;
        activity.want_destination();
        let mut addr = None;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            addr = activity.destination();
            if addr.is_some() {
                break;
            }
        }
        Some(selected::from_sdp(&self.offer.lock().await, addr?))
    }

    /// What the other side's latest RTCP report block says of the audio this peer sends;
    /// `None` before any report.
    pub fn receiver_report(&self) -> Option<ReportBlock> {
        self.conn.shared.report_blocks.latest()
    }

    /// Audio packets dropped because the event channel was full.
    pub fn dropped_audio_packets(&self) -> u64 {
        self.conn.shared.dropped_audio()
    }

    /// Closes the connection (idempotent) and emits [`PeerEvent::Closed`] once.
    pub async fn close(&self) {
        self.conn.close().await;
    }
}
