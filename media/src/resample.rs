//! Streaming mono sample-rate conversion (rubato) and G.711 μ-law.
//!
//! Owns: converting between Earshot's 48 kHz internal rate and the agent bridge's rates
//! (16 kHz PCM, 8 kHz μ-law), and any file rate to 48 kHz for prompts. [`StreamResampler`]
//! accepts any number of input samples per call, runs rubato on fixed input chunks (20 ms by
//! default) and keeps filter state between calls; output lags by [`StreamResampler::delay`].

use rubato::{FftFixedInOut, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample {from} Hz -> {to} Hz: {reason}")]
    Setup { from: u32, to: u32, reason: String },
    #[error("resampler failed: {0}")]
    Process(String),
}

/// Mono streaming resampler for i16 PCM.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal (pass-through).
    inner: Option<FftFixedInOut<f32>>,
    chunk_in: usize,
    pending: Vec<f32>,
    out_buf: Vec<Vec<f32>>,
    /// Input samples accepted and output samples produced so far.
    total_in: u64,
    total_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("chunk_in", &self.chunk_in)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler working on 20 ms input chunks.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        Self::with_chunk(from_hz, to_hz, (from_hz / 50).max(1) as usize)
    }

    /// A resampler with about `chunk_in` input samples per internal step (rubato rounds it
    /// to a multiple of the rates' ratio). Smaller chunks: less delay, weaker filter.
    pub fn with_chunk(from_hz: u32, to_hz: u32, chunk_in: usize) -> Result<Self, ResampleError> {
        let setup = |reason: String| ResampleError::Setup {
            from: from_hz,
            to: to_hz,
            reason,
        };
        if from_hz == 0 || to_hz == 0 || from_hz > 384_000 || to_hz > 384_000 {
            return Err(setup("rates must be 1..=384000".into()));
        }
        if from_hz == to_hz {
            return Ok(Self::passthrough(from_hz, chunk_in));
        }
        let inner = FftFixedInOut::<f32>::new(from_hz as usize, to_hz as usize, chunk_in.max(1), 1)
            .map_err(|e| setup(e.to_string()))?;
        let chunk_in = inner.input_frames_next();
        let out_buf = inner.output_buffer_allocate(true);
        Ok(Self {
            from_hz,
            to_hz,
            inner: Some(inner),
            chunk_in,
            pending: Vec::with_capacity(chunk_in * 2),
            out_buf,
            total_in: 0,
            total_out: 0,
        })
    }

    fn passthrough(hz: u32, chunk_in: usize) -> Self {
        Self {
            from_hz: hz,
            to_hz: hz,
            inner: None,
            chunk_in,
            pending: Vec::new(),
            out_buf: Vec::new(),
            total_in: 0,
            total_out: 0,
        }
    }

    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Input samples per internal step.
    pub fn input_chunk(&self) -> usize {
        self.chunk_in
    }

    /// Filter delay in output samples: output sample `delay()` corresponds to input sample 0.
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Feed samples; appends every output sample that is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.total_in += input.len() as u64;
        if self.inner.is_none() {
            out.extend_from_slice(input);
            self.total_out += input.len() as u64;
            return Ok(());
        }
        let mut rest = input;
        while !rest.is_empty() {
            let take = (self.chunk_in - self.pending.len()).min(rest.len());
            self.pending
                .extend(rest[..take].iter().map(|&s| f32::from(s) / 32768.0));
            rest = &rest[take..];
            if self.pending.len() == self.chunk_in {
                self.run_chunk(out)?;
            }
        }
        Ok(())
    }

    /// End of stream: push out buffered input and the filter tail, so that the total output
    /// covers every input sample plus [`delay`](Self::delay). Keeps the state usable.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        if self.inner.is_none() {
            return Ok(());
        }
        let wanted = self.expected_output() + self.delay() as u64;
        while self.total_out < wanted {
            self.pending.resize(self.chunk_in, 0.0);
            self.run_chunk(out)?;
        }
        Ok(())
    }

    /// Output samples that the input so far corresponds to (without the delay).
    pub fn expected_output(&self) -> u64 {
        (self.total_in * u64::from(self.to_hz)).div_ceil(u64::from(self.from_hz))
    }

    fn run_chunk(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let input = [&self.pending[..]];
        let (_, n) = inner
            .process_into_buffer(&input, &mut self.out_buf, None)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        out.extend(self.out_buf[0][..n].iter().map(|&x| f32_to_i16(x)));
        self.total_out += n as u64;
        self.pending.clear();
        Ok(())
    }
}

fn f32_to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32_635;

/// G.711 μ-law encode one sample.
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(MULAW_CLIP) + MULAW_BIAS;
    // s >> 7 is in 1..=255; the exponent is the index of its top bit.
    let exponent = 31 - ((s >> 7) as u32).leading_zeros();
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

/// G.711 μ-law decode one byte.
pub fn mulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// μ-law encode a buffer, appending to `out`.
pub fn mulaw_encode_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| mulaw_encode(s)));
}

/// μ-law decode a buffer, appending to `out`.
pub fn mulaw_decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| mulaw_decode(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    /// Amplitude of frequency `hz` in `x` (single-bin DFT), relative to full scale.
    fn tone_amplitude(x: &[i16], hz: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate);
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64 / 32768.0
    }

    /// Lag (output samples, 0.05 resolution, searched around `guess`) that best aligns `out`
    /// with an ideal tone.
    fn best_lag(out: &[i16], hz: f64, rate: u32, amp: f64, guess: f64) -> f64 {
        let n = rate as usize;
        let err_at = |lag: f64| -> f64 {
            (n / 10..n * 8 / 10)
                .map(|i| {
                    let t = (i as f64 - lag) / f64::from(rate);
                    let e = f64::from(out[i]) - amp * (2.0 * std::f64::consts::PI * hz * t).sin();
                    e * e
                })
                .sum()
        };
        (-60..=60)
            .map(|k| guess + f64::from(k) * 0.05)
            .min_by(|a, b| err_at(*a).total_cmp(&err_at(*b)))
            .unwrap_or(guess)
    }

    #[test]
    fn mulaw_known_values_and_roundtrip() {
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(mulaw_decode(0x80), 32124);
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            let back = i32::from(mulaw_decode(mulaw_encode(s)));
            let err = (back - i32::from(s)).abs();
            // Quantisation step grows with magnitude: 1/16 of the segment, plus clip at 32124.
            let allowed =
                (i32::from(s).abs() / 16).max(8) + if i32::from(s).abs() > 32124 { 700 } else { 0 };
            assert!(err <= allowed, "{s} -> {back}");
        }
        for b in 0..=255u8 {
            assert_eq!(
                mulaw_encode(mulaw_decode(b)),
                if b == 0x7F { 0xFF } else { b },
                "{b:#x}"
            );
        }
    }

    #[test]
    fn down_and_up_keep_a_tone_and_length() {
        for (from, to) in [
            (48_000, 16_000),
            (16_000, 48_000),
            (48_000, 8_000),
            (8_000, 48_000),
            (22_050, 48_000),
        ] {
            let input = sine(440.0, from, from as usize, 16_000.0);
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            // Odd-sized pushes exercise the internal buffering.
            for chunk in input.chunks(333) {
                r.process(chunk, &mut out).unwrap();
            }
            r.flush(&mut out).unwrap();
            let d = r.delay();
            assert!(
                out.len() >= to as usize + d,
                "{from}->{to}: {} < {}",
                out.len(),
                to as usize + d
            );
            let aligned = &out[d..d + to as usize];
            let a = tone_amplitude(&aligned[to as usize / 10..], 440.0, to);
            assert!(
                (a - 16_000.0 / 32768.0).abs() < 0.02,
                "{from}->{to}: amplitude {a}"
            );
            // delay() is right to about one output sample (rubato reports an integer delay;
            // odd chunk sizes such as 441 at 22.05 kHz are half an input sample off).
            let lag = best_lag(&out, 440.0, to, 16_000.0, d as f64);
            assert!(
                (lag - d as f64).abs() <= 1.5,
                "{from}->{to}: delay {d}, measured {lag}"
            );
            // Nothing at an unrelated frequency.
            assert!(tone_amplitude(&aligned[to as usize / 10..], 1234.0, to) < 0.005);
        }
    }

    #[test]
    fn downsampling_removes_content_above_new_nyquist() {
        let input = sine(6_000.0, 48_000, 48_000, 16_000.0);
        let mut r = StreamResampler::new(48_000, 8_000).unwrap();
        let mut out = Vec::new();
        r.process(&input, &mut out).unwrap();
        let rms = crate::level::rms_dbfs(&out[800..]);
        assert!(rms < -50.0, "6 kHz leaked into 8 kHz output at {rms} dBFS");
    }

    #[test]
    fn same_rate_is_passthrough_and_bad_rates_error() {
        let mut r = StreamResampler::new(48_000, 48_000).unwrap();
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, vec![1, 2, 3]);
        assert!(StreamResampler::new(0, 48_000).is_err());
        assert!(StreamResampler::new(48_000, 10_000_000).is_err());
    }

    #[test]
    fn twenty_ms_in_gives_twenty_ms_out_each_call() {
        let mut r = StreamResampler::new(48_000, 16_000).unwrap();
        assert_eq!(r.input_chunk(), 960);
        let mut out = Vec::new();
        r.process(&[0; 960], &mut out).unwrap();
        assert_eq!(out.len(), 320);
    }
}
