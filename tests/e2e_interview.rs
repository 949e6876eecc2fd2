//! End to end: a real headless Chromium, fed known speech as its microphone, takes a whole
//! interview with the built-in interviewer; the recordings must hold what was said and played.

mod support;

use std::time::Duration;
use support::audio;
use support::browser::Browser;
use support::{Server, fixture, join_interview};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_interview_runs_to_completion_and_is_recorded() {
    // Short turn-taking silence so the looping 7 s speech file advances the interview quickly.
    // The mix and MP3s are made on request here (the first download); the agent and lifecycle
    // tests cover the default, where they are made when the session ends.
    let server = Server::start(&[
        ("EARSHOT_INTERVIEWER_SILENCE_MS", "1000"),
        ("EARSHOT_RECORDING_DERIVE", "on_request"),
    ])
    .await;
    let (_token, url) = server.invite().await;
    let speech = fixture("participant_speech.wav");
    let mut browser = Browser::launch(&url, Some(&speech)).await;

    let session_id = join_interview(&mut browser, &server).await;
    // The page runs under its Content-Security-Policy (a nonce for its one inline script and
    // style): the script got this far, and the style applies.
    assert_eq!(
        browser
            .eval("getComputedStyle(document.body).display")
            .await,
        serde_json::json!("flex"),
        "the page's inline style applies under its CSP"
    );

    // The browser must hear the interviewer: received audio energy grows.
    assert!(
        browser.hears_audio(Duration::from_secs(20)).await,
        "browser received audio energy"
    );

    let done = server
        .wait_session(&session_id, Duration::from_secs(150), |s| {
            s["state"] == "completed" && s["recordings"].as_array().is_some_and(|r| r.len() == 2)
        })
        .await;
    assert_eq!(
        done["state"],
        "completed",
        "session: {done:#}\nlog:\n{}",
        server.log()
    );
    let recs = done["recordings"].as_array().expect("recordings");
    assert_eq!(
        recs.len(),
        2,
        "participant and ai as wav; the rest made on request: {done:#}"
    );
    assert!(
        browser
            .wait_for("window.earshot.state === 'ended'", Duration::from_secs(10))
            .await,
        "page shows the end"
    );

    // The media plane's counters saw this interview: a packet each way every 20 ms of the
    // active time, (almost) no missed 20 ms deadline, and one finished end-of-session job.
    let metrics = server.metrics_text().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    let active_s = done["active_duration_ms"].as_f64().expect("active ms") / 1000.0;
    let (sent, played, ticks) = (
        value("earshot_media_participant_packets_total"),
        value("earshot_media_ai_packets_total"),
        value("earshot_media_ticks_total"),
    );
    assert!(
        sent >= active_s * 50.0 * 0.9 && played >= active_s * 50.0 * 0.9 && ticks >= played,
        "{active_s:.1} s active: {sent} packets in, {played} out, {ticks} ticks"
    );
    assert!(value("earshot_media_deadline_missed_total") <= ticks * 0.01);
    assert_eq!(value("earshot_sessions{state=\"completed\"}"), 1.0);
    assert_eq!(value("earshot_media_finalized_total"), 1.0);

    // Download every file through the admin API (what a researcher gets).
    let dir = tempfile::tempdir().expect("tmp");
    let mut paths = std::collections::HashMap::new();
    for track in ["participant", "ai", "mix"] {
        for fmt in ["wav", "mp3"] {
            let r = server
                .admin(server.http.get(server.url(&format!(
                    "/v1/sessions/{session_id}/recordings/{track}.{fmt}"
                ))))
                .send()
                .await
                .expect("download");
            assert_eq!(r.status(), 200, "{track}.{fmt}");
            let bytes = r.bytes().await.expect("body");
            let p = dir.path().join(format!("{track}.{fmt}"));
            std::fs::write(&p, &bytes).expect("write");
            if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
                let _ = std::fs::write(
                    std::path::Path::new(&art).join(format!("{track}.{fmt}")),
                    &bytes,
                );
            }
            paths.insert(format!("{track}.{fmt}"), p);
        }
    }
    // The downloads made the mix and the MP3s: the session lists all six now.
    let listed = server
        .wait_session(&session_id, Duration::from_secs(5), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        listed["recordings"].as_array().map(Vec::len),
        Some(6),
        "{listed:#}"
    );

    if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
        let _ = std::fs::write(std::path::Path::new(&art).join("server.log"), server.log());
    }

    // Participant track: the fed speech, at one consistent lag, without gaps while it plays.
    let (ref_rate, ref_samples) = audio::read_wav(&speech);
    let reference = audio::envelope(ref_rate, &ref_samples);
    let (p_rate, p_samples) = audio::read_wav(&paths["participant.wav"]);
    assert_eq!(p_rate, 48_000);
    let participant = audio::envelope(p_rate, &p_samples);
    let (a_rate, a_samples) = audio::read_wav(&paths["ai.wav"]);
    let ai = audio::envelope(a_rate, &a_samples);
    // While the interviewer speaks, Chromium's echo canceller (the page asks for
    // echoCancellation, as participants on speakers need) ducks the microphone before encoding:
    // measured as digital silence inside the browser's own packets with zero loss and no
    // concealment on the server. Gaps are therefore judged where the AI is silent (±200 ms),
    // which is where answers are given; the correlation is judged over the whole track.
    let ai_quiet: Vec<bool> = (0..participant.len())
        .map(|i| {
            let lo = i.saturating_sub(20);
            let hi = (i + 20).min(ai.len());
            lo >= hi || ai[lo..hi].iter().all(|v| *v < -60.0)
        })
        .collect();
    let skip = 100; // the first second: the browser's audio processing starting up
    let scored = &participant[skip..];
    let (lag, r) = audio::best_loop_lag(&reference, scored);
    eprintln!(
        "participant envelope correlation r={r:.3} at lag {lag} frames over {} s",
        scored.len() / 100
    );
    assert!(
        r > 0.75,
        "participant track does not match the fed speech (r={r:.3})"
    );
    let expected = audio::tiled(&reference, lag, scored.len());
    let masked = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, x)| if ai_quiet[i + skip] { *x } else { -70.0 })
            .collect()
    };
    let (exp_quiet, rec_quiet) = (masked(&expected), masked(scored));
    let quiet_frames = ai_quiet[skip..].iter().filter(|q| **q).count();
    let r_quiet = audio::pearson(&exp_quiet, &rec_quiet);
    let gap = audio::longest_gap_during_speech(&exp_quiet, &rec_quiet);
    eprintln!(
        "while the AI is silent ({} s): r={r_quiet:.3}, longest gap while speech played: {gap} ms",
        quiet_frames / 100
    );
    assert!(
        quiet_frames > 1000,
        "too little answer time to judge: {quiet_frames} frames"
    );
    assert!(
        r_quiet > 0.85,
        "participant answers do not match the fed speech (r={r_quiet:.3})"
    );
    assert!(gap <= 100, "gap of {gap} ms while speech played");

    // AI track: each prompt, in order.
    let mut from = 0;
    for prompt in ["greeting", "q1", "q2", "q3", "goodbye"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("assets/interviewer/default/{prompt}.wav"));
        let (rate, s) = audio::read_wav(&path);
        let env = audio::envelope(rate, &s);
        let (pos, r) = audio::find(&env, &ai, from);
        eprintln!("prompt {prompt}: r={r:.3} at {} ms", pos * 10);
        assert!(r > 0.9, "AI track lacks prompt {prompt} (best r={r:.3})");
        from = pos + env.len();
    }

    // Mix: exactly the two tracks summed on one timeline.
    let (m_rate, m_samples) = audio::read_wav(&paths["mix.wav"]);
    assert_eq!(m_rate, 48_000);
    assert_eq!(
        m_samples.len(),
        p_samples.len().max(a_samples.len()),
        "mix length"
    );
    let mut worst = 0f32;
    for (i, m) in m_samples.iter().enumerate() {
        let sum = (p_samples.get(i).copied().unwrap_or(0.0)
            + a_samples.get(i).copied().unwrap_or(0.0))
        .clamp(-1.0, 1.0);
        worst = worst.max((m - sum).abs());
    }
    assert!(
        worst < 2.0 / 32768.0,
        "mix differs from participant+ai by {worst}"
    );
    assert!(audio::pearson(&audio::envelope(m_rate, &m_samples), &ai) > 0.3);

    // MP3s decode to their WAV's duration within 50 ms.
    for track in ["participant", "ai", "mix"] {
        let (rate, s) = audio::read_wav(&paths[&format!("{track}.wav")]);
        let wav_ms = s.len() as f64 * 1000.0 / f64::from(rate);
        let mp3_ms = audio::mp3_duration_ms(&paths[&format!("{track}.mp3")]);
        eprintln!("{track}: wav {wav_ms:.0} ms, mp3 {mp3_ms:.0} ms");
        assert!(
            (wav_ms - mp3_ms).abs() <= 50.0,
            "{track}: wav {wav_ms} ms vs mp3 {mp3_ms} ms"
        );
    }
}
