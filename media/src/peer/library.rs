//! What the server peer and the client peer share on top of webrtc 0.21: the callback handler
//! and the event channel it feeds, the liveness watchdog, the Opus media engine and track, the
//! setting engine, and building a connection on one watched UDP socket.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, Registry, SettingEngine, SettingEngineBuilder, configure_rtcp_reports,
};
use webrtc::rtp_transceiver::RtpSender;

use super::liveness::{LinkChange, Liveness, LivenessConfig};
use super::report_blocks::{ReportBlockReader, ReportBlocks};
use super::socket::{LinkActivity, WatchedRuntime};

/// Where the report block reader sits in the interceptor chain: after the library's sender
/// report interceptor (`Slot::SenderReport` = 11 000), before the PLI generator (12 000).
const REPORT_BLOCK_SLOT: usize = 11_500;
use super::{PeerError, PeerEvent, RtpAudioPacket};

/// Capacity of the event channel handed to the caller (about 10 s of 20 ms audio).
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 512;
/// Host-only gathering finishes in a few milliseconds; this only guards against a stuck driver.
pub(crate) const GATHER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the liveness watchdog looks at the socket.
const LIVENESS_POLL: Duration = Duration::from_millis(500);

pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> PeerError {
    PeerError::Internal(format!("{context}: {err}"))
}

/// State shared between a peer handle, its library callbacks and its liveness watchdog.
pub(crate) struct PeerShared {
    events: mpsc::Sender<PeerEvent>,
    dropped_audio: AtomicU64,
    closed_sent: AtomicBool,
    pub(crate) activity: Arc<LinkActivity>,
    /// The other side's latest report on the audio this peer sends.
    pub(crate) report_blocks: Arc<ReportBlocks>,
    /// Set when DTLS is up; the watchdog counts silence from then.
    connected: AtomicBool,
}

impl PeerShared {
    pub(crate) fn new(events: mpsc::Sender<PeerEvent>) -> Arc<Self> {
        Arc::new(Self {
            events,
            dropped_audio: AtomicU64::new(0),
            closed_sent: AtomicBool::new(false),
            activity: LinkActivity::new(),
            report_blocks: Arc::default(),
            connected: AtomicBool::new(false),
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

    fn is_closed(&self) -> bool {
        self.closed_sent.load(Ordering::Acquire)
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

/// Watches the peer's socket with the [`Liveness`] rule until the peer closes or fails; reports
/// `Disconnected` (quiet), `Restored` and `Failed` on the peer's event channel.
pub(crate) fn spawn_liveness_watchdog(
    shared: &Arc<PeerShared>,
    config: LivenessConfig,
    side: &'static str,
) {
    let shared = Arc::downgrade(shared);
    let mut liveness = Liveness::new(config, Instant::now());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LIVENESS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.is_closed() {
                return;
            }
            let now = Instant::now();
            if shared.connected.load(Ordering::Acquire) {
                liveness.connected(now);
            }
            let last_heard = shared.activity.last_heard();
            let event = match liveness.poll(now, last_heard) {
                None => continue,
                Some(LinkChange::Quiet) => PeerEvent::Disconnected,
                Some(LinkChange::Back) => PeerEvent::Restored,
                Some(LinkChange::Failed) => PeerEvent::Failed,
            };
            let silent_ms = last_heard.map(|t| now.saturating_duration_since(t).as_millis());
            info!(side, ?event, ?silent_ms, "peer liveness");
            shared.send_state(event);
            if liveness.has_failed() {
                return;
            }
        }
    });
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
            RTCPeerConnectionState::Connected => {
                self.shared.connected.store(true, Ordering::Release);
                PeerEvent::Connected
            }
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
/// check pace, and the consent checks' interval of a full agent (`None`: the library's 2 s).
/// The library's own disconnected/failed timers are off: they count only STUN, and
/// [`spawn_liveness_watchdog`] decides instead.
pub(crate) fn setting_engine(
    ice_lite: bool,
    check_interval: Option<Duration>,
    consent_interval: Option<Duration>,
) -> SettingEngine {
    let mut builder = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_lite(ice_lite)
        .with_ice_timeouts(Some(Duration::ZERO), Some(Duration::ZERO), consent_interval);
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
    addrs: Vec<SocketAddr>,
    media_engine: MediaEngine,
    setting_engine: SettingEngine,
    ice_servers: Vec<RTCIceServer>,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let runtime = WatchedRuntime::new(Arc::clone(&handler.shared.activity))
        .map_err(|e| internal("runtime", e))?;
    // Audio only: RTCP sender/receiver reports, no NACK/TWCC/simulcast interceptors; and the
    // reader of the other side's report blocks, after the library's report interceptors.
    let registry = configure_rtcp_reports(Registry::new()).with(
        rtc::interceptor::Slot::from(REPORT_BLOCK_SLOT),
        ReportBlockReader::new(Arc::clone(&handler.shared.report_blocks)),
    );
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media_engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_runtime(runtime)
        .with_udp_addrs(addrs.clone())
        .build()
        .await
        .map_err(|e| internal(&format!("build peer connection on {addrs:?}"), e))?;
    Ok(Arc::new(pc))
}

/// A library connection owned by one peer handle: closed once, by [`Self::close`] or when the
/// handle is dropped (the library's driver outlives a dropped handle otherwise).
pub(crate) struct OwnedConnection {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) shared: Arc<PeerShared>,
    closed: AtomicBool,
}

impl OwnedConnection {
    pub(crate) fn new(pc: Arc<dyn PeerConnection>, shared: Arc<PeerShared>) -> Self {
        Self {
            pc,
            shared,
            closed: AtomicBool::new(false),
        }
    }

    /// Closes the connection (idempotent) and emits [`PeerEvent::Closed`] once.
    pub(crate) async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.pc.close().await {
            debug!(error = %e, "close");
        }
        self.shared.send_closed();
    }
}

impl Drop for OwnedConnection {
    fn drop(&mut self) {
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
