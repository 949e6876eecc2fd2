//! Voice activity decisions with attack and hangover.
//!
//! Owns the "is the participant speaking" state used for turn taking (F5) and the transcript
//! timing: a frame counts as voice when the denoiser's voice probability and the frame level both
//! pass their thresholds. Speech starts after `attack_ms` of consecutive voice frames and stops
//! after `hangover_ms` of consecutive non-voice frames. While speaking, the lower `keep_prob`
//! applies (hysteresis), so a soft syllable does not reset the hangover. Pure: no clock, the
//! caller passes each frame's duration.

/// Tunables; the defaults suit 20 ms frames of denoised speech.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// Voice probability needed to count a frame as voice while silent.
    pub start_prob: f32,
    /// Voice probability needed to count a frame as voice while speaking.
    pub keep_prob: f32,
    /// Frame level must be above this (dBFS) to count as voice.
    pub min_level_dbfs: f32,
    /// Consecutive voice needed to start speaking.
    pub attack_ms: u32,
    /// Consecutive non-voice needed to stop speaking.
    pub hangover_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            start_prob: 0.6,
            keep_prob: 0.4,
            min_level_dbfs: -50.0,
            attack_ms: 60,
            hangover_ms: 300,
        }
    }
}

/// Result of one [`VoiceActivity::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VadUpdate {
    /// State after this frame.
    pub speaking: bool,
    /// Speech started with this frame.
    pub started: bool,
    /// Speech stopped with this frame.
    pub stopped: bool,
}

/// The speaking state machine.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    config: VadConfig,
    speaking: bool,
    /// Consecutive ms of voice (while silent) or of non-voice (while speaking).
    run_ms: u32,
}

impl VoiceActivity {
    pub fn new(config: VadConfig) -> Self {
        Self {
            config,
            speaking: false,
            run_ms: 0,
        }
    }

    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Forget the state (e.g. after a pause).
    pub fn reset(&mut self) {
        self.speaking = false;
        self.run_ms = 0;
    }

    /// Feed one frame's voice probability (0..=1), RMS level (dBFS) and duration.
    pub fn update(&mut self, voice_prob: f32, rms_dbfs: f32, frame_ms: u32) -> VadUpdate {
        let c = &self.config;
        let prob_needed = if self.speaking {
            c.keep_prob
        } else {
            c.start_prob
        };
        // NaN inputs count as non-voice.
        let voice = voice_prob >= prob_needed && rms_dbfs > c.min_level_dbfs;
        let mut up = VadUpdate {
            speaking: self.speaking,
            ..Default::default()
        };
        if self.speaking {
            if voice {
                self.run_ms = 0;
            } else {
                self.run_ms = self.run_ms.saturating_add(frame_ms);
                if self.run_ms >= c.hangover_ms {
                    self.speaking = false;
                    self.run_ms = 0;
                    up.stopped = true;
                }
            }
        } else if voice {
            self.run_ms = self.run_ms.saturating_add(frame_ms);
            if self.run_ms >= c.attack_ms {
                self.speaking = true;
                self.run_ms = 0;
                up.started = true;
            }
        } else {
            self.run_ms = 0;
        }
        up.speaking = self.speaking;
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOICE: (f32, f32) = (0.9, -20.0);
    const SILENCE: (f32, f32) = (0.05, -70.0);

    fn run(vad: &mut VoiceActivity, frames: &[(f32, f32)]) -> Vec<VadUpdate> {
        frames.iter().map(|&(p, l)| vad.update(p, l, 20)).collect()
    }

    #[test]
    fn starts_after_attack_and_stops_after_hangover() {
        let mut vad = VoiceActivity::new(VadConfig::default());
        let ups = run(&mut vad, &[VOICE; 3]);
        assert_eq!(
            ups.iter().map(|u| u.speaking).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        assert!(ups[2].started && !ups[2].stopped);
        // 14 silent frames = 280 ms: still speaking; the 15th (300 ms) stops.
        let ups = run(&mut vad, &[SILENCE; 15]);
        assert!(ups[..14].iter().all(|u| u.speaking && !u.stopped));
        assert!(ups[14].stopped && !ups[14].speaking);
        assert_eq!(ups.iter().filter(|u| u.started).count(), 0);
    }

    #[test]
    fn short_blips_do_not_start_speech() {
        let mut vad = VoiceActivity::new(VadConfig::default());
        let pattern = [VOICE, VOICE, SILENCE, VOICE, VOICE, SILENCE];
        let ups = run(&mut vad, &pattern);
        assert!(ups.iter().all(|u| !u.speaking && !u.started));
    }

    #[test]
    fn loud_noise_without_voice_probability_is_not_speech() {
        let mut vad = VoiceActivity::new(VadConfig::default());
        let ups = run(&mut vad, &[(0.1, -10.0); 50]);
        assert!(ups.iter().all(|u| !u.speaking));
        // And high probability on a near-silent frame (denoiser artefact) is not speech either.
        let ups = run(&mut vad, &[(0.95, -60.0); 50]);
        assert!(ups.iter().all(|u| !u.speaking));
    }

    #[test]
    fn pauses_shorter_than_hangover_and_soft_frames_keep_speaking() {
        let mut vad = VoiceActivity::new(VadConfig::default());
        run(&mut vad, &[VOICE; 3]);
        let mut frames = vec![SILENCE; 10]; // 200 ms pause
        frames.extend([(0.5, -30.0); 20]); // soft speech: below start_prob, above keep_prob
        frames.extend(vec![SILENCE; 10]);
        let ups = run(&mut vad, &frames);
        assert!(ups.iter().all(|u| u.speaking && !u.stopped && !u.started));
    }

    #[test]
    fn nan_is_not_voice() {
        let mut vad = VoiceActivity::new(VadConfig::default());
        let ups = run(&mut vad, &[(f32::NAN, f32::NAN); 10]);
        assert!(ups.iter().all(|u| !u.speaking));
    }
}
