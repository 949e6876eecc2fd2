//! Signal analysis of what the server recorded and the client heard: the speech fixture, the
//! alignment of a recording to the audio sent, the client-side decode of the AI audio (reorder
//! wait, FEC and PLC), voiced turns, and the mean and minimum of scores.

use std::path::Path;
use std::time::Duration;

use earshot_media::codec::ParticipantDecoder;
use earshot_media::jitter::JitterBuffer;
use earshot_media::peer::RtpAudioPacket;

use crate::{CLIENT_WAIT, audio};

pub(crate) fn speech_fixture() -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/participant_speech.wav");
    audio::read_wav(&path).1
}

/// Sample offset `d` (at most `max_offset`) such that `recording[i + d]` best matches
/// `sent[i]`: the 10 ms envelope of the first `probe` samples of `sent` found in the start of
/// the recording (the sent audio loops, so only its first occurrence counts), then refined to
/// the sample by cross-correlation within ±15 ms.
pub(crate) fn align(
    sent: &[f32],
    recording: &[f32],
    probe: usize,
    max_offset: usize,
) -> Option<(usize, f32)> {
    let probe = &sent[..probe.min(sent.len())];
    let needle = audio::envelope(48_000, probe);
    let hay = audio::envelope(
        48_000,
        &recording[..recording.len().min(probe.len() + max_offset)],
    );
    if hay.len() < needle.len() {
        return None;
    }
    let (pos, r) = audio::find(&needle, &hay, 0);
    let coarse = pos * 480;
    let lo = coarse.saturating_sub(720);
    let hi = coarse + 720;
    let window = probe.len().min(48_000 * 4);
    let best = (lo..=hi)
        .filter(|d| d + window <= recording.len())
        .map(|d| {
            let dot: f32 = (0..window).map(|i| probe[i] * recording[i + d]).sum();
            (d, dot)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((best.0, r))
}

pub(crate) fn mean(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub(crate) fn min(xs: &[f64]) -> f64 {
    xs.iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::min)
}

/// The AI audio as the client plays it: reordered with a `CLIENT_WAIT` hold, lost packets
/// recovered from FEC or concealed, placed by RTP timestamp. Returns (pcm, lost, late, fec,
/// plc).
pub(crate) fn decode_at_client(packets: &[RtpAudioPacket]) -> (Vec<f32>, [u64; 4]) {
    let mut jb = JitterBuffer::new(CLIENT_WAIT);
    let mut dec = ParticipantDecoder::new().expect("decoder");
    let mut out: Vec<f32> = Vec::new();
    let mut ts0: Option<u32> = None;
    let mut place = |dec: &mut ParticipantDecoder, o| {
        let f = dec.decode(o);
        let t0 = *ts0.get_or_insert(f.timestamp);
        let pos = f.timestamp.wrapping_sub(t0) as usize;
        if pos > 48_000 * 3600 {
            return; // before the first packet: not placed
        }
        if out.len() < pos + f.pcm.len() {
            out.resize(pos + f.pcm.len(), 0.0);
        }
        for (d, s) in out[pos..].iter_mut().zip(f.pcm) {
            *d = f32::from(*s) / 32768.0;
        }
    };
    let mut last = None;
    for p in packets {
        while let Some(o) = jb.poll(p.arrival) {
            place(&mut dec, o);
        }
        jb.push(p.sequence, p.timestamp, p.payload.clone(), p.arrival);
        while let Some(o) = jb.poll(p.arrival) {
            place(&mut dec, o);
        }
        last = Some(p.arrival);
    }
    if let Some(t) = last {
        while let Some(o) = jb.poll(t + Duration::from_secs(1)) {
            place(&mut dec, o);
        }
    }
    let (j, d) = (jb.stats(), dec.stats());
    (out, [j.lost, j.late, d.fec, d.plc])
}

/// Voiced spans of a track (10 ms frames above -50 dBFS, joined across pauses under 400 ms),
/// at least 1 s long, in samples.
pub(crate) fn turns(track: &[f32]) -> Vec<(usize, usize)> {
    let env = audio::envelope(48_000, track);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, v) in env.iter().enumerate() {
        if *v > -50.0 {
            match spans.last_mut() {
                Some((_, end)) if i - *end <= 40 => *end = i + 1,
                _ => spans.push((i, i + 1)),
            }
        }
    }
    spans
        .into_iter()
        .filter(|(a, b)| b - a >= 100)
        .map(|(a, b)| (a * 480, b * 480))
        .collect()
}
