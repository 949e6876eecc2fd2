//! Recording tests: sample placement on the timeline, crash safety, the mix, MP3 duration,
//! and prompt loading.

use earshot_vocab::{Format, Track};
use std::f64::consts::PI;
use std::fs::File;
use std::path::Path;

use earshot_media::prompt::{PromptError, load_prompt};
use earshot_media::recorder::{Mp3Spec, Quality, TrackWriter, encode_mp3, mix_wavs};

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i32>) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let spec = r.spec();
    let samples = r
        .samples::<i32>()
        .collect::<Result<Vec<_>, _>>()
        .expect("samples");
    (spec, samples)
}

fn tone(hz: f64, amp: f64, n: usize, rate: u32) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()) as i16)
        .collect()
}

#[test]
fn write_at_fills_gaps_and_trims_overlaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    for preset in [Quality::Standard, Quality::Ultra] {
        let path = dir.path().join(format!("{preset:?}.wav"));
        let mut w = TrackWriter::create(&path, preset, None).expect("create");
        w.write_at(0, &[1, 2, 3]).expect("write");
        w.write_at(5, &[4, 5]).expect("gap of 2"); // positions 3, 4 become silence
        w.write_at(5, &[9, 9, 6, 7]).expect("overlap"); // 5, 6 already written: trimmed
        w.write_at(3, &[8]).expect("past"); // entirely in the past: dropped
        w.write_at(9, &[]).expect("empty");
        w.write_at(9, &[-32768, 32767]).expect("extremes");
        assert_eq!(w.position(), 11);
        let info = w.finalize().expect("finalize");
        assert_eq!(info.path, path);
        assert_eq!(info.duration_ms, 0); // 11 samples
        let (spec, samples) = read_wav(&path);
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 48_000, preset.wav_bits())
        );
        let shift = spec.bits_per_sample - 16;
        let back: Vec<i32> = samples.iter().map(|s| s >> shift).collect();
        assert_eq!(
            back,
            vec![1, 2, 3, 0, 0, 4, 5, 6, 7, -32768, 32767],
            "{preset:?}"
        );
        assert_eq!(info.bytes, std::fs::metadata(&path).expect("meta").len());
    }
}

#[test]
fn killed_writer_leaves_a_playable_file_missing_at_most_one_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.wav");
    let mut w = TrackWriter::create(&path, Quality::High, None).expect("create");
    let total = 48_000 * 5 / 2; // 2.5 s in 20 ms frames, with one 100 ms gap
    let signal: Vec<i16> = (0..total).map(|i| (i % 20_000) as i16 - 10_000).collect();
    for (k, frame) in signal.chunks(960).enumerate() {
        if k == 30 {
            continue; // gap: becomes silence when frame 31 arrives
        }
        w.write_at((k * 960) as u64, frame).expect("write");
    }
    // Simulate a crash: no finalize, no Drop (hound's Drop would finalize).
    std::mem::forget(w);

    let (spec, samples) = read_wav(&path);
    assert_eq!(spec.sample_rate, 48_000);
    assert!(
        samples.len() >= total - 48_000,
        "only {} of {total} samples survived",
        samples.len()
    );
    assert!(samples.len() <= total);
    let mut expected: Vec<i32> = signal.iter().map(|&s| i32::from(s)).collect();
    expected[30 * 960..31 * 960].fill(0);
    assert_eq!(&samples[..], &expected[..samples.len()]);
}

#[test]
fn a_killed_track_is_continued_on_the_same_timeline_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resume.wav");
    let first: Vec<i16> = (0..96_000).map(|i| (i % 1000) as i16).collect();
    let mut w = TrackWriter::create(&path, Quality::High, None).expect("create");
    w.write_at(0, &first).expect("write");
    w.flush().expect("flush");
    std::mem::forget(w); // killed: no finalize

    let mut w = TrackWriter::open(&path, Quality::High, None).expect("open existing");
    assert_eq!(
        w.position(),
        96_000,
        "continues where the flushed audio ends"
    );
    let second = vec![1234i16; 48_000];
    w.write_at(w.position() + 4_800, &second)
        .expect("write after restart");
    let info = w.finalize().expect("finalize");
    assert_eq!(info.duration_ms, 3_100);
    let (_, samples) = read_wav(&path);
    assert_eq!(samples.len(), 96_000 + 4_800 + 48_000);
    assert!(
        samples[..96_000]
            .iter()
            .zip(&first)
            .all(|(a, b)| *a == i32::from(*b))
    );
    assert!(samples[96_000..100_800].iter().all(|s| *s == 0));
    assert!(samples[100_800..].iter().all(|s| *s == 1234));

    // Killed again, this time with audio written after the last flush (the header counts
    // only what was flushed): the samples on disk are recovered, not dropped.
    let mut w = TrackWriter::open(&path, Quality::High, None).expect("open again");
    let before = w.position();
    w.write_at(before, &vec![-777i16; 48_000 + 9_600])
        .expect("write");
    // hound flushes its header every second of audio: 1.2 s written means 0.2 s after it.
    std::mem::forget(w);
    let w = TrackWriter::open(&path, Quality::High, None).expect("open after the kill");
    let recovered = w.position() - before;
    assert!(
        recovered > 48_000 + 4_800,
        "only {recovered} of the 57 600 samples written after the restart were kept"
    );
    drop(w);
    let (_, samples) = read_wav(&path);
    assert_eq!(samples.len() as u64, before + recovered);
    assert!(samples[before as usize..].iter().all(|s| *s == -777));

    // A file that is not a WAV is replaced, not an error.
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"not a wav").expect("write junk");
    let w = TrackWriter::open(&junk, Quality::High, None).expect("replaces junk");
    assert_eq!(w.position(), 0);
}

#[test]
fn mix_puts_each_sound_at_its_own_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb, pm) = (
        dir.path().join("ai.wav"),
        dir.path().join("p.wav"),
        dir.path().join("mix.wav"),
    );
    let a_sound = tone(440.0, 12_000.0, 24_000, 48_000);
    let b_sound = tone(1000.0, 9_000.0, 24_000, 48_000);
    let mut a = TrackWriter::create(&pa, Quality::Standard, None).expect("a");
    a.write_at(24_000, &a_sound).expect("a write"); // 0.5 s .. 1.0 s
    a.write_at(96_000, &[32_000; 480]).expect("a loud"); // 2.0 s, to test saturation
    let a_info = a.finalize().expect("a fin");
    let mut b = TrackWriter::create(&pb, Quality::Ultra, None).expect("b");
    b.write_at(72_000, &b_sound).expect("b write"); // 1.5 s .. 2.0 s
    b.write_at(96_000, &[32_000; 480]).expect("b loud");
    b.write_at(119_520, &[5; 480]).expect("b tail"); // ends at 2.5 s
    b.finalize().expect("b fin");
    assert_eq!(a_info.duration_ms, 2010);

    let info = mix_wavs(&pa, &pb, &pm, None).expect("mix");
    assert_eq!(
        info.duration_ms, 2500,
        "the longer track decides the length"
    );
    let (spec, mix) = read_wav(&pm);
    assert_eq!(spec.bits_per_sample, 24, "mix keeps the higher bit depth");
    let mix16: Vec<i32> = mix.iter().map(|s| s >> 8).collect();
    assert_eq!(mix16.len(), 120_000);
    assert!(mix16[..24_000].iter().all(|&s| s == 0));
    let a_expected: Vec<i32> = a_sound.iter().map(|&s| i32::from(s)).collect();
    assert_eq!(&mix16[24_000..48_000], &a_expected[..]);
    assert!(mix16[48_000..72_000].iter().all(|&s| s == 0));
    let b_expected: Vec<i32> = b_sound.iter().map(|&s| i32::from(s)).collect();
    assert_eq!(&mix16[72_000..96_000], &b_expected[..]);
    assert!(
        mix[96_000..96_480].iter().all(|&s| s == (1 << 23) - 1),
        "saturates, no wrap"
    );
    assert!(mix16[119_520..].iter().all(|&s| s == 5));
}

/// Decode an MP3 with symphonia; returns (samples with gapless trimming, samples without,
/// sample rate).
fn decode_mp3(path: &Path) -> (Vec<i16>, usize, u32) {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let mut results = Vec::new();
    let mut rate = 0;
    for gapless in [true, false] {
        let mss = MediaSourceStream::new(
            Box::new(File::open(path).expect("open")),
            Default::default(),
        );
        let mut hint = Hint::new();
        hint.with_extension("mp3");
        let opts = FormatOptions {
            enable_gapless: gapless,
            ..Default::default()
        };
        let mut format = symphonia::default::get_probe()
            .format(&hint, mss, &opts, &MetadataOptions::default())
            .expect("probe mp3")
            .format;
        let track = format.default_track().expect("track").clone();
        rate = track.codec_params.sample_rate.expect("mp3 rate");
        let mut dec = symphonia::default::get_codecs()
            .make(&track.codec_params, &DecoderOptions::default())
            .expect("mp3 decoder");
        let mut pcm = Vec::new();
        while let Ok(packet) = format.next_packet() {
            let decoded = dec.decode(&packet).expect("decode mp3");
            let mut buf = SampleBuffer::<i16>::new(decoded.capacity() as u64, *decoded.spec());
            buf.copy_interleaved_ref(decoded);
            pcm.extend_from_slice(buf.samples());
        }
        results.push(pcm);
    }
    let raw = results.pop().expect("raw").len();
    (results.pop().expect("gapless"), raw, rate)
}

/// `samples` at 48 kHz resampled to `rate`, aligned (the resampler's delay dropped) and as
/// long as the input stands for.
fn resampled(samples: &[i16], rate: u32) -> Vec<i16> {
    let mut r = earshot_media::resample::StreamResampler::with_chunk(48_000, rate, 4800)
        .expect("resampler");
    let mut out = Vec::new();
    r.process(samples, &mut out).expect("resample");
    r.flush(&mut out).expect("flush");
    let delay = r.delay();
    let wanted = r.expected_output() as usize;
    out.drain(..delay);
    out.truncate(wanted);
    out
}

#[test]
fn mp3_decodes_to_the_wav_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Standard and high code a 24 kHz MP3 (resampled), ultra a 48 kHz one.
    for (preset, rate) in [
        (Quality::Standard, 24_000),
        (Quality::High, 24_000),
        (Quality::Ultra, 48_000),
    ] {
        let wav = dir.path().join(format!("{preset:?}.wav"));
        let mp3 = dir.path().join(format!("{preset:?}.mp3"));
        let n = 161_803; // 3.37 s, not a multiple of the MP3 frame (1152 or 576)
        let two_tones = |n: usize, rate: u32| -> Vec<i16> {
            tone(330.0, 8_000.0, n, rate)
                .iter()
                .zip(tone(1_250.0, 3_000.0, n, rate))
                .map(|(a, b)| a + b)
                .collect()
        };
        let signal = two_tones(n, 48_000);
        let mut w = TrackWriter::create(&wav, preset, None).expect("create");
        w.write_at(0, &signal).expect("write");
        let wav_info = w.finalize().expect("finalize");
        let info = encode_mp3(&wav, &mp3, preset.into(), None).expect("encode mp3");
        assert_eq!(info.duration_ms, wav_info.duration_ms);
        assert!(info.bytes > 0 && info.bytes == std::fs::metadata(&mp3).expect("meta").len());
        let expected_bytes = preset.mp3_bitrate_kbps() as f64 * 1000.0 / 8.0 * n as f64 / 48_000.0;
        assert!(
            (info.bytes as f64 / expected_bytes - 1.0).abs() < 0.1,
            "{} bytes vs {expected_bytes}",
            info.bytes
        );

        let (pcm, raw_len, mp3_rate) = decode_mp3(&mp3);
        assert_eq!(mp3_rate, rate, "{preset:?}");
        // The same two tones sampled at the MP3's rate: what the file must hold, aligned.
        let n_at_rate = n * rate as usize / 48_000;
        let reference = two_tones(n_at_rate, rate);
        let diff_ms = (pcm.len() as f64 - n_at_rate as f64).abs() * 1000.0 / f64::from(rate);
        eprintln!(
            "{preset:?}: wav {n} samples, mp3 {} gapless / {raw_len} raw samples at {rate} Hz",
            pcm.len()
        );
        assert!(diff_ms <= 50.0, "mp3 is {diff_ms:.1} ms off the wav");
        // Content is aligned and similar (gapless trimming removes the encoder delay, the
        // resampler's delay is dropped before coding).
        let half_s = rate as usize / 2;
        let mid = half_s..pcm.len().min(n_at_rate) - half_s;
        let dot: f64 = mid
            .clone()
            .map(|i| f64::from(reference[i]) * f64::from(pcm[i]))
            .sum();
        let e1: f64 = mid.clone().map(|i| f64::from(reference[i]).powi(2)).sum();
        let e2: f64 = mid.map(|i| f64::from(pcm[i]).powi(2)).sum();
        let corr = dot / (e1 * e2).sqrt();
        assert!(corr > 0.95, "{preset:?}: correlation {corr}");
    }
}

#[test]
fn mp3_keeps_speech_at_the_standard_bitrate() {
    // The MP3s are encoded with LAME's fast quality setting (-q 7, half the CPU of -q 5): real
    // speech must come back close to the WAV it was made from.
    let speech = earshot_media::prompt::load_prompt(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/participant_speech.wav"),
    )
    .expect("speech fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let (wav, mp3) = (dir.path().join("s.wav"), dir.path().join("s.mp3"));
    let mut w = TrackWriter::create(&wav, Quality::Standard, None).expect("create");
    w.write_at(0, &speech).expect("write");
    w.finalize().expect("finalize");
    encode_mp3(&wav, &mp3, Quality::Standard.into(), None).expect("encode mp3");
    let (pcm, _, rate) = decode_mp3(&mp3);
    assert_eq!(rate, Quality::Standard.mp3_sample_rate());
    // The speech at the MP3's rate is what it must come back as.
    let speech = resampled(&speech, rate);
    let n = pcm.len().min(speech.len());
    let margin = rate as usize / 10;
    assert!(
        n + margin / 2 >= speech.len(),
        "{} of {} samples",
        pcm.len(),
        speech.len()
    );
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for i in margin..n - margin {
        let (a, b) = (f64::from(speech[i]), f64::from(pcm[i]));
        sig += a * a;
        err += (a - b) * (a - b);
    }
    let snr = 10.0 * (sig / err).log10();
    eprintln!(
        "speech through MP3 at {} kbps: SNR {snr:.1} dB",
        Quality::Standard.mp3_bitrate_kbps()
    );
    assert!(snr > 12.0, "SNR {snr:.1} dB");
}

#[tokio::test]
async fn derived_recordings_are_made_on_request_from_the_two_tracks() {
    use earshot_media::engine::{Engine, EngineConfig, RecordingRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = TrackWriter::create(dir.path().join("participant.wav"), Quality::Standard, None)
        .expect("participant");
    p.write_at(0, &tone(440.0, 8_000.0, 48_000, 48_000))
        .expect("write");
    p.finalize().expect("finalize");
    let mut a =
        TrackWriter::create(dir.path().join("ai.wav"), Quality::Standard, None).expect("ai");
    a.write_at(48_000, &tone(880.0, 8_000.0, 24_000, 48_000))
        .expect("write");
    a.finalize().expect("finalize");
    let (engine, _events) = Engine::new(EngineConfig::default());
    let req = RecordingRequest {
        sealing: None,
        dir: dir.path().to_path_buf(),
        quality: Quality::Standard,
        derive_at_end: false,
    };
    // mix.mp3 first: it needs mix.wav, which is made on the way.
    let mix_mp3 = engine
        .derive_recording(req.clone(), Track::Mix, Format::Mp3)
        .await
        .expect("mix.mp3");
    assert_eq!(
        (mix_mp3.track.as_str(), mix_mp3.format.as_str()),
        ("mix", "mp3")
    );
    assert_eq!(
        mix_mp3.duration_ms, 1500,
        "the longer track decides the length"
    );
    assert!(dir.path().join("mix.wav").exists());
    let (_, mix) = read_wav(&dir.path().join("mix.wav"));
    assert_eq!(mix.len(), 72_000);
    for (track, ms) in [(Track::Participant, 1000), (Track::Ai, 1500)] {
        let f = engine
            .derive_recording(req.clone(), track, Format::Mp3)
            .await
            .expect("mp3");
        assert_eq!(f.path, dir.path().join(format!("{track}.mp3")));
        assert_eq!(f.duration_ms, ms);
        assert_eq!(f.bytes, std::fs::metadata(&f.path).expect("meta").len());
        let (pcm, _, rate) = decode_mp3(&f.path);
        let per_ms = i64::from(rate / 1000);
        assert!(
            (pcm.len() as i64 - ms as i64 * per_ms).abs() <= per_ms * 50,
            "{track}: {}",
            pcm.len()
        );
    }
    // No partial file is left; the tracks themselves are not made from anything.
    assert!(std::fs::read_dir(dir.path()).expect("dir").all(|e| {
        !e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".part")
    }));
    assert!(
        engine
            .derive_recording(req, Track::Participant, Format::Wav)
            .await
            .is_err()
    );
    // A format the media plane does not make is not even expressible past the port.
    assert!("flac".parse::<Format>().is_err());
}

#[test]
fn mp3_rejects_bad_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("x.wav");
    let mut w = TrackWriter::create(&wav, Quality::Standard, None).expect("create");
    w.write_at(0, &[0; 960]).expect("write");
    w.finalize().expect("fin");
    let spec = |kbps, sample_rate| Mp3Spec { kbps, sample_rate };
    assert!(encode_mp3(&wav, &dir.path().join("x.mp3"), spec(65, 24_000), None).is_err());
    assert!(encode_mp3(&wav, &dir.path().join("x.mp3"), spec(64, 12_345), None).is_err());
    assert!(
        encode_mp3(
            &dir.path().join("missing.wav"),
            &dir.path().join("y.mp3"),
            spec(64, 24_000),
            None
        )
        .is_err()
    );
    let stereo = dir.path().join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut s = hound::WavWriter::create(&stereo, spec).expect("stereo");
    s.write_sample(0i16).expect("w");
    s.write_sample(0i16).expect("w");
    s.finalize().expect("fin");
    assert!(
        encode_mp3(
            &stereo,
            &dir.path().join("z.mp3"),
            Quality::High.into(),
            None
        )
        .is_err()
    );
    assert!(mix_wavs(&stereo, &wav, &dir.path().join("m.wav"), None).is_err());
}

fn write_test_wav(path: &Path, rate: u32, channels: u16, seconds: f64) -> usize {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    let n = (seconds * f64::from(rate)) as usize;
    for s in tone(530.0, 10_000.0, n, rate) {
        for ch in 0..channels {
            // Second channel inverted half-level: the downmix must average, not pick one.
            w.write_sample(if ch == 0 { s } else { -s / 2 })
                .expect("sample");
        }
    }
    w.finalize().expect("finalize");
    n
}

/// Amplitude of `hz` in 48 kHz `x`.
fn amplitude(x: &[i16], hz: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let ph = 2.0 * PI * hz * i as f64 / 48_000.0;
        re += f64::from(s) * ph.cos();
        im += f64::from(s) * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

#[test]
fn prompts_load_to_48_khz_with_the_right_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rate, channels) in [
        (16_000, 1),
        (22_050, 2),
        (44_100, 1),
        (48_000, 2),
        (8_000, 1),
    ] {
        let path = dir.path().join(format!("p{rate}_{channels}.wav"));
        let seconds = 1.234;
        write_test_wav(&path, rate, channels, seconds);
        let pcm = load_prompt(&path).expect("load");
        let expected = (seconds * 48_000.0) as i64;
        assert!(
            (pcm.len() as i64 - expected).abs() <= 960,
            "{rate} Hz: {} samples vs {expected}",
            pcm.len()
        );
        let amp = amplitude(&pcm[4_800..pcm.len() - 4_800], 530.0);
        let want = if channels == 2 { 2_500.0 } else { 10_000.0 };
        assert!(
            (amp / want - 1.0).abs() < 0.05,
            "{rate} Hz x{channels}: 530 Hz amplitude {amp}, want {want}"
        );
        // Starts on time: the resampler delay was removed, so the tone is in phase with an
        // ideal 530 Hz sine starting at sample 0 (2 samples off would give about 0.99).
        let reference = tone(530.0, 10_000.0, 4_800, 48_000);
        let w = 480..4_800;
        let dot: f64 = w
            .clone()
            .map(|i| f64::from(pcm[i]) * f64::from(reference[i]))
            .sum();
        let e1: f64 = w.clone().map(|i| f64::from(pcm[i]).powi(2)).sum();
        let e2: f64 = w.map(|i| f64::from(reference[i]).powi(2)).sum();
        let corr = dot / (e1 * e2).sqrt();
        assert!(corr > 0.995, "{rate} Hz: phase correlation {corr}");
    }
}

#[test]
fn flac_prompt_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("p.wav");
    let flac = dir.path().join("p.flac");
    write_test_wav(&wav, 24_000, 1, 0.8);
    let converted = std::process::Command::new("sox")
        .arg(&wav)
        .arg(&flac)
        .status();
    assert!(
        converted.is_ok_and(|s| s.success()),
        "sox failed or is missing: scripts/install-deps.sh --test installs it"
    );
    let pcm = load_prompt(&flac).expect("load flac");
    assert!(
        (pcm.len() as i64 - 38_400).abs() <= 960,
        "{} samples",
        pcm.len()
    );
}

#[test]
fn bad_prompt_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        load_prompt(dir.path().join("missing.wav")),
        Err(PromptError::Open { .. })
    ));

    let garbage = dir.path().join("garbage.wav");
    let bytes: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &bytes).expect("write");
    assert!(matches!(
        load_prompt(&garbage),
        Err(PromptError::Decode { .. })
    ));

    let empty = dir.path().join("empty.flac");
    std::fs::write(&empty, b"").expect("write");
    assert!(load_prompt(&empty).is_err());

    // A RIFF header promising data that is not there: an error or a short prompt, no panic.
    let good = dir.path().join("good.wav");
    write_test_wav(&good, 16_000, 1, 0.5);
    let mut truncated = std::fs::read(&good).expect("read");
    truncated.truncate(100);
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &truncated).expect("write");
    if let Ok(pcm) = load_prompt(&cut) {
        assert!(pcm.len() < 48_000 / 10);
    }

    // Header only, with no samples at all.
    let hollow = dir.path().join("hollow.wav");
    write_test_wav(&hollow, 16_000, 1, 0.0);
    assert!(load_prompt(&hollow).is_err());
}

/// Prompt bytes decode exactly as the same file does (the fuzz targets use the bytes).
#[test]
fn prompt_bytes_decode_like_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.wav");
    write_test_wav(&path, 22_050, 2, 0.3);
    let from_file = load_prompt(&path).expect("file");
    let bytes = std::fs::read(&path).expect("read");
    let from_bytes =
        earshot_media::prompt::load_prompt_from_bytes(&bytes, "p.wav", Some("wav")).expect("bytes");
    assert_eq!(from_file, from_bytes);
}

fn decode_error(bytes: &[u8]) -> String {
    match earshot_media::prompt::load_prompt_from_bytes(bytes, "x", None) {
        Err(PromptError::Decode { reason, .. }) => reason,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// Fuzzing found that symphonia allocates declared lengths before reading them: a 600-byte
/// FLAC whose Vorbis comment claimed 1 GiB made it allocate 1 GiB (up to 4 GiB possible), and a
/// WAV LIST/INFO chunk can do the same. Such files are refused before symphonia sees them.
#[test]
fn prompt_headers_declaring_more_than_the_file_are_refused() {
    let mut streaminfo = vec![0x00, 0x00, 0x00, 0x22];
    streaminfo.extend_from_slice(&[0x10, 0x00, 0x10, 0x00]); // block sizes
    streaminfo.extend_from_slice(&[0x00; 6]); // frame sizes
    streaminfo.extend_from_slice(&[0x03, 0xe8, 0x00, 0xf0]); // 16 kHz, mono, 16-bit
    streaminfo.extend_from_slice(&[0x00; 20]);
    let flac = |block: &[u8]| -> Vec<u8> {
        let mut f = b"fLaC".to_vec();
        f.extend_from_slice(&streaminfo);
        f.extend_from_slice(block);
        f
    };
    // Vorbis comment (type 4, last): vendor "", one comment of 1 GiB.
    let mut comment = vec![0x84, 0x00, 0x00, 0x0c];
    comment.extend_from_slice(&0u32.to_le_bytes());
    comment.extend_from_slice(&1u32.to_le_bytes());
    comment.extend_from_slice(&(1u32 << 30).to_le_bytes());
    let reason = decode_error(&flac(&comment));
    assert!(
        reason.contains("Vorbis comment declares 1073741824 bytes"),
        "{reason}"
    );
    // Picture (type 6, last): MIME type of 4 GiB - 1.
    let mut picture = vec![0x86, 0x00, 0x00, 0x08];
    picture.extend_from_slice(&3u32.to_be_bytes());
    picture.extend_from_slice(&u32::MAX.to_be_bytes());
    let reason = decode_error(&flac(&picture));
    assert!(reason.contains("picture MIME type"), "{reason}");
    // A metadata block longer than the file.
    let reason = decode_error(&flac(&[0x81, 0xff, 0xff, 0xff, 0, 0]));
    assert!(
        reason.contains("FLAC metadata block of 16777215 bytes"),
        "{reason}"
    );
    // WAV: a streamed RIFF length (any chunk length passes symphonia's own check) and a LIST
    // chunk of 4 GiB - 16 in a 40-byte file.
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&u32::MAX.to_le_bytes());
    wav.extend_from_slice(b"WAVELIST");
    wav.extend_from_slice(&(u32::MAX - 16).to_le_bytes());
    wav.extend_from_slice(b"INFOINAM");
    wav.extend_from_slice(&(u32::MAX - 32).to_le_bytes());
    wav.extend_from_slice(b"abcd");
    let reason = decode_error(&wav);
    assert!(reason.contains("WAV chunk \"LIST\" declares"), "{reason}");
    // Not a WAV or FLAC at the start (symphonia would search the first MiB for a marker).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.wav");
    write_test_wav(&path, 8_000, 1, 0.1);
    let mut prefixed = b"junk".to_vec();
    prefixed.extend_from_slice(&std::fs::read(&path).expect("read"));
    let reason = decode_error(&prefixed);
    assert!(
        reason.contains("not a WAV (RIFF) or FLAC (fLaC) file"),
        "{reason}"
    );
    assert!(decode_error(b"RI").contains("too short"));
}

/// Fuzzing found that symphonia 0.5 panics (a zero time base) on a WAV whose sample rate is 0;
/// such a prompt is a decode error.
#[test]
fn a_wav_prompt_at_0_hz_is_an_error_not_a_panic() {
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&44u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    // PCM, mono, 0 Hz, 0 bytes/s, block align 2, 16-bit.
    wav.extend_from_slice(&[1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 16, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&8u32.to_le_bytes());
    wav.extend_from_slice(&[0; 8]);
    assert_eq!(decode_error(&wav), "WAV sample rate is 0");
}

/// Fuzzing found that a prompt at 1 Hz (a few header bytes) resamples into seconds of audio:
/// 600 samples would make the full 10 minutes. Prompts below 8 kHz are refused.
#[test]
fn prompts_below_8_khz_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rate, ok) in [(1, false), (7_999, false), (8_000, true)] {
        let path = dir.path().join(format!("p{rate}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for _ in 0..4 {
            w.write_sample(1000i16).expect("sample");
        }
        w.finalize().expect("finalize");
        match load_prompt(&path) {
            Ok(pcm) => assert!(ok, "{rate} Hz accepted ({} samples)", pcm.len()),
            Err(PromptError::Decode { reason, .. }) => {
                assert!(!ok, "{rate} Hz refused: {reason}");
                assert!(reason.contains("below 8000 Hz"), "{reason}");
            }
            Err(e) => panic!("{rate} Hz: {e}"),
        }
    }
}

/// The plaintext a sealed file reads as (a WAV with its rebuilt header, or the bytes).
fn unseal(path: &Path, keys: &earshot_sealed::KeyRing) -> (Vec<u8>, bool) {
    let r = earshot_sealed::SealedReader::open(File::open(path).expect("open"), keys)
        .expect("sealed file opens");
    let finished = r.is_finished();
    let len = r.plaintext_len();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r.range(0, len), &mut out).expect("decrypts");
    (out, finished)
}

#[test]
fn sealed_recordings_read_back_byte_identical_to_plain_ones() {
    use earshot_media::recorder::Sealing;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(earshot_sealed::KeyRing::generate("k1").expect("key"));
    let sealing = Sealing {
        keys: keys.clone(),
        seal_new: true,
    };
    for preset in [Quality::Standard, Quality::Ultra] {
        let mut made = Vec::new();
        for (name, s) in [("plain", None), ("sealed", Some(&sealing))] {
            let d = dir.path().join(format!("{name}-{preset:?}"));
            std::fs::create_dir_all(&d).expect("dir");
            let (p, a, m) = (
                d.join("participant.wav"),
                d.join("ai.wav"),
                d.join("mix.wav"),
            );
            let mut wp = TrackWriter::create(&p, preset, s).expect("participant");
            let mut wa = TrackWriter::create(&a, preset, s).expect("ai");
            let voice = tone(440.0, 9000.0, 48_000 * 3, 48_000);
            for (i, frame) in voice.chunks(960).enumerate() {
                wp.write_at(i as u64 * 960, frame).expect("write");
            }
            wa.write_at(24_000, &tone(660.0, 7000.0, 48_000, 48_000))
                .expect("ai");
            wp.finalize().expect("finalize");
            wa.finalize().expect("finalize");
            mix_wavs(&p, &a, &m, s).expect("mix");
            let mp3 = d.join("mix.mp3");
            encode_mp3(&m, &mp3, preset.into(), s).expect("mp3");
            let peaks = earshot_media::peaks::compute(&m, s).expect("peaks");
            made.push((d, peaks));
        }
        let (plain_dir, plain_peaks) = &made[0];
        let (sealed_dir, sealed_peaks) = &made[1];
        assert_eq!(plain_peaks, sealed_peaks);
        for file in ["participant.wav", "ai.wav", "mix.wav", "mix.mp3"] {
            let plain = std::fs::read(plain_dir.join(file)).expect("plain");
            let disk = std::fs::read(sealed_dir.join(file)).expect("sealed");
            assert!(earshot_sealed::is_sealed(&disk), "{file} sealed");
            for magic in [b"RIFF", b"WAVE", b"LAME", b"Xing", b"Info"] {
                assert!(
                    !disk.windows(4).any(|w| w == magic),
                    "{file}: {magic:?} on disk"
                );
            }
            let (back, finished) = unseal(&sealed_dir.join(file), &keys);
            assert!(finished, "{file}");
            assert_eq!(back.len(), plain.len(), "{file} {preset:?}");
            assert!(
                back == plain,
                "{file} {preset:?} differs from the plain file"
            );
        }
        // No temporary file left beside them.
        let mut names: Vec<String> = std::fs::read_dir(sealed_dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ai.wav", "mix.mp3", "mix.wav", "participant.wav"]);
    }
}

#[test]
fn a_killed_sealed_track_loses_at_most_the_last_second_and_continues() {
    use earshot_media::recorder::Sealing;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(earshot_sealed::KeyRing::generate("k1").expect("key"));
    let sealing = Sealing {
        keys: keys.clone(),
        seal_new: true,
    };
    let path = dir.path().join("participant.wav");
    let mut w = TrackWriter::create(&path, Quality::High, Some(&sealing)).expect("create");
    // 2.5 s in 20 ms frames, never flushed by hand: the writer seals a chunk every second.
    let voice: Vec<i16> = (0..120_000).map(|i| (i % 2000) as i16 - 1000).collect();
    for (i, frame) in voice.chunks(960).enumerate() {
        w.write_at(i as u64 * 960, frame).expect("write");
    }
    std::mem::forget(w); // killed
    let (wav, finished) = unseal(&path, &keys);
    assert!(!finished);
    let kept = (wav.len() - 44) / 2;
    assert!(
        (120_000 - 48_000..=120_000).contains(&kept),
        "{kept} of 120000 samples kept"
    );
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(samples, voice[..kept]);
    // A torn chunk at the end (the kill in the middle of a write) is dropped on reopening.
    std::io::Write::write_all(
        &mut File::options().append(true).open(&path).expect("append"),
        &[0x40, 0, 0, 0, 1, 2, 3],
    )
    .expect("torn");
    let mut w = TrackWriter::open(&path, Quality::High, Some(&sealing)).expect("reopen");
    assert_eq!(w.position(), kept as u64);
    w.write_at(kept as u64, &[5; 480]).expect("more");
    w.finalize().expect("finalize");
    let (wav, finished) = unseal(&path, &keys);
    assert!(finished);
    assert_eq!((wav.len() - 44) / 2, kept + 480);
    // Without the key, or with another, the track is an error, never garbage audio.
    let other = Sealing {
        keys: Arc::new(earshot_sealed::KeyRing::generate("k1").expect("key")),
        seal_new: true,
    };
    let err = earshot_media::peaks::compute(&path, Some(&other)).unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");
    let err = earshot_media::peaks::compute(&path, None).unwrap_err();
    assert!(err.to_string().contains("no master key"), "{err}");
    let err = TrackWriter::open(&path, Quality::High, Some(&other)).unwrap_err();
    assert!(err.to_string().contains("does not open"), "{err}");
    assert_eq!(unseal(&path, &keys).0.len(), wav.len(), "left as it was");

    // A sealed file cut inside its header (a crash as it was created) holds no audio: replaced.
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &std::fs::read(&path).expect("read")[..100]).expect("write");
    let w = TrackWriter::open(&cut, Quality::High, Some(&sealing)).expect("replaced");
    assert_eq!(w.position(), 0);
    // A plain track from before encryption was on is continued plain.
    let plain = dir.path().join("plain.wav");
    let mut w = TrackWriter::create(&plain, Quality::High, None).expect("plain");
    w.write_at(0, &[7; 4800]).expect("write");
    w.finalize().expect("finalize");
    let mut w = TrackWriter::open(&plain, Quality::High, Some(&sealing)).expect("continue");
    w.write_at(4800, &[8; 4800]).expect("write");
    w.finalize().expect("finalize");
    let (_, samples) = read_wav(&plain);
    assert_eq!(samples.len(), 9600);
}
