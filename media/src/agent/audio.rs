//! Audio glue between the session (48 kHz mono i16, 20 ms frames) and the agent's format.
//!
//! [`Uplink`]: participant frames -> resampled to 16 kHz (or 8 kHz and μ-law encoded) -> base64
//! payloads of exactly 20 ms. [`Downlink`]: base64 payloads from the agent -> decoded ->
//! resampled to 48 kHz. The downlink works in *segments* (audio between marks, clears and
//! pauses of the agent). It is causal: a payload's samples come out as soon as it is pushed,
//! delayed by the resampler's filter (5 ms) — a whole 20 ms frame per 20 ms payload, the first
//! one included, so the start of a talk is never a partial frame. The tail is flushed at the segment's end, so a segment of n input samples yields exactly
//! n·48000/rate + [`Downlink::delay`] output samples, and a mark placed after it follows the
//! last sound.

use crate::resample::{ResampleError, StreamResampler, mulaw_decode_into, mulaw_encode_into};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use earshot_vocab::AgentAudioFormat;

/// Internal sample rate.
const RATE: u32 = crate::units::SAMPLE_RATE;
/// Uplink resampler step: 5 ms at 48 kHz (2.5 ms filter delay; a 20 ms frame is 4 steps, so
/// every frame yields exactly 20 ms).
const UPLINK_CHUNK: usize = 240;

/// Participant audio to the agent: 20 ms payloads.
pub struct Uplink {
    format: AgentAudioFormat,
    resampler: StreamResampler,
    /// Agent-rate samples not yet sent, and the 48 kHz timeline position of the first one.
    pending: Vec<i16>,
    pending_pos: u64,
    bytes: Vec<u8>,
    payload: String,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("format", &self.format)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Uplink {
    pub fn new(format: AgentAudioFormat) -> Result<Self, ResampleError> {
        Ok(Self {
            format,
            resampler: StreamResampler::with_chunk(RATE, format.sample_rate(), UPLINK_CHUNK)?,
            pending: Vec::with_capacity(640),
            pending_pos: 0,
            bytes: Vec::with_capacity(640),
            payload: String::with_capacity(1024),
        })
    }

    /// Agent-rate samples in one 20 ms payload.
    pub fn samples_per_payload(&self) -> usize {
        self.format.sample_rate() as usize / 50
    }

    /// Feeds one 48 kHz frame that starts at timeline position `pos`; calls `emit(position,
    /// base64 payload)` for every complete 20 ms payload (once per 20 ms frame).
    pub fn push(
        &mut self,
        pcm: &[i16],
        pos: u64,
        mut emit: impl FnMut(u64, &str),
    ) -> Result<(), ResampleError> {
        if self.pending.is_empty() {
            self.pending_pos = pos;
        }
        self.resampler.process(pcm, &mut self.pending)?;
        let n = self.samples_per_payload();
        let step = u64::from(RATE / self.format.sample_rate()) * n as u64;
        let mut start = 0;
        while self.pending.len() - start >= n {
            let chunk = &self.pending[start..start + n];
            self.bytes.clear();
            match self.format {
                AgentAudioFormat::L16k16 => {
                    self.bytes
                        .extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
                }
                AgentAudioFormat::Mulaw8k => mulaw_encode_into(chunk, &mut self.bytes),
            }
            self.payload.clear();
            BASE64.encode_string(&self.bytes, &mut self.payload);
            emit(self.pending_pos, &self.payload);
            self.pending_pos += step;
            start += n;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownlinkError {
    #[error("payload is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// AI audio from the agent to 48 kHz.
pub struct Downlink {
    format: AgentAudioFormat,
    resampler: StreamResampler,
    /// Output samples given out in this segment.
    emitted: u64,
    /// Input samples taken in this segment.
    taken: u64,
    /// A lone trailing byte of an L16 payload, completed by the next payload.
    odd_byte: Option<u8>,
    bytes: Vec<u8>,
    pcm: Vec<i16>,
    out: Vec<i16>,
}

impl std::fmt::Debug for Downlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downlink")
            .field("format", &self.format)
            .field("taken", &self.taken)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

fn downlink_resampler(format: AgentAudioFormat) -> Result<StreamResampler, ResampleError> {
    // 10 ms steps: a filter long enough for clean AI audio, 5 ms delay.
    let rate = format.sample_rate();
    StreamResampler::with_chunk(rate, RATE, (rate / 100) as usize)
}

impl Downlink {
    pub fn new(format: AgentAudioFormat) -> Result<Self, ResampleError> {
        let resampler = downlink_resampler(format)?;
        Ok(Self {
            format,
            resampler,
            emitted: 0,
            taken: 0,
            odd_byte: None,
            bytes: Vec::new(),
            pcm: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Input was taken that has not all come out yet (call [`finish_segment`](Self::finish_segment)
    /// when the agent pauses).
    pub fn has_pending(&self) -> bool {
        self.expected() > self.emitted
    }

    /// Output samples by which the AI audio lags the agent's (the filter delay).
    pub fn delay(&self) -> usize {
        self.resampler.delay()
    }

    /// Output samples this segment yields in all: its input at 48 kHz plus the filter delay.
    fn expected(&self) -> u64 {
        if self.taken == 0 {
            return 0;
        }
        self.taken * u64::from(RATE / self.format.sample_rate()) + self.delay() as u64
    }

    /// Decodes one base64 payload; appends the 48 kHz samples ready so far to `out`.
    pub fn push_payload(&mut self, payload: &str, out: &mut Vec<i16>) -> Result<(), DownlinkError> {
        self.bytes.clear();
        BASE64.decode_vec(payload.trim(), &mut self.bytes)?;
        self.pcm.clear();
        match self.format {
            AgentAudioFormat::L16k16 => {
                let mut bytes = &self.bytes[..];
                if let Some(lo) = self.odd_byte.take()
                    && let Some((&hi, rest)) = bytes.split_first()
                {
                    self.pcm.push(i16::from_le_bytes([lo, hi]));
                    bytes = rest;
                }
                let pairs = bytes.chunks_exact(2);
                self.odd_byte = pairs.remainder().first().copied();
                self.pcm
                    .extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
            }
            AgentAudioFormat::Mulaw8k => mulaw_decode_into(&self.bytes, &mut self.pcm),
        }
        self.taken += self.pcm.len() as u64;
        self.out.clear();
        self.resampler.process(&self.pcm, &mut self.out)?;
        self.give(out);
        Ok(())
    }

    fn give(&mut self, out: &mut Vec<i16>) {
        let room = usize::try_from(self.expected().saturating_sub(self.emitted)).unwrap_or(0);
        let n = self.out.len().min(room);
        out.extend_from_slice(&self.out[..n]);
        self.emitted += n as u64;
    }

    /// Ends the segment: the rest of its audio (exactly) goes to `out`, and the next payload
    /// starts a new segment.
    pub fn finish_segment(&mut self, out: &mut Vec<i16>) -> Result<(), DownlinkError> {
        if self.has_pending() {
            self.out.clear();
            self.resampler.flush(&mut self.out)?;
            self.give(out);
        }
        self.reset()?;
        Ok(())
    }

    /// Drops whatever is buffered (a clear): the next payload starts a new segment.
    pub fn reset(&mut self) -> Result<(), DownlinkError> {
        if self.taken > 0 {
            self.resampler = downlink_resampler(self.format)?;
        }
        self.emitted = 0;
        self.taken = 0;
        self.odd_byte = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    fn to_payload(format: AgentAudioFormat, pcm: &[i16]) -> String {
        let mut bytes = Vec::new();
        match format {
            AgentAudioFormat::L16k16 => bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes())),
            AgentAudioFormat::Mulaw8k => mulaw_encode_into(pcm, &mut bytes),
        }
        BASE64.encode(bytes)
    }

    #[test]
    fn uplink_makes_one_20ms_payload_per_frame() {
        for (format, bytes) in [
            (AgentAudioFormat::L16k16, 640),
            (AgentAudioFormat::Mulaw8k, 160),
        ] {
            let mut up = Uplink::new(format).unwrap();
            let src = tone(440.0, 48_000, 960 * 50, 10_000.0);
            let mut got = Vec::new();
            for (k, frame) in src.chunks(960).enumerate() {
                let mut n = 0;
                up.push(frame, 480 + (k * 960) as u64, |pos, p| {
                    got.push((pos, BASE64.decode(p).unwrap()));
                    n += 1;
                })
                .unwrap();
                assert_eq!(n, 1, "{format}: frame {k}");
            }
            for (k, (pos, b)) in got.iter().enumerate() {
                assert_eq!(*pos, 480 + (k * 960) as u64);
                assert_eq!(b.len(), bytes);
            }
            // The tone survives (level of the last second's payloads).
            let pcm: Vec<i16> = match format {
                AgentAudioFormat::L16k16 => got
                    .iter()
                    .flat_map(|(_, b)| {
                        b.chunks_exact(2)
                            .map(|p| i16::from_le_bytes([p[0], p[1]]))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
                AgentAudioFormat::Mulaw8k => {
                    let mut v = Vec::new();
                    for (_, b) in &got {
                        mulaw_decode_into(b, &mut v);
                    }
                    v
                }
            };
            let rms = crate::level::rms_dbfs(&pcm[pcm.len() / 2..]);
            assert!((rms - -13.3).abs() < 0.5, "{format}: {rms} dBFS");
        }
    }

    #[test]
    fn downlink_segments_are_exact_and_causal() {
        for format in [AgentAudioFormat::L16k16, AgentAudioFormat::Mulaw8k] {
            let rate = format.sample_rate();
            let ratio = (48_000 / rate) as usize;
            let src = tone(440.0, rate, rate as usize / 2 + 37, 12_000.0);
            let mut down = Downlink::new(format).unwrap();
            let mut out = Vec::new();
            // Odd-sized payloads (an odd byte count for L16 too).
            let payload = to_payload(format, &src);
            let bytes = BASE64.decode(&payload).unwrap();
            for part in bytes.chunks(333) {
                down.push_payload(&BASE64.encode(part), &mut out).unwrap();
            }
            assert!(down.has_pending());
            down.finish_segment(&mut out).unwrap();
            assert!(!down.has_pending());
            let delay = down.delay();
            assert_eq!(delay, 240, "{format}: 5 ms filter delay");
            assert_eq!(out.len(), src.len() * ratio + delay, "{format}");
            // Delayed by exactly the filter: output sample i*ratio + delay matches input
            // sample i (away from the edges).
            let err: f64 = (200..src.len() - 200)
                .map(|i| (f64::from(out[i * ratio + delay]) - f64::from(src[i])).abs())
                .sum::<f64>()
                / (src.len() - 400) as f64;
            let tol = if format == AgentAudioFormat::Mulaw8k {
                400.0
            } else {
                60.0
            };
            assert!(err < tol, "{format}: mean error {err}");
            // A second segment after a reset starts clean.
            down.push_payload(&to_payload(format, &src[..rate as usize / 50]), &mut out)
                .unwrap();
            down.reset().unwrap();
            assert!(!down.has_pending());
            let before = out.len();
            down.push_payload(&to_payload(format, &src[..rate as usize / 10]), &mut out)
                .unwrap();
            down.finish_segment(&mut out).unwrap();
            assert_eq!(out.len() - before, rate as usize / 10 * ratio + delay);
        }
    }

    #[test]
    fn downlink_gives_a_whole_frame_per_20ms_payload() {
        // A real-time agent's frame must be playable on the next tick: each 20 ms payload
        // yields 20 ms at 48 kHz at once, not after the next payload fills the filter.
        for format in [AgentAudioFormat::L16k16, AgentAudioFormat::Mulaw8k] {
            let rate = format.sample_rate();
            let src = tone(300.0, rate, rate as usize, 12_000.0);
            let mut down = Downlink::new(format).unwrap();
            for frame in src.chunks(rate as usize / 50) {
                let mut out = Vec::new();
                down.push_payload(&to_payload(format, frame), &mut out)
                    .unwrap();
                assert_eq!(out.len(), 960, "{format}");
            }
        }
    }

    #[test]
    fn bad_payloads_are_errors() {
        let mut down = Downlink::new(AgentAudioFormat::L16k16).unwrap();
        let mut out = Vec::new();
        assert!(down.push_payload("***", &mut out).is_err());
        assert!(out.is_empty());
        assert!(down.push_payload("", &mut out).is_ok());
    }
}
