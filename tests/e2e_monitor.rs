//! End to end (issue 11, F7): live monitoring with two real headless Chromium instances
//! against a real server. A participant runs an interview with the built-in interviewer; a
//! QA monitor signs in to the Live Sessions dashboard (a wrong token and the participant's
//! invite token are refused), sees the session appear with its signals, opens its monitor
//! page, sees transcript lines arrive, and listens: the audio it receives has energy and
//! follows the recorded mix. A second listen-in from the same browser offers a microphone fed
//! a 1 kHz tone: it is answered receive-only, and neither what the participant hears nor any
//! recording holds the tone. Screenshots of the pages at 1280x800 and 390x844 go to
//! `target-shots/` when `MONITOR_SHOTS_DIR` names a directory.
//!
//! A second test puts two Rust participants on one dashboard, one through the impairing relay
//! at 10 % loss sending clipped speech, one clean: the first is highlighted for loss and
//! clipping with those values on its card, the second never is.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::audio;
use support::browser::Browser;
use support::{ADMIN_TOKEN, Server, fixture, join_interview};

/// Records `secs` of a MediaStream in the page (WebAudio) and returns its 10 ms envelope (dB)
/// and the 1 kHz peak ratio of the whole stretch (see `peak_ratio`). `STREAM` is replaced by
/// an expression giving the stream.
const CAPTURE_JS: &str = r#"(async () => {
  const stream = STREAM;
  const ctx = new AudioContext({ sampleRate: 48000 });
  await ctx.resume();
  const src = ctx.createMediaStreamSource(stream);
  const proc = ctx.createScriptProcessor(4096, 1, 1);
  const want = SECS * 48000;
  const buf = new Float32Array(want);
  let n = 0;
  await new Promise((done) => {
    proc.onaudioprocess = (e) => {
      const d = e.inputBuffer.getChannelData(0);
      const take = Math.min(d.length, want - n);
      buf.set(d.subarray(0, take), n);
      n += take;
      if (n >= want) done();
    };
    src.connect(proc);
    proc.connect(ctx.destination);
  });
  src.disconnect(); proc.disconnect(); await ctx.close();
  const env = [];
  for (let i = 0; i + 480 <= n; i += 480) {
    let s = 0;
    for (let j = i; j < i + 480; j++) s += buf[j] * buf[j];
    env.push(Math.max(-70, 10 * Math.log10(s / 480 + 1e-18)));
  }
  const goertzel = (f) => {
    const c = 2 * Math.cos(2 * Math.PI * f / 48000);
    let s1 = 0, s2 = 0;
    for (let i = 0; i < n; i++) { const s0 = buf[i] + c * s1 - s2; s2 = s1; s1 = s0; }
    return s1 * s1 + s2 * s2 - c * s1 * s2;
  };
  const near = [940, 950, 960, 970, 980, 990, 1010, 1020, 1030, 1040, 1050, 1060].map(goertzel);
  const ratio = goertzel(1000) / (near.reduce((a, b) => a + b, 0) / near.length + 1e-12);
  return { env, ratio };
})()"#;

/// Notes, in `window.shown`, what the participant page's speaking indicator, caption and
/// progress show each time one of them changes.
const NOTE_PARTICIPANT_JS: &str = r#"(() => {
  window.shown = [];
  const text = (id) => document.getElementById(id).textContent;
  const note = () => window.shown.push({ speaking: text('speaking'), caption: text('caption'), progress: text('progress') });
  const o = new MutationObserver(note);
  for (const id of ['speaking', 'caption', 'progress']) {
    o.observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
  }
  note();
  return true;
})()"#;

/// The default script's prompts, in order (src/defaults.rs).
const PROMPTS: [&str; 5] = [
    "Hello, and thank you for joining this interview. I will ask you three short questions.",
    "First question. What do you enjoy most about your work?",
    "Second question. Tell me about a challenge you solved recently.",
    "Third question. What would you like to learn next year?",
    "Thank you, that was the last question. Goodbye.",
];

/// Each prompt's caption was shown while the interviewer spoke it, with its place in the
/// interview, and "Your turn" followed every prompt but the last (the interview ends there).
async fn check_participant_page(participant: &mut Browser) {
    let shown = participant.eval("window.shown").await;
    let shown = shown.as_array().expect("notes").clone();
    let field = |i: usize, k: &str| shown[i][k].as_str().unwrap_or_default().to_string();
    let mut from = 0;
    for (n, prompt) in PROMPTS.iter().enumerate() {
        let spoken = (from..shown.len()).find(|&i| {
            field(i, "speaking") == "The interviewer is speaking"
                && field(i, "caption") == *prompt
                && field(i, "progress") == format!("Part {} of 5", n + 1)
        });
        let Some(spoken) = spoken else {
            panic!("prompt {n} not shown while spoken (after note {from}): {shown:#?}");
        };
        if n + 1 < PROMPTS.len() {
            let turn = (spoken..shown.len())
                .find(|&i| field(i, "speaking") == "Your turn" && field(i, "caption") == *prompt);
            let Some(turn) = turn else {
                panic!("no \"Your turn\" after prompt {n}: {shown:#?}");
            };
            from = turn;
        }
    }
}

fn capture_js(stream: &str, secs: u32) -> String {
    CAPTURE_JS
        .replace("STREAM", stream)
        .replace("SECS", &secs.to_string())
}

/// Power at `f` Hz relative to the mean power at twelve neighbouring frequencies 10-60 Hz away
/// (Goertzel over the whole slice): about 1 for noise, up to ~6 for the speech here,
/// thousands for a steady loud tone.
fn peak_ratio(pcm: &[f32], rate: u32, f: f64) -> f64 {
    let goertzel = |f: f64| {
        let c = 2.0 * (2.0 * std::f64::consts::PI * f / f64::from(rate)).cos();
        let (mut s1, mut s2) = (0f64, 0f64);
        for x in pcm {
            let s0 = f64::from(*x) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    };
    let offsets = [
        -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    ];
    let near: f64 = offsets.iter().map(|d| goertzel(f + d)).sum::<f64>() / offsets.len() as f64;
    goertzel(f) / (near + 1e-12)
}

/// The largest 1 kHz peak ratio over 4 s windows (half overlapping) of a track.
fn worst_tone_window(pcm: &[f32], rate: u32) -> f64 {
    let w = rate as usize * 4;
    (0..pcm.len().saturating_sub(w).max(1))
        .step_by(w / 2)
        .map(|i| peak_ratio(&pcm[i..(i + w).min(pcm.len())], rate, 1000.0))
        .fold(0.0, f64::max)
}

/// A 1 kHz tone (as sox would make it: `sox -n -r 48000 -b 16 tone.wav synth 10 sine 1000`).
fn tone_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("tone wav");
    for i in 0..48_000 * 10 {
        let s = (i as f64 * 1000.0 * std::f64::consts::TAU / 48_000.0).sin() * 16_000.0;
        w.write_sample(s as i16).expect("sample");
    }
    w.finalize().expect("finalize");
}

fn shots_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("MONITOR_SHOTS_DIR").ok()?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Screenshots of the current page at the desktop and the phone size.
async fn shoot(browser: &mut Browser, name: &str) {
    let Some(dir) = shots_dir() else { return };
    for (w, h, mobile, tag) in [(1280, 800, false, "desktop"), (390, 844, true, "phone")] {
        browser.set_viewport(w, h, mobile).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        browser
            .screenshot(&dir.join(format!("{name}-{tag}.png")))
            .await;
    }
    browser.set_viewport(1280, 800, false).await;
}

async fn sign_in(browser: &mut Browser, token: &str) {
    let js = format!(
        "document.querySelector('#token').value = {}; document.querySelector('#signin-form').requestSubmit(); true",
        serde_json::to_string(token).expect("json")
    );
    browser.eval(&js).await;
}

async fn download(server: &Server, id: &str, file: &str, dir: &Path) -> PathBuf {
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{id}/recordings/{file}"))),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200, "{file}");
    let p = dir.join(file);
    std::fs::write(&p, r.bytes().await.expect("body")).expect("write");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_watches_and_listens_to_a_live_interview_and_is_never_heard() {
    let server = Server::start(&[("EARSHOT_INTERVIEWER_SILENCE_MS", "1200")]).await;
    let (invite_token, url) = server.invite().await;
    let speech = fixture("participant_speech.wav");
    let mut participant = Browser::launch(&url, Some(&speech)).await;
    let session_id = join_interview(&mut participant, &server).await;
    // The participant page's speaking indicator, caption and progress: every change noted.
    participant.eval(NOTE_PARTICIPANT_JS).await;
    assert!(
        participant
            .wait_for(
                "document.querySelector('#speaking').textContent === 'The interviewer is speaking' && document.querySelector('#caption').textContent.length > 0",
                Duration::from_secs(20)
            )
            .await,
        "the participant page shows the interviewer speaking with a caption"
    );
    shoot(&mut participant, "participant").await;

    let tmp = tempfile::tempdir().expect("tmp");
    let tone = tmp.path().join("tone-1khz.wav");
    tone_wav(&tone);
    let mut monitor = Browser::launch(&server.url("/monitor"), Some(&tone)).await;

    // Sign-in: a wrong token and the participant's invite token are refused.
    assert!(
        monitor
            .wait_for(
                "!!document.querySelector('#signin') && !document.querySelector('#signin').hidden",
                Duration::from_secs(15)
            )
            .await,
        "the dashboard asks for the token"
    );
    for bad in ["not-the-token", invite_token.as_str()] {
        sign_in(&mut monitor, bad).await;
        assert!(
            monitor
                .wait_for(
                    "document.querySelector('#signin-error').textContent.includes('refused') && !document.querySelector('#signin').hidden",
                    Duration::from_secs(10)
                )
                .await,
            "token {bad:?} refused on the dashboard"
        );
    }
    sign_in(&mut monitor, ADMIN_TOKEN).await;
    let card = format!("#sessions li[data-session='{session_id}']");
    assert!(
        monitor
            .wait_for(
                &format!(
                    "(() => {{ const c = document.querySelector(\"{card}\"); return !!c && !c.textContent.includes('Level—'); }})()"
                ),
                Duration::from_secs(20)
            )
            .await,
        "the session appears on the dashboard with its signals"
    );
    let text = monitor
        .eval(&format!("document.querySelector(\"{card}\").textContent"))
        .await;
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("in progress")
            && (text.contains("dBFS") || text.contains("Levelsilent"))
            && text.contains("Demo"),
        "card: {text}"
    );
    assert_eq!(
        monitor
            .eval("sessionStorage.getItem('earshot-admin-token') !== null && !location.href.includes('token')")
            .await,
        Value::Bool(true),
        "the token is kept in the tab, not the URL"
    );
    shoot(&mut monitor, "dashboard").await;

    // The signals behind the card are plausible for a clean loopback interview: speech level,
    // no loss, little jitter, the AI answering after the configured 1.2 s of silence.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let signals = loop {
        let list: Value = server
            .admin(server.http.get(server.url("/v1/monitor/sessions")))
            .send()
            .await
            .expect("dashboard json")
            .json()
            .await
            .expect("json");
        let mine = list["sessions"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["id"] == session_id.as_str()).cloned());
        if let Some(s) = mine.filter(|s| !s["signals"]["ai_latency_ms"].is_null()) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no AI latency measured: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let g = &signals["signals"];
    eprintln!("signals: {g}");
    let num = |k: &str| g[k].as_f64().unwrap_or(f64::NAN);
    assert!(
        num("loss") < 0.02 && num("jitter_ms") < 80.0 && num("input_dbfs") > -120.0,
        "{g}"
    );
    assert!(
        (1000.0..=2500.0).contains(&num("ai_latency_ms")),
        "AI response time {g}"
    );
    assert_eq!(signals["attention"], serde_json::json!([]), "{signals:#}");

    // Open the session's monitor page from the dashboard.
    monitor
        .eval(&format!(
            "document.querySelector(\"{card} a.title\").click(); true"
        ))
        .await;
    assert!(
        monitor
            .wait_for(
                "location.pathname.startsWith('/monitor/sessions/') && document.querySelectorAll('#transcript li.ai').length >= 1",
                Duration::from_secs(20)
            )
            .await,
        "the monitor page shows the transcript"
    );
    let lines_before = monitor
        .eval("document.querySelectorAll('#transcript li.ai').length")
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(
        monitor
            .wait_for(
                &format!("document.querySelectorAll('#transcript li.ai').length > {lines_before}"),
                Duration::from_secs(60)
            )
            .await,
        "a new transcript line arrives live (had {lines_before})"
    );

    // Listen.
    monitor
        .eval("document.querySelector('#listen').click(); true")
        .await;
    assert!(
        monitor
            .wait_for(
                "!!window.monitorPc && window.monitorPc.connectionState === 'connected'",
                Duration::from_secs(15)
            )
            .await,
        "the listen-in connects; server log:\n{}",
        server.log()
    );
    assert!(
        monitor
            .wait_for(
                "window.monitorPc.getStats().then(s => { let e = 0; s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') e = r.totalAudioEnergy || 0; }); return e > 0.001; })",
                Duration::from_secs(20)
            )
            .await,
        "the monitor receives audio energy"
    );
    let d = server.session(&session_id).await;
    let live: Vec<&Value> = d["monitors"]
        .as_array()
        .expect("monitors")
        .iter()
        .filter(|m| m["live"] == true)
        .collect();
    assert_eq!(live.len(), 1, "one live listen-in: {d:#}");
    shoot(&mut monitor, "monitor").await;

    // A second listen-in from the same browser offers its microphone (the 1 kHz tone).
    let mic = format!(
        r#"(async () => {{
          const mic = await navigator.mediaDevices.getUserMedia({{ audio: true }});
          const pc = new RTCPeerConnection({{ iceServers: [] }});
          window.micPc = pc;
          for (const t of mic.getTracks()) pc.addTrack(t, mic);
          await pc.setLocalDescription(await pc.createOffer());
          const offer = pc.localDescription.sdp;
          const res = await fetch('/v1/sessions/{session_id}/whep', {{ method: 'POST',
            headers: {{ 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + sessionStorage.getItem('earshot-admin-token') }},
            body: offer }});
          const answer = await res.text();
          await pc.setRemoteDescription({{ type: 'answer', sdp: answer }});
          return {{ status: res.status, offered: offer.includes('a=sendrecv'), answer }};
        }})()"#
    );
    let m = monitor.eval(&mic).await;
    assert_eq!(m["status"], 201, "{m}");
    assert_eq!(m["offered"], true, "the offer asks to send: {m}");
    let answer = m["answer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("a=sendonly") && !answer.contains("a=sendrecv"),
        "answered receive-only for the monitor:\n{answer}"
    );
    assert!(
        monitor
            .wait_for(
                "window.micPc.connectionState === 'connected'",
                Duration::from_secs(15)
            )
            .await,
        "the microphone monitor connects"
    );

    // Both at once for 10 s: what the monitor hears, and what the participant hears.
    let monitor_capture = capture_js("document.querySelector('#audio').srcObject", 10);
    let participant_capture = capture_js(
        "new MediaStream(window.earshot.pc.getReceivers().map(r => r.track))",
        10,
    );
    let (heard_by_monitor, heard_by_participant) = tokio::join!(
        monitor.eval(&monitor_capture),
        participant.eval(&participant_capture),
    );
    let mic_sent = monitor
        .eval("window.micPc.getStats().then(s => { let b = 0; s.forEach(r => { if (r.type === 'outbound-rtp') b += r.bytesSent || 0; }); return b; })")
        .await;
    eprintln!("bytes the microphone monitor's browser sent: {mic_sent}");
    let participant_ratio = heard_by_participant["ratio"].as_f64().expect("ratio");
    let participant_peak = heard_by_participant["env"]
        .as_array()
        .expect("envelope")
        .iter()
        .filter_map(Value::as_f64)
        .fold(-70.0, f64::max);
    assert!(
        participant_peak > -50.0,
        "the participant heard the interviewer during the capture (peak {participant_peak:.0} dB)"
    );
    assert!(
        participant_ratio < 20.0,
        "the participant hears a 1 kHz peak {participant_ratio:.1}x its neighbours"
    );
    let monitor_env: Vec<f32> = heard_by_monitor["env"]
        .as_array()
        .expect("envelope")
        .iter()
        .filter_map(|v| v.as_f64().map(|x| x as f32))
        .collect();
    assert!(
        monitor_env.len() >= 700,
        "{} envelope frames",
        monitor_env.len()
    );
    monitor
        .eval("window.micPc.close(); document.querySelector('#stop').click(); true")
        .await;

    // The transcript follows new lines, except while the reader has scrolled up.
    monitor.set_viewport(1280, 480, false).await;
    const LIST: &str = "document.querySelector('#transcript')";
    assert!(
        monitor
            .wait_for(
                &format!("{LIST}.scrollHeight > {LIST}.clientHeight + 40"),
                Duration::from_secs(60)
            )
            .await,
        "the transcript overflows its panel"
    );
    assert!(
        monitor
            .wait_for(
                &format!("{LIST}.scrollTop + {LIST}.clientHeight >= {LIST}.scrollHeight - 40"),
                Duration::from_secs(10)
            )
            .await,
        "it follows the newest line"
    );
    monitor
        .eval(&format!(
            "{LIST}.scrollTop = 0; {LIST}.dispatchEvent(new Event('scroll')); window.linesAtScroll = {LIST}.children.length; true"
        ))
        .await;
    assert!(
        monitor
            .wait_for(
                &format!("{LIST}.children.length > window.linesAtScroll"),
                Duration::from_secs(30)
            )
            .await,
        "a line arrives while the reader is scrolled up"
    );
    assert_eq!(
        monitor
            .eval(&format!(
                "{LIST}.scrollTop < 5 && !document.querySelector('#more').hidden"
            ))
            .await,
        Value::Bool(true),
        "the reader stays where they scrolled, told of new lines"
    );
    monitor
        .eval("document.querySelector('#more').click(); true")
        .await;
    assert_eq!(
        monitor
            .eval(&format!(
                "{LIST}.scrollTop + {LIST}.clientHeight >= {LIST}.scrollHeight - 5 && document.querySelector('#more').hidden"
            ))
            .await,
        Value::Bool(true),
        "the button brings them to the newest line"
    );
    monitor.set_viewport(1280, 800, false).await;

    // The participant pauses: their page counts down to the pause's expiry (30 min by
    // default), and the monitor page follows the state. Then they resume.
    participant
        .eval("document.querySelector('#pause').click(); true")
        .await;
    assert!(
        participant
            .wait_for(
                "!document.querySelector('#pause-left').hidden && /^Resume within (30:00|29:[0-5][0-9]) /.test(document.querySelector('#pause-left').textContent)",
                Duration::from_secs(10)
            )
            .await,
        "the pause countdown shows: {}",
        participant
            .eval("document.querySelector('#pause-left').textContent")
            .await
    );
    assert!(
        monitor
            .wait_for(
                "document.querySelector('#state').textContent === 'paused'",
                Duration::from_secs(10)
            )
            .await,
        "the monitor page shows the pause"
    );
    participant
        .eval("document.querySelector('#resume').click(); true")
        .await;
    assert!(
        participant
            .wait_for(
                "document.querySelector('#pause-left').hidden && window.earshot.sessionState === 'in_progress'",
                Duration::from_secs(10)
            )
            .await,
        "resumed, the countdown goes"
    );

    // The interview completes; the recordings are made at the end.
    let done = server
        .wait_session(&session_id, Duration::from_secs(180), |s| {
            s["state"] == "completed"
                && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
                && s["monitors"]
                    .as_array()
                    .is_some_and(|m| m.iter().all(|m| !m["ended_at"].is_null()))
        })
        .await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    let monitors = done["monitors"].as_array().expect("monitors");
    assert_eq!(monitors.len(), 2, "both listen-ins recorded: {done:#}");
    assert!(
        monitors
            .iter()
            .all(|m| m["ended_at"].is_string() && m["live"] == false),
        "{done:#}"
    );
    assert!(
        monitor
            .wait_for(
                "document.querySelector('#state').textContent === 'completed'",
                Duration::from_secs(10)
            )
            .await,
        "the monitor page follows the end"
    );

    check_participant_page(&mut participant).await;
    assert_eq!(done["pause_count"], 1, "{done:#}");

    // The monitor page, like the dashboard, refuses the participant's invite token.
    monitor
        .eval(&format!(
            "sessionStorage.setItem('earshot-admin-token', {}); location.reload(); true",
            serde_json::to_string(&invite_token).expect("json")
        ))
        .await;
    assert!(
        monitor
            .wait_for(
                "!!document.querySelector('#signin') && !document.querySelector('#signin').hidden && document.querySelector('#signin-error').textContent.includes('refused') && document.querySelector('#view').hidden",
                Duration::from_secs(15)
            )
            .await,
        "the monitor page refuses an invite token"
    );

    let files = tmp.path().join("rec");
    std::fs::create_dir_all(&files).expect("dir");
    let mut tracks = Vec::new();
    for file in ["participant.wav", "ai.wav", "mix.wav"] {
        let (rate, pcm) = audio::read_wav(&download(&server, &session_id, file, &files).await);
        tracks.push((file, rate, pcm));
    }
    // A positive control: the check finds a faint tone added to the mix (-40 dBFS, far below
    // the speech and the -6 dBFS tone the monitor's microphone offered).
    let (_, rate, mix) = &tracks[2];
    let mut with_tone = mix.clone();
    for (i, s) in with_tone.iter_mut().enumerate().take(*rate as usize * 6) {
        *s += (i as f32 * 1000.0 * std::f32::consts::TAU / *rate as f32).sin() * 0.01;
    }
    let control = worst_tone_window(&with_tone, *rate);
    assert!(control > 20.0, "control tone found ({control:.1})");
    for (file, rate, pcm) in &tracks {
        let worst = worst_tone_window(pcm, *rate);
        eprintln!("{file}: largest 1 kHz peak ratio {worst:.2} (the control's {control:.0})");
        assert!(
            worst < 20.0,
            "{file} holds a 1 kHz peak {worst:.1}x its neighbours"
        );
    }
    // What the monitor heard follows the recorded mix.
    let mix_env = audio::envelope(*rate, mix);
    let (at, r) = audio::find(&monitor_env, &mix_env, 0);
    eprintln!(
        "monitor audio vs mix: r = {r:.2} at {:.2} s; participant's 1 kHz ratio {participant_ratio:.2} (peak {participant_peak:.0} dB)",
        at as f32 * audio::FRAME_MS as f32 / 1000.0
    );
    // Window by window (2 s) near that alignment (within 150 ms: the browser's jitter buffer
    // stretches and shrinks its playout), where the mix has sound (the envelopes of two
    // silences do not correlate): a playout hiccup of the monitor's browser on this shared
    // machine spoils one window, not the comparison.
    let mut windows: Vec<f32> = monitor_env
        .chunks_exact(200)
        .enumerate()
        .filter_map(|(k, w)| {
            let from = at + k * 200;
            let m = mix_env.get(from..from + 200)?;
            let (lo, hi) = m
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            if hi < -45.0 || hi - lo < 15.0 {
                return None;
            }
            let best = (from.saturating_sub(15)..=from + 15)
                .filter_map(|f| mix_env.get(f..f + 200))
                .map(|m| audio::pearson(w, m))
                .fold(f32::MIN, f32::max);
            Some(best)
        })
        .collect();
    assert!(!windows.is_empty(), "no window with sound in the mix");
    windows.sort_by(f32::total_cmp);
    eprintln!("monitor audio vs mix per 2 s window: {windows:.2?}");
    let median = windows[windows.len() / 2];
    assert!(
        r > 0.4 && median > 0.7,
        "the monitor's audio follows the mix (r = {r:.2}, per 2 s window {windows:.2?})"
    );
}

/// Notes, in `window.boards`, what the dashboard shows at every refresh: for each session
/// card, whether it is highlighted, its `data-attention`, the reasons shown and its facts.
const NOTE_DASHBOARD_JS: &str = r#"(() => {
  window.boards = [];
  const note = () => {
    const cards = {};
    for (const li of document.querySelectorAll('#sessions li.session')) {
      const facts = {};
      for (const d of li.querySelectorAll('.facts div')) {
        facts[d.querySelector('dt').textContent] = d.querySelector('dd').textContent;
      }
      cards[li.dataset.session] = {
        highlighted: li.classList.contains('attention'),
        attention: li.dataset.attention,
        why: [...li.querySelectorAll('.why span')].map((s) => s.textContent),
        facts,
      };
    }
    window.boards.push(cards);
  };
  new MutationObserver(note).observe(document.getElementById('sessions'), { childList: true });
  note();
  return true;
})()"#;

/// A percentage as the dashboard shows it ("12.0 %"), as a share.
fn shown_share(card: &Value, fact: &str) -> f64 {
    card["facts"][fact]
        .as_str()
        .and_then(|t| t.strip_suffix(" %"))
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(f64::NAN, |p| p / 100.0)
}

/// Two participants (real webrtc-rs peers, no browser) on one dashboard: one sends the speech
/// fixture driven into clipping through the impairing relay at 10 % random loss, the other the
/// same speech clean on loopback. The monitor's dashboard (a real Chromium, signed in) shows
/// the impaired session's loss and clipping above the attention thresholds and highlights its
/// card with both reasons, while the clean session's card, refreshed at the same moments, reads
/// no loss and no clipping and is never highlighted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_clipping_move_the_signals_and_highlight_the_session_on_the_dashboard() {
    use earshot_media::codec::OpusSettings;
    use support::participant::{Impair, Participant, encode};
    use support::relay::{Impairment, LossModel};

    // A short silence rule keeps the AI's response time far below the 2 s attention limit.
    let server = Server::start(&[("EARSHOT_INTERVIEWER_SILENCE_MS", "800")]).await;
    let speech = audio::read_wav(&fixture("participant_speech.wav")).1;
    // The gain that takes the loudest 10 % of the samples beyond full scale: a microphone
    // driven far into clipping (the saturation happens before the encoder, as in a browser).
    let mut mags: Vec<f32> = speech.iter().map(|s| s.abs()).collect();
    mags.sort_by(f32::total_cmp);
    let gain = 1.0 / mags[mags.len() * 9 / 10].max(1e-4);
    let clipped: Vec<f32> = speech.iter().map(|s| (s * gain).clamp(-1.0, 1.0)).collect();
    let at_full = clipped.iter().filter(|s| s.abs() >= 1.0).count() as f64 / clipped.len() as f64;
    eprintln!(
        "clipped speech: gain {gain:.1} ({:.1} dB), {:.1} % of samples at full scale",
        20.0 * gain.log10(),
        at_full * 100.0
    );
    assert!(at_full > 0.05, "the speech sent clips: {at_full}");
    let opus = OpusSettings {
        bitrate_bps: 32_000,
        complexity: 9,
        fec: true,
        dtx: false,
        expected_loss_pct: 10,
        // A browser codes the full band.
        wideband: false,
    };
    let looped = |x: &[f32]| -> Vec<i16> {
        support::noise::to_i16(
            &x.iter()
                .copied()
                .cycle()
                .take(x.len() * 5)
                .collect::<Vec<_>>(),
        )
    };
    let bad_packets = encode(&looped(&clipped), opus);
    let clean_packets = encode(&looped(&speech), opus);

    let mut monitor = Browser::launch(&server.url("/monitor"), None).await;
    assert!(
        monitor
            .wait_for(
                "!!document.querySelector('#signin') && !document.querySelector('#signin').hidden",
                Duration::from_secs(15)
            )
            .await,
        "the dashboard asks for the token"
    );
    sign_in(&mut monitor, ADMIN_TOKEN).await;
    monitor.eval(NOTE_DASHBOARD_JS).await;

    let lossy = Impairment {
        loss: LossModel::Random(0.10),
        ..Impairment::NONE
    };
    let mut bad = Participant::join(
        &server.base,
        ADMIN_TOKEN,
        Some(Impair {
            to_server: lossy,
            to_client: Impairment::NONE,
            seed: 0xEA25_0011,
        }),
    )
    .await;
    let mut clean = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let (bad_id, clean_id) = (bad.session_id.clone(), clean.session_id.clone());
    // The relay stays with the test (the participant only carries it), to read what it dropped.
    let relay = bad.relay.take().expect("the impaired participant's relay");
    let bad_task = tokio::spawn(async move {
        let streamed = bad.stream(&bad_packets).await;
        (bad, streamed)
    });
    let clean_task = tokio::spawn(async move {
        let streamed = clean.stream(&clean_packets).await;
        (clean, streamed)
    });

    // A refresh that shows the impaired session highlighted for loss and clipping, with the
    // clean session's signals on the same board.
    let flagged = format!(
        "window.boards.some((b) => {{ const c = b['{bad_id}'], k = b['{clean_id}']; \
         return !!c && !!k && c.highlighted && c.attention.split(' ').includes('loss') \
         && c.attention.split(' ').includes('clipping') && k.facts['Loss'] !== '—'; }})"
    );
    let seen = monitor.wait_for(&flagged, Duration::from_secs(30)).await;
    // Ten seconds of the impaired stream through the relay (enough packets to judge its loss
    // rate), while the dashboard keeps refreshing.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while relay.to_server().rtp < 500 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let boards = monitor.eval("window.boards").await;
    let boards = boards.as_array().cloned().unwrap_or_default();
    assert!(
        seen,
        "the impaired session was never highlighted for loss and clipping: {boards:#?}\n{}",
        server.log()
    );
    let board = boards
        .iter()
        .find(|b| {
            let c = &b[bad_id.as_str()];
            c["highlighted"] == true
                && c["attention"]
                    .as_str()
                    .is_some_and(|a| a.contains("loss") && a.contains("clipping"))
                && b[clean_id.as_str()]["facts"]["Loss"] != "—"
        })
        .expect("the board the page matched");
    let (c, k) = (&board[bad_id.as_str()], &board[clean_id.as_str()]);
    eprintln!("impaired card: {c}\nclean card: {k}");
    // The values behind the highlight, as the page shows them.
    let (loss, clipping) = (shown_share(c, "Loss"), shown_share(c, "Clipping"));
    assert!(loss > 0.05 && loss < 0.3, "impaired loss {loss}: {c}");
    assert!(clipping > 0.001, "impaired clipping {clipping}: {c}");
    let why: Vec<&str> = c["why"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        why.contains(&"packet loss") && why.contains(&"clipping"),
        "reasons shown: {c}"
    );
    // The clean session on the same board: no loss, no clipping, not highlighted.
    assert_eq!(k["highlighted"], false, "{k}");
    assert_eq!(k["attention"], "", "{k}");
    assert_eq!(shown_share(k, "Loss"), 0.0, "{k}");
    assert_eq!(shown_share(k, "Clipping"), 0.0, "{k}");
    // And at every refresh until then.
    let clean_cards: Vec<&Value> = boards
        .iter()
        .filter_map(|b| b.get(clean_id.as_str()))
        .collect();
    assert!(
        clean_cards
            .iter()
            .all(|k| k["highlighted"] == false && k["attention"] == ""),
        "the clean session was highlighted: {clean_cards:#?}"
    );
    // The impaired session's signals moved: in the refreshes with signals, its loss and
    // clipping read above the clean session's every time both were shown.
    let pairs: Vec<(f64, f64, f64, f64)> = boards
        .iter()
        .filter_map(|b| {
            let (c, k) = (b.get(bad_id.as_str())?, b.get(clean_id.as_str())?);
            let v = (
                shown_share(c, "Loss"),
                shown_share(c, "Clipping"),
                shown_share(k, "Loss"),
                shown_share(k, "Clipping"),
            );
            (!v.0.is_nan() && !v.2.is_nan()).then_some(v)
        })
        .collect();
    eprintln!("(impaired loss, clipping, clean loss, clipping) per refresh: {pairs:?}");
    assert!(
        pairs.iter().all(|p| p.2 == 0.0 && p.3 == 0.0),
        "clean signals: {pairs:?}"
    );
    let flagged_loss = pairs.iter().filter(|p| p.0 > 0.05).count();
    let flagged_clipping = pairs.iter().filter(|p| p.1 > 0.001).count();
    eprintln!(
        "of {} refreshes: impaired loss above 5 % in {flagged_loss}, clipping above 0.1 % in {flagged_clipping}",
        pairs.len()
    );
    assert!(pairs.len() >= 3, "refreshes with signals: {pairs:?}");

    // The network took what the test says: about 10 % of the impaired participant's packets.
    let up = relay.to_server();
    eprintln!(
        "relay to server: {} RTP, {} dropped ({:.1} %)",
        up.rtp,
        up.dropped,
        up.loss_pct()
    );
    // (Random 10 % over 500 packets: 1.3 % standard deviation; 6-14 % is three of them.)
    assert!(
        up.rtp >= 500 && (6.0..=14.0).contains(&up.loss_pct()),
        "{up:?}"
    );
    bad_task.abort();
    clean_task.abort();
}
