//! Opus encode/decode at 48 kHz mono, and the per-participant decoder that turns
//! [`JitterOutput`]s into PCM frames.
//!
//! Owns: the libopus encoder/decoder state, the encoder settings operators can tune (bitrate,
//! complexity, FEC, DTX, expected loss, wideband), FEC steered by the loss the receiver
//! reports, and the rule for concealing a lost packet: in-band FEC
//! from the next packet when it is present, packet-loss concealment (PLC) otherwise.
//! A packet that fails to decode is concealed too; nothing here panics on network data.

use std::sync::Mutex;

use bytes::Bytes;
use opus::{Application, Bitrate, Channels};

use crate::jitter::JitterOutput;

/// Samples in one 20 ms frame at 48 kHz.
pub use crate::units::FRAME as FRAME_SAMPLES;
/// Internal sample rate.
pub use crate::units::SAMPLE_RATE;
/// Longest Opus packet: 120 ms at 48 kHz.
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// Output buffer for one encoded packet (far above 20 ms at 510 kbps).
const MAX_PACKET_BYTES: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("invalid opus setting: {0}")]
    InvalidSetting(&'static str),
    #[error("empty opus packet")]
    EmptyPacket,
}

pub type Result<T, E = CodecError> = std::result::Result<T, E>;

/// Encoder settings (F11: operators tune these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpusSettings {
    /// Target bitrate, 6_000 ..= 510_000.
    pub bitrate_bps: u32,
    /// 0 (cheapest) ..= 10 (best).
    pub complexity: u8,
    /// In-band forward error correction (LBRR); needs `expected_loss_pct > 0` to take effect.
    pub fec: bool,
    /// Discontinuous transmission (near-silent frames become tiny packets).
    pub dtx: bool,
    /// The least packet loss (0 ..= 100 %) the encoder prepares its FEC for. A session raises
    /// it to the loss its participant reports (RTCP receiver reports, see
    /// [`OpusEncoder::set_reported_loss`]): FEC bits cost quality on a clean path (PESQ-WB 4.47
    /// without, 4.19 with, for agent speech at 48 kbps), so they are spent only where packets
    /// are lost.
    pub expected_loss_pct: u8,
    /// Code at most wideband (8 kHz audio band, Opus' SILK speech mode). The AI audio sent here
    /// is 16 kHz speech (agents send 16 kHz; the built-in prompts are 16 kHz), so coding the
    /// full band spends bits and CPU on nothing: for agent speech at 48 kbps PESQ-WB 4.47 in
    /// about half the encoding time of fullband at 32 kbps (3.43). `false`: fullband.
    #[serde(default = "yes")]
    pub wideband: bool,
}

fn yes() -> bool {
    true
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 48_000,
            complexity: 5,
            fec: true,
            dtx: false,
            expected_loss_pct: 0,
            wideband: true,
        }
    }
}

impl OpusSettings {
    /// Check ranges; returns the first problem found.
    pub fn validate(&self) -> Result<()> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(CodecError::InvalidSetting(
                "bitrate_bps must be 6000..=510000",
            ));
        }
        if self.complexity > 10 {
            return Err(CodecError::InvalidSetting("complexity must be 0..=10"));
        }
        if self.expected_loss_pct > 100 {
            return Err(CodecError::InvalidSetting(
                "expected_loss_pct must be 0..=100",
            ));
        }
        Ok(())
    }
}

/// Wraps a libopus state so the owner is `Sync` (libopus states are `Send` only).
/// The state is only reached through `&mut self` ([`Mutex::get_mut`] never locks), so this is
/// free at run time and lets sessions hold codecs across `.await` on a shared reference.
struct Exclusive<T>(Mutex<T>);

impl<T> Exclusive<T> {
    fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    fn get(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The most loss FEC is prepared for.
const MAX_FEC_LOSS_PCT: u8 = 30;

/// Opus encoder for 20 ms frames of 48 kHz mono speech.
pub struct OpusEncoder {
    inner: Exclusive<opus::Encoder>,
    out: Box<[u8; MAX_PACKET_BYTES]>,
    settings: OpusSettings,
    /// The loss the encoder prepares its FEC for now.
    loss_pct: u8,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl OpusEncoder {
    pub fn new(settings: OpusSettings) -> Result<Self> {
        settings.validate()?;
        let mut inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        inner.set_bitrate(Bitrate::Bits(settings.bitrate_bps as i32))?;
        inner.set_complexity(i32::from(settings.complexity))?;
        inner.set_inband_fec(settings.fec)?;
        inner.set_packet_loss_perc(i32::from(settings.expected_loss_pct))?;
        inner.set_dtx(settings.dtx)?;
        if settings.wideband {
            inner.set_max_bandwidth(opus::Bandwidth::Wideband)?;
        }
        Ok(Self {
            inner: Exclusive::new(inner),
            out: Box::new([0; MAX_PACKET_BYTES]),
            settings,
            loss_pct: settings.expected_loss_pct,
        })
    }

    /// The loss (%) the encoder prepares its FEC for now (0 = no FEC bits).
    pub fn prepared_loss(&self) -> u8 {
        if self.settings.fec { self.loss_pct } else { 0 }
    }

    /// The receiver reports `pct` % of this stream's packets lost lately: with FEC on, the
    /// encoder prepares for that much loss (never less than the configured
    /// `expected_loss_pct`, never more than 30 %: beyond that FEC cannot keep up anyway).
    /// Returns the loss the encoder now prepares for.
    pub fn set_reported_loss(&mut self, pct: u8) -> u8 {
        if !self.settings.fec {
            return self.loss_pct;
        }
        let want = pct
            .min(MAX_FEC_LOSS_PCT)
            .max(self.settings.expected_loss_pct);
        if want != self.loss_pct
            && self
                .inner
                .get()
                .set_packet_loss_perc(i32::from(want))
                .is_ok()
        {
            self.loss_pct = want;
        }
        self.loss_pct
    }

    pub fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// Encoder lookahead in samples: decoded audio lags the input by this much.
    pub fn lookahead(&mut self) -> Result<usize> {
        Ok(usize::try_from(self.inner.get().get_lookahead()?).unwrap_or(0))
    }

    /// Encode one 20 ms frame into one packet.
    pub fn encode(&mut self, frame: &[i16; FRAME_SAMPLES]) -> Result<Bytes> {
        let n = self.inner.get().encode(frame, &mut self.out[..])?;
        Ok(Bytes::copy_from_slice(&self.out[..n]))
    }
}

/// Opus decoder for 48 kHz mono; returns slices of an internal buffer.
pub struct OpusDecoder {
    inner: Exclusive<opus::Decoder>,
    pcm: Box<[i16; MAX_PACKET_SAMPLES]>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self> {
        Ok(Self {
            inner: Exclusive::new(opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?),
            pcm: Box::new([0; MAX_PACKET_SAMPLES]),
        })
    }

    /// Decode one packet. Errors on empty or corrupt packets (the state stays usable).
    pub fn decode(&mut self, payload: &[u8]) -> Result<&[i16]> {
        if payload.is_empty() {
            return Err(CodecError::EmptyPacket);
        }
        let n = self.inner.get().decode(payload, &mut self.pcm[..], false)?;
        Ok(&self.pcm[..n.min(MAX_PACKET_SAMPLES)])
    }

    /// Produce `samples` of audio for a lost packet: recovered from the in-band FEC data of
    /// `fec_from` (the packet after the lost one) when given and usable, else PLC.
    /// Never fails: a failure yields silence of the right length.
    pub fn conceal(&mut self, fec_from: Option<&[u8]>, samples: usize) -> &[i16] {
        // Opus wants a multiple of 2.5 ms (120 samples), at most 120 ms.
        let samples = samples.clamp(120, MAX_PACKET_SAMPLES) / 120 * 120;
        let out = &mut self.pcm[..samples];
        let fec = match fec_from {
            Some(next) if !next.is_empty() => self.inner.get().decode(next, out, true).ok(),
            _ => None,
        };
        let n = match fec.map_or_else(|| self.inner.get().decode(&[], out, false), Ok) {
            Ok(n) => n.min(samples),
            Err(e) => {
                tracing::debug!(error = %e, "opus concealment failed, using silence");
                out.fill(0);
                samples
            }
        };
        &self.pcm[..n]
    }
}

/// One frame of decoded participant audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedFrame<'a> {
    /// RTP timestamp (48 kHz) of the first sample.
    pub timestamp: u32,
    pub pcm: &'a [i16],
    /// True when the audio was made up (FEC, PLC or a corrupt packet).
    pub concealed: bool,
}

/// Counters of a [`ParticipantDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub decoded: u64,
    pub fec: u64,
    pub plc: u64,
    pub corrupt: u64,
}

/// Decodes the ordered output of a [`crate::jitter::JitterBuffer`].
#[derive(Debug)]
pub struct ParticipantDecoder {
    decoder: OpusDecoder,
    last_samples: usize,
    stats: DecoderStats,
}

impl ParticipantDecoder {
    pub fn new() -> Result<Self> {
        Ok(Self {
            decoder: OpusDecoder::new()?,
            last_samples: FRAME_SAMPLES,
            stats: Default::default(),
        })
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Decode or conceal one jitter buffer output. Never fails on bad packets: a packet that
    /// does not decode is concealed with PLC and counted in `stats().corrupt`.
    pub fn decode(&mut self, out: JitterOutput) -> DecodedFrame<'_> {
        match out {
            JitterOutput::Packet { timestamp, payload } => {
                let ok = match self.decoder.decode(&payload) {
                    Ok(pcm) => Some(pcm.len()),
                    Err(e) => {
                        tracing::debug!(error = %e, timestamp, "undecodable opus packet");
                        None
                    }
                };
                match ok {
                    Some(n) => {
                        self.stats.decoded += 1;
                        self.last_samples = n;
                        DecodedFrame {
                            timestamp,
                            pcm: &self.decoder.pcm[..n],
                            concealed: false,
                        }
                    }
                    None => {
                        self.stats.corrupt += 1;
                        let pcm = self.decoder.conceal(None, self.last_samples);
                        DecodedFrame {
                            timestamp,
                            pcm,
                            concealed: true,
                        }
                    }
                }
            }
            JitterOutput::Lost {
                timestamp,
                samples,
                fec_from,
            } => {
                if fec_from.is_some() {
                    self.stats.fec += 1;
                } else {
                    self.stats.plc += 1;
                }
                let pcm = self.decoder.conceal(fec_from.as_deref(), samples as usize);
                DecodedFrame {
                    timestamp,
                    pcm,
                    concealed: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OpusEncoder>();
        assert_send_sync::<OpusDecoder>();
        assert_send_sync::<ParticipantDecoder>();
        assert_send_sync::<crate::denoise::Denoiser>();
        assert_send_sync::<crate::resample::StreamResampler>();
        assert_send_sync::<crate::recorder::TrackWriter>();
    }

    #[test]
    fn settings_default_and_validation() {
        let s = OpusSettings::default();
        assert_eq!(
            (
                s.bitrate_bps,
                s.complexity,
                s.fec,
                s.dtx,
                s.expected_loss_pct
            ),
            (48_000, 5, true, false, 0)
        );
        assert!(s.wideband);
        assert!(
            OpusEncoder::new(OpusSettings {
                complexity: 11,
                ..s
            })
            .is_err()
        );
        assert!(
            OpusEncoder::new(OpusSettings {
                bitrate_bps: 1000,
                ..s
            })
            .is_err()
        );
    }

    #[test]
    fn fec_follows_the_reported_loss_within_its_bounds() {
        let mut e = OpusEncoder::new(OpusSettings {
            expected_loss_pct: 2,
            ..OpusSettings::default()
        })
        .expect("encoder");
        assert_eq!(
            e.set_reported_loss(0),
            2,
            "never below the configured floor"
        );
        assert_eq!(e.set_reported_loss(7), 7);
        assert_eq!(e.set_reported_loss(80), 30, "capped");
        assert_eq!(e.set_reported_loss(1), 2);
        let mut off = OpusEncoder::new(OpusSettings {
            fec: false,
            ..OpusSettings::default()
        })
        .expect("encoder");
        assert_eq!(off.set_reported_loss(20), 0, "no FEC, nothing to steer");
    }

    #[test]
    fn garbage_packet_is_an_error_not_a_panic() {
        let mut d = OpusDecoder::new().unwrap();
        assert!(d.decode(&[]).is_err());
        // TOC code 3 with a frame count of 0 is invalid.
        assert!(d.decode(&[0x03, 0x00]).is_err());
        let mut p = ParticipantDecoder::new().unwrap();
        let f = p.decode(JitterOutput::Packet {
            timestamp: 7,
            payload: Bytes::from_static(&[0x03, 0x00]),
        });
        assert!(f.concealed);
        assert_eq!(f.pcm.len(), FRAME_SAMPLES);
        assert_eq!(p.stats().corrupt, 1);
    }

    #[test]
    fn conceal_returns_requested_length() {
        let mut d = OpusDecoder::new().unwrap();
        assert_eq!(d.conceal(None, 960).len(), 960);
        assert_eq!(d.conceal(None, 480).len(), 480);
        assert_eq!(d.conceal(Some(&[0x03, 0x00]), 960).len(), 960);
    }
}
