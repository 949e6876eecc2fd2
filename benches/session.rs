//! Cost of one whole session-second of the real-time path, on real speech, on one core:
//! 50 participant frames through reorder -> Opus decode -> denoise -> voice activity -> WAV
//! write, and 50 AI frames through Opus encode -> WAV write. Reported in time per
//! session-second, so the figure reads directly as "ms of CPU per session-second".
//!
//! `full_recording` adds the work done when a session ends (mix of the two tracks, three MP3s
//! at the standard preset), amortized over a 10 s session: the cost per second of the whole
//! recording feature.
//!
//!     cargo bench --bench session
//!     cargo bench --bench session -- --quick
//!
//! WebRTC itself (ICE, DTLS, SRTP, RTP packetization) and the tokio task switching are not in
//! here: the load generator (`earshot-loadgen`) measures the whole server under real peers.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{FRAME, FRAMES_PER_SECOND};
use criterion::{Criterion, criterion_group, criterion_main};
use earshot_media::codec::{OpusEncoder, OpusSettings, ParticipantDecoder};
use earshot_media::denoise::{Denoiser, LATENCY_SAMPLES};
use earshot_media::jitter::JitterBuffer;
use earshot_media::recorder::{Quality, TrackWriter, encode_mp3, mix_wavs};
use earshot_media::vad::{VadConfig, VoiceActivity};

const REORDER_WAIT: Duration = Duration::from_millis(30);
const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Session length of the `full_recording` bench.
const FULL_SECONDS: u64 = 10;
/// The real-time bench restarts its tracks after this many session-seconds (10 minutes).
const RESTART_SECONDS: u64 = 600;

/// One session's media state, driven like `media::session` drives it, minus the network.
struct SessionSim {
    jitter: JitterBuffer,
    decoder: ParticipantDecoder,
    denoiser: Denoiser,
    vad: VoiceActivity,
    encoder: OpusEncoder,
    participant: TrackWriter,
    ai: TrackWriter,
    dir: PathBuf,
    t0: Instant,
    /// Frames sent so far (participant and AI run in lockstep).
    frame: u64,
}

impl SessionSim {
    fn new(dir: &Path) -> Self {
        Self {
            jitter: JitterBuffer::new(REORDER_WAIT),
            decoder: ParticipantDecoder::new().expect("decoder"),
            denoiser: Denoiser::new(true),
            vad: VoiceActivity::new(VadConfig::default()),
            encoder: OpusEncoder::new(OpusSettings::default()).expect("encoder"),
            participant: TrackWriter::create(dir.join("participant.wav"), Quality::Standard, None)
                .expect("wav"),
            ai: TrackWriter::create(dir.join("ai.wav"), Quality::Standard, None).expect("wav"),
            dir: dir.to_path_buf(),
            t0: Instant::now(),
            frame: 0,
        }
    }

    /// One session-second: 50 participant packets in, 50 AI frames out (the interviewer
    /// speaking the whole time, the expensive case for the AI track).
    fn second(&mut self, packets: &[Bytes], ai: &[[i16; FRAME]]) {
        for _ in 0..FRAMES_PER_SECOND {
            let i = self.frame;
            let now = self.t0 + FRAME_DURATION * (i as u32);
            let ts = (i as u32).wrapping_mul(FRAME as u32);
            self.jitter.push(
                i as u16,
                ts,
                packets[i as usize % packets.len()].clone(),
                now,
            );
            while let Some(out) = self.jitter.poll(now) {
                let frame = self.decoder.decode(out);
                let pos = u64::from(frame.timestamp);
                let samples = frame.pcm.len() as u64;
                let rms = earshot_media::level::rms_dbfs(frame.pcm);
                let Ok(denoised) = self.denoiser.process(frame.pcm) else {
                    continue;
                };
                let vad = self
                    .vad
                    .update(denoised.voice_prob, rms, (samples / 48) as u32);
                black_box(vad);
                if let Some(at) = pos.checked_sub(LATENCY_SAMPLES as u64) {
                    self.participant
                        .write_at(at, denoised.pcm)
                        .expect("participant wav");
                }
            }
            let pcm = &ai[i as usize % ai.len()];
            black_box(self.encoder.encode(pcm).expect("encode"));
            self.ai.write_at(i * FRAME as u64, pcm).expect("ai wav");
            self.frame += 1;
        }
    }

    /// What a session does when it ends: finalize both WAVs, mix them, three MP3s.
    fn finish(self) {
        let p = self.participant.finalize().expect("finalize");
        let a = self.ai.finalize().expect("finalize");
        let mix = mix_wavs(&p.path, &a.path, &self.dir.join("mix.wav"), None).expect("mix");
        // The default preset's MP3s (`high`).
        let spec = Quality::High.into();
        for (name, wav) in [("participant", p), ("ai", a), ("mix", mix)] {
            black_box(
                encode_mp3(&wav.path, &self.dir.join(format!("{name}.mp3")), spec, None)
                    .expect("mp3"),
            );
        }
    }
}

fn session_second(c: &mut Criterion) {
    let packets = common::participant_packets();
    let ai = common::ai_frames();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("session_second");
    g.sample_size(20);

    g.bench_function("realtime", |b| {
        let mut sim = SessionSim::new(dir.path());
        let mut seconds = 0u64;
        b.iter(|| {
            if seconds > 0 && seconds.is_multiple_of(RESTART_SECONDS) {
                sim = SessionSim::new(dir.path());
            }
            sim.second(&packets, &ai);
            seconds += 1;
        });
    });

    g.sample_size(10);
    g.bench_function("full_recording_10s_session", |b| {
        // Criterion's iterations are session-seconds; a session is 10 of them.
        b.iter_custom(|iters| {
            let sessions = iters.div_ceil(FULL_SECONDS).max(1);
            let start = Instant::now();
            for _ in 0..sessions {
                let mut sim = SessionSim::new(dir.path());
                for _ in 0..FULL_SECONDS {
                    sim.second(&packets, &ai);
                }
                sim.finish();
            }
            start
                .elapsed()
                .mul_f64(iters as f64 / (sessions * FULL_SECONDS) as f64)
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = session_second
}
criterion_main!(benches);
