//! Silent listeners over real WebRTC on 127.0.0.1: a participant client talks (a 1 kHz tone)
//! while the built-in interviewer plays a prompt (a 300 Hz tone); a receive-only listener
//! joins through the engine and hears both, and the participant never hears the listener side
//! (it gets only the interviewer).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::codec::{OpusDecoder, OpusEncoder, OpusSettings};
use earshot_media::engine::{Engine, EngineConfig, ParticipantRequest, PromptSpec};
use earshot_media::peer::PeerEvent;
use tokio::sync::mpsc::Receiver;

const FRAME: usize = 960;

fn tone(freq: f32, samples: usize, amplitude: f32) -> Vec<i16> {
    (0..samples)
        .map(|i| ((i as f32 * freq * std::f32::consts::TAU / 48_000.0).sin() * amplitude) as i16)
        .collect()
}

/// Power of `freq` in `pcm` relative to the signal's total power (Goertzel).
fn share_of(pcm: &[i16], freq: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    let mut total = 0f64;
    for x in pcm {
        let x = f64::from(*x);
        total += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A pure tone of n samples has Goertzel power (n/2)^2 * a^2 and total power n * a^2 / 2.
    let n = pcm.len() as f64;
    power / (n / 2.0) / total.max(1.0)
}

async fn wait_connected(rx: &mut Receiver<PeerEvent>, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(PeerEvent::Connected)) => return,
            Ok(Some(PeerEvent::Failed | PeerEvent::Closed)) | Ok(None) => {
                panic!("{who}: failed before connecting")
            }
            Ok(Some(_)) => {}
            Err(_) => panic!("{who}: not connected within 10 s"),
        }
    }
}

/// Decodes everything a client receives into a shared buffer.
fn collect(mut rx: Receiver<PeerEvent>) -> Arc<Mutex<Vec<i16>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    tokio::spawn(async move {
        let mut dec = OpusDecoder::new().expect("decoder");
        while let Some(ev) = rx.recv().await {
            if let PeerEvent::Audio(p) = ev
                && let Ok(pcm) = dec.decode(&p.payload)
            {
                h.lock().expect("lock").extend_from_slice(pcm);
            }
        }
    });
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_the_participant_and_the_interviewer_and_is_not_heard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prompt_path = dir.path().join("q1.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&prompt_path, spec).expect("wav");
        for s in tone(300.0, 48_000 * 4, 8000.0) {
            w.write_sample(s).expect("sample");
        }
        w.finalize().expect("finalize");
    }
    let (engine, _events) = Engine::new(EngineConfig::default());

    // The participant.
    let (participant, offer, participant_rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("offer");
    let answer = engine
        .open_participant(ParticipantRequest {
            session_id: "ses_listen".into(),
            offer_sdp: offer,
            prompts: vec![PromptSpec {
                id: "q1".into(),
                text: "a question".into(),
                audio: prompt_path,
            }],
            silence_ms: 1000,
            start_at: 0,
            noise_suppression: false,
            recording: None,
            agent: None,
            opus: None,
        })
        .await
        .expect("answer");
    participant.apply_answer(&answer).await.expect("apply");
    let mut participant_rx = participant_rx;
    wait_connected(&mut participant_rx, "participant").await;
    let participant_heard = collect(participant_rx);
    let participant = Arc::new(participant);
    let talker = Arc::clone(&participant);
    let talk = tokio::spawn(async move {
        let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
        let voice = tone(1000.0, 48_000 * 10, 8000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for chunk in voice.chunks(FRAME) {
            tick.tick().await;
            let mut f = [0i16; FRAME];
            f.copy_from_slice(chunk);
            let packet: Bytes = enc.encode(&f).expect("encode");
            let _ = talker.send_opus(packet, Duration::from_millis(20)).await;
        }
    });

    // The listener joins while both talk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (listener, offer, listener_rx) = ClientPeer::offer(&ClientConfig {
        receive_only: true,
        ..Default::default()
    })
    .await
    .expect("listener offer");
    let (_id, answer) = engine
        .open_listener("ses_listen", &offer)
        .await
        .expect("listener answer");
    listener.apply_answer(&answer).await.expect("apply");
    let mut listener_rx = listener_rx;
    wait_connected(&mut listener_rx, "listener").await;
    let listener_heard = collect(listener_rx);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let heard = listener_heard.lock().expect("lock").clone();
    assert!(
        heard.len() >= 48_000 * 2,
        "the listener got {} samples in 3 s",
        heard.len()
    );
    // The prompt starts 0.5 s into the session and lasts 4 s: both are heard now.
    let (voice, prompt) = (share_of(&heard, 1000.0), share_of(&heard, 300.0));
    assert!(
        voice > 0.1 && prompt > 0.1,
        "listener mix: participant share {voice:.2}, interviewer share {prompt:.2}"
    );
    let got = participant_heard.lock().expect("lock").clone();
    let (own, ai) = (share_of(&got, 1000.0), share_of(&got, 300.0));
    assert!(ai > 0.5, "the participant hears the interviewer ({ai:.2})");
    assert!(
        own < 0.01,
        "the participant must not hear themselves through the listener path ({own:.3})"
    );
    talk.abort();
    listener.close().await;
    participant.close().await;
    engine.hang_up("ses_listen").await;
}

/// Reads a finished WAV track.
fn read_wav(path: &std::path::Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).expect("wav");
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_offers_a_microphone_is_answered_send_only_and_never_heard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prompt_path = dir.path().join("q1.wav");
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&prompt_path, spec).expect("wav");
        for s in tone(300.0, 48_000 * 4, 8000.0) {
            w.write_sample(s).expect("sample");
        }
        w.finalize().expect("finalize");
    }
    let rec_dir = dir.path().join("rec");
    let (engine, mut events) = Engine::new(EngineConfig::default());
    let (participant, offer, participant_rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("offer");
    let answer = engine
        .open_participant(ParticipantRequest {
            session_id: "ses_mic".into(),
            offer_sdp: offer,
            prompts: vec![PromptSpec {
                id: "q1".into(),
                text: "a question".into(),
                audio: prompt_path,
            }],
            silence_ms: 1000,
            start_at: 0,
            noise_suppression: false,
            recording: Some(earshot_media::engine::RecordingRequest {
                sealing: None,
                dir: rec_dir.clone(),
                quality: earshot_vocab::Quality::Standard,
                derive_at_end: true,
            }),
            agent: None,
            opus: None,
        })
        .await
        .expect("answer");
    participant.apply_answer(&answer).await.expect("apply");
    let mut participant_rx = participant_rx;
    wait_connected(&mut participant_rx, "participant").await;
    let participant_heard = collect(participant_rx);
    let participant = Arc::new(participant);
    // The participant talks quietly at 1 kHz (so the session's audio is live both ways).
    let talker = Arc::clone(&participant);
    let talk = tokio::spawn(async move {
        let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
        let voice = tone(1000.0, 48_000 * 10, 4000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for chunk in voice.chunks(FRAME) {
            tick.tick().await;
            let mut f = [0i16; FRAME];
            f.copy_from_slice(chunk);
            let _ = talker
                .send_opus(enc.encode(&f).expect("encode"), Duration::from_millis(20))
                .await;
        }
    });

    // A monitor whose offer carries a microphone (sendrecv), talking loudly at 2.5 kHz.
    let (monitor, offer, monitor_rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("monitor offer");
    assert!(offer.contains("a=sendrecv"), "the monitor offers to send");
    let (id, answer) = engine
        .open_listener("ses_mic", &offer)
        .await
        .expect("listener answer");
    assert!(
        answer.contains("a=sendonly") && !answer.contains("a=sendrecv"),
        "the server only sends to a monitor:\n{answer}"
    );
    monitor.apply_answer(&answer).await.expect("apply");
    let mut monitor_rx = monitor_rx;
    wait_connected(&mut monitor_rx, "monitor").await;
    let monitor_heard = collect(monitor_rx);
    let monitor = Arc::new(monitor);
    let speaker = Arc::clone(&monitor);
    let intrude = tokio::spawn(async move {
        let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
        let voice = tone(2500.0, 48_000 * 3, 16_000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut sent = 0usize;
        for chunk in voice.chunks(FRAME) {
            tick.tick().await;
            let mut f = [0i16; FRAME];
            f.copy_from_slice(chunk);
            if speaker
                .send_opus(enc.encode(&f).expect("encode"), Duration::from_millis(20))
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        sent
    });
    let sent = intrude.await.expect("monitor task");
    eprintln!("the monitor offered {sent} frames of its tone");
    let heard = monitor_heard.lock().expect("lock").clone();
    assert!(
        heard.len() >= 48_000 * 2,
        "the monitor still hears the session ({} samples)",
        heard.len()
    );
    assert!(
        share_of(&heard, 300.0) > 0.1,
        "the monitor hears the interviewer"
    );
    engine.close_listener("ses_mic", id).await;
    talk.abort();

    let got = participant_heard.lock().expect("lock").clone();
    assert!(
        share_of(&got, 300.0) > 0.5,
        "the participant hears the interviewer"
    );
    assert!(
        share_of(&got, 2500.0) < 0.001,
        "the participant hears nothing of the monitor ({sent} frames offered by it)"
    );
    // The listener leaves; the recordings hold nothing of it.
    let mut left = false;
    engine.finish("ses_mic", None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(earshot_media::engine::MediaEvent::ListenerLeft { listener_id, .. })) => {
                assert_eq!(listener_id, id);
                left = true;
            }
            Ok(Some(earshot_media::engine::MediaEvent::RecordingsFinished { .. })) => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("recordings not finished within 20 s"),
        }
    }
    assert!(left, "the listener's end was reported");
    for track in ["participant.wav", "ai.wav", "mix.wav"] {
        let pcm = read_wav(&rec_dir.join(track));
        assert!(pcm.len() > 48_000 * 2, "{track}: {} samples", pcm.len());
        let share = share_of(&pcm, 2500.0);
        assert!(
            share < 0.001,
            "{track} holds the monitor's tone ({share:.4})"
        );
    }
    let participant_track = read_wav(&rec_dir.join("participant.wav"));
    assert!(
        share_of(&participant_track, 1000.0) > 0.1,
        "the participant's own voice is recorded"
    );
    participant.close().await;
    monitor.close().await;
}
