//! The media plane's units, in one place: everything inside it is 48 kHz mono 16-bit audio in
//! 20 ms frames, and positions on a session's timeline are sample counts at that rate.

use std::time::Duration;

/// Sample rate of every signal inside the media plane (Opus, the tracks, the prompts).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per millisecond at [`SAMPLE_RATE`].
pub const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;
/// Samples in one 20 ms frame (one Opus packet, one tick of the AI audio).
pub const FRAME: usize = 960;
/// The length of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// Milliseconds (rounded down) of `samples` at [`SAMPLE_RATE`].
pub const fn samples_to_ms(samples: u64) -> u64 {
    samples / SAMPLES_PER_MS
}

/// Samples in `ms` milliseconds at [`SAMPLE_RATE`].
pub const fn ms_to_samples(ms: u64) -> u64 {
    ms * SAMPLES_PER_MS
}

/// Samples (rounded down) in `d` at [`SAMPLE_RATE`].
pub fn duration_to_samples(d: Duration) -> u64 {
    (d.as_micros() as u64) * SAMPLES_PER_MS / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_twenty_milliseconds() {
        assert_eq!(
            samples_to_ms(FRAME as u64),
            FRAME_DURATION.as_millis() as u64
        );
        assert_eq!(ms_to_samples(20), FRAME as u64);
        assert_eq!(duration_to_samples(FRAME_DURATION), FRAME as u64);
        assert_eq!(samples_to_ms(47), 0, "rounded down");
    }
}
