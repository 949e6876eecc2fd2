//! Noise suppression with RNNoise (nnnoiseless) on 48 kHz mono i16 frames.
//!
//! Owns the denoiser state of one audio stream, the i16 <-> f32 conversion nnnoiseless wants
//! (f32 in i16 range, 480-sample blocks), and the voice probability it reports.
//! nnnoiseless' output lags its input by one block: [`LATENCY_SAMPLES`]. With suppression
//! disabled the voice probability is still computed and the input comes out delayed by the same
//! latency, so the timeline does not depend on the setting (and it may be toggled mid-stream).

use nnnoiseless::DenoiseState;

/// nnnoiseless block size (10 ms at 48 kHz).
pub const BLOCK_SAMPLES: usize = DenoiseState::FRAME_SIZE;
/// Output lags input by this many samples, whether suppression is enabled or not.
pub const LATENCY_SAMPLES: usize = 480;

#[derive(Debug, thiserror::Error)]
pub enum DenoiseError {
    #[error("frame of {0} samples is not a non-empty multiple of 480")]
    BadFrameLength(usize),
}

/// One processed frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Denoised<'a> {
    /// Same length as the input, lagging it by [`LATENCY_SAMPLES`].
    pub pcm: &'a [i16],
    /// Mean RNNoise voice probability (0..=1) over the frame's blocks.
    pub voice_prob: f32,
}

/// RNNoise denoiser for one stream.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    enabled: bool,
    block_in: [f32; BLOCK_SAMPLES],
    block_out: [f32; BLOCK_SAMPLES],
    /// The last `LATENCY_SAMPLES` input samples (the pass-through delay line).
    delay: [i16; LATENCY_SAMPLES],
    out: Vec<i16>,
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoiser")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Denoiser {
    pub fn new(enabled: bool) -> Self {
        Self {
            state: DenoiseState::new(),
            enabled,
            block_in: [0.0; BLOCK_SAMPLES],
            block_out: [0.0; BLOCK_SAMPLES],
            delay: [0; LATENCY_SAMPLES],
            out: Vec::with_capacity(2 * BLOCK_SAMPLES),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Switch suppression on or off; the timeline stays continuous.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Process a frame whose length is a multiple of 480 (960 for 20 ms).
    pub fn process(&mut self, frame: &[i16]) -> Result<Denoised<'_>, DenoiseError> {
        if frame.is_empty() || !frame.len().is_multiple_of(BLOCK_SAMPLES) {
            return Err(DenoiseError::BadFrameLength(frame.len()));
        }
        self.out.clear();
        let mut prob_sum = 0.0f32;
        for block in frame.chunks_exact(BLOCK_SAMPLES) {
            for (dst, &s) in self.block_in.iter_mut().zip(block) {
                *dst = f32::from(s);
            }
            let prob = self
                .state
                .process_frame(&mut self.block_out, &self.block_in);
            prob_sum += if prob.is_finite() {
                prob.clamp(0.0, 1.0)
            } else {
                0.0
            };
            if self.enabled {
                self.out.extend(
                    self.block_out
                        .iter()
                        .map(|&x| x.round().clamp(-32768.0, 32767.0) as i16),
                );
            } else {
                self.out.extend_from_slice(&self.delay);
            }
            // BLOCK_SAMPLES == LATENCY_SAMPLES: the delay line is exactly the last block.
            self.delay.copy_from_slice(block);
        }
        let blocks = (frame.len() / BLOCK_SAMPLES) as f32;
        Ok(Denoised {
            pcm: &self.out,
            voice_prob: prob_sum / blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_lengths() {
        let mut d = Denoiser::new(true);
        assert!(d.process(&[]).is_err());
        assert!(d.process(&[0; 500]).is_err());
        assert_eq!(d.process(&[0; 1440]).map(|o| o.pcm.len()).ok(), Some(1440));
    }

    #[test]
    fn disabled_is_a_pure_delay_of_latency_samples() {
        let mut d = Denoiser::new(false);
        let input: Vec<i16> = (0..4800).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        let mut output = Vec::new();
        for frame in input.chunks(960) {
            output.extend_from_slice(d.process(frame).unwrap().pcm);
        }
        assert_eq!(&output[..LATENCY_SAMPLES], &[0; LATENCY_SAMPLES][..]);
        assert_eq!(
            &output[LATENCY_SAMPLES..],
            &input[..input.len() - LATENCY_SAMPLES]
        );
    }

    #[test]
    fn digital_silence_has_zero_voice_probability() {
        let mut d = Denoiser::new(true);
        for _ in 0..10 {
            let o = d.process(&[0; 960]).unwrap();
            assert_eq!(o.voice_prob, 0.0);
            assert!(o.pcm.iter().all(|&s| s == 0));
        }
    }
}
