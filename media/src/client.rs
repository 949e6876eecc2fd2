//! A lean offering WebRTC peer (what a browser does), built on the same library as
//! [`crate::peer::ServerPeer`]. Used by tests and by the load generator that drives many
//! participants against the server over loopback: it offers one Opus audio m-line (sendrecv,
//! or recvonly to act as a monitor), gathers host candidates on one concrete IP (full ICE, mDNS
//! off, no STUN/TURN), and moves Opus packets without decoding them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::RTCSessionDescription;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

use rtc::peer_connection::configuration::RTCOfferOptions;

use crate::peer::{
    DEFAULT_OPUS_FMTP, EVENT_CHANNEL_CAPACITY, Handler, IceRestart, LivenessConfig,
    OwnedConnection, PeerError, PeerEvent, PeerShared, add_candidate, answer_with_credentials,
    build_connection, credentials_of, negotiated_payload_type, opus_media_engine, opus_track,
    setting_engine, spawn_liveness_watchdog, wait_gathered, write_opus,
};

/// Payload type the client offers for Opus (what Chromium uses).
const CLIENT_OPUS_PT: u8 = 111;

/// Configuration of a client (offering) peer.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Concrete IP to gather the host candidate on (one ephemeral UDP port).
    pub bind_ip: IpAddr,
    /// Opus fmtp offered.
    pub opus_fmtp: String,
    /// Offer recvonly audio (behave like a monitor) instead of sendrecv.
    pub receive_only: bool,
    /// Interval of the client's consent checks (RFC 7675) once connected; `None`: 2 s.
    /// Firefox and aiortc use 4-6 s.
    pub consent_interval: Option<Duration>,
    /// Pace of the client's connectivity checks while connecting. The library's default
    /// (200 ms) delays the nomination, and so the connection, by up to that much; browsers
    /// pace checks at about 20-50 ms.
    pub check_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            opus_fmtp: DEFAULT_OPUS_FMTP.to_owned(),
            receive_only: false,
            consent_interval: None,
            check_interval: Duration::from_millis(20),
        }
    }
}

/// Outgoing audio of a client: the track, its SSRC and its sender.
struct Outgoing {
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    sender: Arc<dyn RtpSender>,
}

/// The offering side of one connection.
pub struct ClientPeer {
    conn: OwnedConnection,
    outgoing: Option<Outgoing>,
    payload_type: OnceLock<u8>,
    /// The server's answer as last applied (an ICE restart patches its credentials).
    answer: tokio::sync::Mutex<Option<String>>,
}

impl ClientPeer {
    /// Creates the connection and its offer (with all host candidates gathered).
    pub async fn offer(
        config: &ClientConfig,
    ) -> Result<(ClientPeer, String, mpsc::Receiver<PeerEvent>), PeerError> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let shared = PeerShared::new(events_tx);
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            shared: Arc::clone(&shared),
            gathered: gathered_tx,
            side: "client",
        });
        let (media_engine, codec) = opus_media_engine(CLIENT_OPUS_PT, &config.opus_fmtp)?;
        let pc = build_connection(
            vec![SocketAddr::new(config.bind_ip, 0)],
            media_engine,
            setting_engine(false, Some(config.check_interval), config.consent_interval),
            Vec::new(),
            handler,
        )
        .await?;

        let result = async {
            let outgoing = if config.receive_only {
                pc.add_transceiver_from_kind(
                    rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(|e| PeerError::Internal(format!("add recvonly transceiver: {e}")))?;
                None
            } else {
                let (track, ssrc) = opus_track(&codec, "client")?;
                let sender = pc
                    .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                    .await
                    .map_err(|e| PeerError::Internal(format!("add track: {e}")))?;
                Some(Outgoing {
                    track,
                    ssrc,
                    sender,
                })
            };
            let offer = pc
                .create_offer(None)
                .await
                .map_err(|e| PeerError::Internal(format!("create offer: {e}")))?;
            pc.set_local_description(offer)
                .await
                .map_err(|e| PeerError::Internal(format!("set local description: {e}")))?;
            wait_gathered(&mut gathered_rx, "client").await;
            let offer = pc
                .local_description()
                .await
                .ok_or_else(|| PeerError::Internal("no local description".to_owned()))?;
            Ok::<_, PeerError>((outgoing, offer.sdp))
        }
        .await;

        match result {
            Ok((outgoing, offer_sdp)) => {
                spawn_liveness_watchdog(&shared, LivenessConfig::default(), "client");
                Ok((
                    ClientPeer {
                        conn: OwnedConnection::new(pc, shared),
                        outgoing,
                        payload_type: OnceLock::new(),
                        answer: tokio::sync::Mutex::new(None),
                    },
                    offer_sdp,
                    events_rx,
                ))
            }
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    /// Applies the server's answer; ICE/DTLS start right after.
    pub async fn apply_answer(&self, answer_sdp: &str) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        self.conn
            .pc
            .set_remote_description(answer)
            .await
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        *self.answer.lock().await = Some(answer_sdp.to_owned());
        if let Some(out) = &self.outgoing
            && let Some(pt) = negotiated_payload_type(&out.sender).await
        {
            let _ = self.payload_type.set(pt);
        }
        Ok(())
    }

    /// Starts an ICE restart as a WHIP client does (RFC 9725 §4.3): a new offer with fresh ICE
    /// credentials is applied locally; its credentials are what the client sends the server.
    pub async fn restart_ice(&self) -> Result<IceRestart, PeerError> {
        let offer = self
            .conn
            .pc
            .create_offer(Some(RTCOfferOptions { ice_restart: true }))
            .await
            .map_err(|e| PeerError::Internal(format!("restart offer: {e}")))?;
        self.conn
            .pc
            .set_local_description(offer)
            .await
            .map_err(|e| PeerError::Internal(format!("restart local description: {e}")))?;
        let offer = self
            .conn
            .pc
            .local_description()
            .await
            .ok_or_else(|| PeerError::Internal("no local description".to_owned()))?;
        credentials_of(&offer.sdp)
            .ok_or_else(|| PeerError::Internal("restart offer without credentials".to_owned()))
    }

    /// Completes an ICE restart with the server's new credentials and candidates.
    pub async fn finish_ice_restart(&self, server: &IceRestart) -> Result<(), PeerError> {
        let mut answer = self.answer.lock().await;
        let Some(previous) = answer.as_deref() else {
            return Err(PeerError::Internal("no answer applied yet".to_owned()));
        };
        let renewed = answer_with_credentials(previous, server);
        let desc = RTCSessionDescription::answer(renewed.clone())
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        self.conn
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        *answer = Some(renewed);
        Ok(())
    }

    /// Sends one encoded Opus frame. Fails for a receive-only client, before the answer is
    /// applied, and until DTLS has completed.
    pub async fn send_opus(&self, frame: Bytes, duration: Duration) -> Result<(), PeerError> {
        let Some(out) = &self.outgoing else {
            return Err(PeerError::Internal(
                "receive-only client cannot send".to_owned(),
            ));
        };
        let Some(&pt) = self.payload_type.get() else {
            return Err(PeerError::Internal("answer not applied yet".to_owned()));
        };
        write_opus(&out.track, out.ssrc, pt, frame, duration).await
    }

    /// Adds a trickled remote candidate (same forms as the server accepts).
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        mline_index: Option<u16>,
    ) -> Result<(), PeerError> {
        add_candidate(&self.conn.pc, candidate, sdp_mid, mline_index).await
    }

    /// Cuts (or restores) the path from this client: every datagram it sends — consent
    /// checks, media, RTCP — is dropped, as when a network path goes away.
    pub fn cut_path(&self, cut: bool) {
        self.conn.shared.activity.set_mute_outgoing(cut);
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
