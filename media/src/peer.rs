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
//!   this kind of host); host candidates are gathered only on the concrete `bind_ip`.
//! - The library keeps `SettingEngine::nat_1to1_ips` but never applies it, so the public-IP
//!   mapping is done here by rewriting host candidates in the answer SDP.
//! - There is no UDP port-range setting: a free port in the range is chosen here and the
//!   connection is bound to it (retried on a bind race).
//! - ICE-lite is `SettingEngineBuilder::with_lite(true)`; the lite agent still only reports
//!   "connected" on its check tick (200 ms by default), so the tick is set to 20 ms here,
//!   which takes loopback offer-to-connected from ~200 ms to ~25 ms.
//! - Handler callbacks run inside the library's driver loop, so they never block: RTP is
//!   forwarded from a separate task with `try_send` (full channel = packet dropped and counted).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngine, SettingEngineBuilder, configure_rtcp_reports,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RtpSender};

/// Capacity of the event channel handed to the caller (about 10 s of 20 ms audio).
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 512;
/// Host-only gathering finishes in a few milliseconds; this only guards against a stuck driver.
pub(crate) const GATHER_TIMEOUT: Duration = Duration::from_secs(3);
/// The ICE agent's tick while connecting. Even an ICE-lite agent (which sends no checks) only
/// moves to connected, and so starts DTLS, on this tick; the library default of 200 ms adds up
/// to 200 ms (about 180 ms measured on loopback) to every connection. While connected the
/// agent ticks at the 2 s keepalive interval instead, so this costs nothing afterwards.
const SERVER_ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// How many ports of a configured range are tried before giving up.
const MAX_BIND_ATTEMPTS: usize = 16;

/// Configuration of a server-side peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Concrete IP the host candidates are gathered on, e.g. 127.0.0.1 (never 0.0.0.0).
    pub bind_ip: IpAddr,
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
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            udp_port_min: 0,
            udp_port_max: 0,
            nat_1to1_ips: Vec::new(),
            ice_servers: Vec::new(),
            ice_lite: true,
            opus_fmtp: DEFAULT_OPUS_FMTP.to_owned(),
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
    Connected,
    Disconnected,
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

fn internal(context: &str, err: impl std::fmt::Display) -> PeerError {
    PeerError::Internal(format!("{context}: {err}"))
}

/// State shared between a peer handle and its library callbacks.
pub(crate) struct PeerShared {
    events: mpsc::Sender<PeerEvent>,
    dropped_audio: AtomicU64,
    closed_sent: AtomicBool,
}

impl PeerShared {
    pub(crate) fn new(events: mpsc::Sender<PeerEvent>) -> Arc<Self> {
        Arc::new(Self {
            events,
            dropped_audio: AtomicU64::new(0),
            closed_sent: AtomicBool::new(false),
        })
    }

    pub(crate) fn dropped_audio(&self) -> u64 {
        self.dropped_audio.load(Ordering::Relaxed)
    }

    /// Delivers a state event without blocking the caller; if the channel is full of audio the
    /// event is handed to a task that waits for room, so it is delayed but never lost.
    fn send_state(&self, event: PeerEvent) {
        if matches!(event, PeerEvent::Closed) && self.closed_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let tx = self.events.clone();
                tokio::spawn(async move {
                    let _ = tx.send(event).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(crate) fn send_closed(&self) {
        self.send_state(PeerEvent::Closed);
    }

    fn forward_audio(&self, packet: RtpAudioPacket) -> bool {
        match self.events.try_send(PeerEvent::Audio(packet)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped_audio.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(500) {
                    warn!(
                        dropped = n,
                        "peer event channel full, dropping audio packets"
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Library callback handler shared by the server and the client peer.
pub(crate) struct Handler {
    pub(crate) shared: Arc<PeerShared>,
    pub(crate) gathered: watch::Sender<bool>,
    pub(crate) side: &'static str,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        debug!(side = self.side, candidate = %event.candidate, "local ICE candidate");
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        debug!(side = self.side, ?state, "ICE gathering state");
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        info!(side = self.side, %state, "peer connection state");
        let event = match state {
            RTCPeerConnectionState::Connected => PeerEvent::Connected,
            RTCPeerConnectionState::Disconnected => PeerEvent::Disconnected,
            RTCPeerConnectionState::Failed => PeerEvent::Failed,
            RTCPeerConnectionState::Closed => PeerEvent::Closed,
            _ => return,
        };
        self.shared.send_state(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Runs inside the driver loop: hand the track to a task at once.
        let shared = Arc::clone(&self.shared);
        let side = self.side;
        tokio::spawn(async move {
            if track.kind().await != RtpCodecKind::Audio {
                debug!(side, "ignoring non-audio remote track");
                return;
            }
            debug!(side, "remote audio track started");
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        let packet = RtpAudioPacket {
                            sequence: packet.header.sequence_number,
                            timestamp: packet.header.timestamp,
                            payload: packet.payload,
                            arrival: Instant::now(),
                        };
                        if !shared.forward_audio(packet) {
                            break;
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            debug!(side, "remote audio track ended");
        });
    }
}

/// A media engine with Opus (48000/2) as the only codec.
pub(crate) fn opus_media_engine(
    payload_type: u8,
    fmtp: &str,
) -> Result<(MediaEngine, RTCRtpCodec), PeerError> {
    let codec = RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    };
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec.clone(),
                payload_type,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| internal("register opus", e))?;
    Ok((media_engine, codec))
}

/// Setting engine: mDNS off (multicast sockets fail here), optional ICE-lite, optional ICE
/// check pace.
pub(crate) fn setting_engine(ice_lite: bool, check_interval: Option<Duration>) -> SettingEngine {
    let mut builder = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_lite(ice_lite);
    if let Some(interval) = check_interval {
        builder = builder.with_ice_connection_attempts(Some(interval), None);
    }
    builder.build()
}

/// A random 32-bit value (SSRCs) without pulling in a RNG crate.
pub(crate) fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}

/// A local Opus track with a fresh SSRC.
pub(crate) fn opus_track(
    codec: &RTCRtpCodec,
    label: &str,
) -> Result<(Arc<TrackLocalStaticSample>, u32), PeerError> {
    let ssrc = random_u32().max(1);
    let id = format!("{label}-{ssrc:08x}");
    let track = MediaStreamTrack::new(
        format!("earshot-{id}"),
        format!("earshot-audio-{id}"),
        label.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec.clone(),
            ..Default::default()
        }],
    );
    let track = TrackLocalStaticSample::new(Instant::now(), track)
        .map_err(|e| internal("create local track", e))?;
    Ok((Arc::new(track), ssrc))
}

/// The payload type negotiated for a sender (known once both descriptions are applied).
pub(crate) async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
}

/// Packetizes one Opus frame onto `track`.
pub(crate) async fn write_opus(
    track: &TrackLocalStaticSample,
    ssrc: u32,
    payload_type: u8,
    frame: Bytes,
    duration: Duration,
) -> Result<(), PeerError> {
    let sample = Sample {
        data: frame,
        duration,
        ..Sample::new(Instant::now())
    };
    track
        .write_sample(ssrc, payload_type, &sample, &[])
        .await
        .map_err(|e| internal("write opus sample", e))
}

/// Waits until host gathering has completed (bounded by [`GATHER_TIMEOUT`]).
pub(crate) async fn wait_gathered(rx: &mut watch::Receiver<bool>, side: &str) {
    match tokio::time::timeout(GATHER_TIMEOUT, rx.wait_for(|done| *done)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => {
            warn!(
                side,
                "ICE gathering did not complete in time; using what we have"
            );
        }
    }
}

/// Builds a peer connection bound on exactly one UDP socket at `addr`.
pub(crate) async fn build_connection(
    addr: SocketAddr,
    media_engine: MediaEngine,
    setting_engine: SettingEngine,
    ice_servers: Vec<RTCIceServer>,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    // Audio only: RTCP sender/receiver reports, no NACK/TWCC/simulcast interceptors.
    let registry = configure_rtcp_reports(Registry::new());
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media_engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![addr])
        .build()
        .await
        .map_err(|e| internal(&format!("build peer connection on {addr}"), e))?;
    Ok(Arc::new(pc))
}

/// Rotating start index into the configured port range, so successive peers do not all
/// probe the range from its first port.
static PORT_CURSOR: AtomicU32 = AtomicU32::new(0);

/// Candidate bind addresses: `ip:0` for an ephemeral port, else free-looking ports of the
/// range starting at a rotating cursor.
fn bind_candidates(config: &PeerConfig) -> Result<Vec<SocketAddr>, PeerError> {
    let (min, max) = (config.udp_port_min, config.udp_port_max);
    if min == 0 && max == 0 {
        return Ok(vec![SocketAddr::new(config.bind_ip, 0)]);
    }
    if min == 0 || max < min {
        return Err(PeerError::Internal(format!(
            "invalid UDP port range {min}-{max}"
        )));
    }
    let span = u32::from(max - min) + 1;
    let start = PORT_CURSOR.fetch_add(1, Ordering::Relaxed) % span;
    let mut out = Vec::new();
    for i in 0..span {
        let port = min as u32 + (start + i) % span;
        let addr = SocketAddr::new(config.bind_ip, port as u16);
        // Probe: the library reports a failed bind only as a failed build, which is costlier.
        if UdpSocket::bind(addr).is_ok() {
            out.push(addr);
            if out.len() >= MAX_BIND_ATTEMPTS {
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(PeerError::Internal(format!(
            "no free UDP port in {min}-{max} on {}",
            config.bind_ip
        )));
    }
    Ok(out)
}

/// One parsed `nat_1to1_ips` entry.
struct NatMapping {
    public: IpAddr,
    private: Option<IpAddr>,
}

fn parse_nat_mappings(entries: &[String]) -> Result<Vec<NatMapping>, PeerError> {
    entries
        .iter()
        .map(|entry| {
            let bad = || PeerError::Internal(format!("invalid nat_1to1_ips entry {entry:?}"));
            let (public, private) = match entry.split_once('/') {
                Some((p, q)) => (p.trim(), Some(q.trim())),
                None => (entry.trim(), None),
            };
            Ok(NatMapping {
                public: public.parse().map_err(|_| bad())?,
                private: match private {
                    Some(q) => Some(q.parse().map_err(|_| bad())?),
                    None => None,
                },
            })
        })
        .collect()
}

fn map_host_ip(ip: IpAddr, mappings: &[NatMapping]) -> Option<IpAddr> {
    mappings
        .iter()
        .find(|m| m.private == Some(ip))
        .or_else(|| {
            mappings
                .iter()
                .find(|m| m.private.is_none() && m.public.is_ipv4() == ip.is_ipv4())
        })
        .map(|m| m.public)
}

/// Rewrites the address of host candidates (`a=candidate:... typ host`) per the 1:1 NAT
/// mapping. The socket stays bound to the private address; only what the browser is told
/// changes, which is what a 1:1 NAT needs.
fn apply_nat_1to1(sdp: &str, mappings: &[NatMapping]) -> String {
    if mappings.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let is_host = fields
                .iter()
                .position(|f| *f == "typ")
                .and_then(|i| fields.get(i + 1))
                .is_some_and(|t| *t == "host");
            if is_host
                && let Some(ip) = fields.get(4).and_then(|f| f.parse::<IpAddr>().ok())
                && let Some(public) = map_host_ip(ip, mappings)
            {
                let public = public.to_string();
                fields[4] = &public;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(ending);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// Validates the offer and returns the Opus payload type of its first usable audio m-line.
fn inspect_offer(offer_sdp: &str) -> Result<(RTCSessionDescription, u8), PeerError> {
    if offer_sdp.trim().is_empty() {
        return Err(PeerError::InvalidSdp("empty offer".to_owned()));
    }
    let parsed = std::panic::catch_unwind(|| RTCSessionDescription::offer(offer_sdp.to_owned()))
        .map_err(|_| PeerError::InvalidSdp("SDP parser panicked".to_owned()))?;
    let desc = parsed.map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
    let session = desc
        .unmarshal()
        .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
    if session.media_descriptions.is_empty() {
        return Err(PeerError::InvalidSdp("offer has no m-line".to_owned()));
    }
    let mut saw_audio = false;
    for media in &session.media_descriptions {
        if !media.media_name.media.eq_ignore_ascii_case("audio") || media.media_name.port.value == 0
        {
            continue;
        }
        saw_audio = true;
        for attr in &media.attributes {
            if attr.key != "rtpmap" {
                continue;
            }
            let Some(value) = attr.value.as_deref() else {
                continue;
            };
            let mut parts = value.split_whitespace();
            let (Some(pt), Some(encoding)) = (parts.next(), parts.next()) else {
                continue;
            };
            if encoding.to_ascii_lowercase().starts_with("opus/48000")
                && let Ok(pt) = pt.parse::<u8>()
                && pt < 128
            {
                return Ok((desc, pt));
            }
        }
    }
    if saw_audio {
        debug!("offer has audio but no Opus");
    }
    Err(PeerError::NoAudio)
}

/// Normalises a trickled candidate. `Ok(None)` = nothing to add (end-of-candidates, or an mDNS
/// `.local` candidate, which an ICE-lite server with mDNS disabled cannot use and does not
/// need: the browser's checks reveal its address as a peer-reflexive candidate).
pub(crate) fn normalise_candidate(candidate: &str) -> Result<Option<String>, PeerError> {
    let c = candidate.trim();
    let c = c.strip_prefix("a=").unwrap_or(c);
    if c.is_empty() || c == "end-of-candidates" {
        return Ok(None);
    }
    let Some(rest) = c.strip_prefix("candidate:") else {
        return Err(PeerError::InvalidCandidate(format!(
            "expected `candidate:...`, got {c:?}"
        )));
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() < 8 || fields[6] != "typ" {
        return Err(PeerError::InvalidCandidate(c.to_owned()));
    }
    if fields[4].ends_with(".local") {
        debug!(candidate = c, "skipping mDNS candidate");
        return Ok(None);
    }
    Ok(Some(c.to_owned()))
}

pub(crate) async fn add_candidate(
    pc: &Arc<dyn PeerConnection>,
    candidate: &str,
    sdp_mid: Option<String>,
    mline_index: Option<u16>,
) -> Result<(), PeerError> {
    let Some(candidate) = normalise_candidate(candidate)? else {
        return Ok(());
    };
    pc.add_ice_candidate(RTCIceCandidateInit {
        candidate: candidate.clone(),
        sdp_mid,
        sdp_mline_index: mline_index,
        ..Default::default()
    })
    .await
    .map_err(|e| PeerError::InvalidCandidate(format!("{candidate}: {e}")))
}

/// The server side of one browser connection.
pub struct ServerPeer {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    payload_type: u8,
    shared: Arc<PeerShared>,
    closed: AtomicBool,
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
        for addr in bind_candidates(config)? {
            let (media_engine, c) = opus_media_engine(offer_pt, &config.opus_fmtp)?;
            match build_connection(
                addr,
                media_engine,
                setting_engine(config.ice_lite, Some(SERVER_ICE_CHECK_INTERVAL)),
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
                    debug!(%addr, error = %e, "bind attempt failed");
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
                tracing::trace!(%answer, "server answer");
                let peer = ServerPeer {
                    pc,
                    track,
                    ssrc,
                    payload_type,
                    shared,
                    closed: AtomicBool::new(false),
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
        add_candidate(&self.pc, candidate, sdp_mid, mline_index).await
    }

    /// Audio packets dropped because the event channel was full.
    pub fn dropped_audio_packets(&self) -> u64 {
        self.shared.dropped_audio()
    }

    /// Closes the connection (idempotent) and emits [`PeerEvent::Closed`] once.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.pc.close().await {
            debug!(error = %e, "close");
        }
        self.shared.send_closed();
    }
}

impl Drop for ServerPeer {
    fn drop(&mut self) {
        // The library's driver outlives a dropped handle; stop it.
        if !self.closed.swap(true, Ordering::AcqRel)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let pc = Arc::clone(&self.pc);
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rewrites_only_host_candidates() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 1.1.1.1 50001 typ srflx raddr 10.0.0.5 rport 50000\r\n";
        let m = parse_nat_mappings(&["203.0.113.7".to_owned()]).expect("valid");
        let out = apply_nat_1to1(sdp, &m);
        assert!(out.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\n"));
        assert!(out.contains("1.1.1.1 50001 typ srflx"));
        let m = parse_nat_mappings(&["203.0.113.7/10.0.0.6".to_owned()]).expect("valid");
        assert_eq!(apply_nat_1to1(sdp, &m), sdp);
        assert!(parse_nat_mappings(&["nope".to_owned()]).is_err());
    }

    #[test]
    fn candidates_are_normalised() {
        let c = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host";
        assert_eq!(
            normalise_candidate(c).expect("ok").as_deref(),
            Some(&c[2..])
        );
        assert!(normalise_candidate("").expect("ok").is_none());
        assert!(
            normalise_candidate("a=end-of-candidates")
                .expect("ok")
                .is_none()
        );
        assert!(
            normalise_candidate("candidate:1 1 udp 1 abc.local 5000 typ host")
                .expect("ok")
                .is_none()
        );
        assert!(normalise_candidate("garbage").is_err());
        assert!(normalise_candidate("candidate:1 1 udp").is_err());
    }

    #[test]
    fn port_range_is_validated() {
        let mut c = PeerConfig {
            udp_port_min: 5000,
            udp_port_max: 4000,
            ..Default::default()
        };
        assert!(bind_candidates(&c).is_err());
        c.udp_port_min = 0;
        c.udp_port_max = 0;
        assert_eq!(bind_candidates(&c).expect("ok")[0].port(), 0);
    }
}
