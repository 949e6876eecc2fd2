//! End to end with an external AI agent: headless Chromium as the participant, Earshot in the
//! middle, and a test agent of our own speaking Twilio Media Streams over a real WebSocket.
//! What the agent hears, what the participant hears, barge-in (`clear`), marks, transcript
//! lines in the stored turn log and on the live monitor socket, μ-law mode, and agent failures.

mod support;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::audio;
use support::browser::Browser;
use support::{ADMIN_TOKEN, Server, fixture, join_interview};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// One Chromium at a time: parallel browsers on 2 cores distort timing-sensitive checks.
static BROWSER: Mutex<()> = Mutex::const_new(());

const TONE_HZ: f32 = 440.0;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    L16,
    Mulaw,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::L16 => "l16/16000",
            Format::Mulaw => "mulaw/8000",
        }
    }
    fn rate(self) -> u32 {
        match self {
            Format::L16 => 16_000,
            Format::Mulaw => 8_000,
        }
    }
    fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Format::L16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Format::Mulaw => pcm.iter().map(|s| mulaw_encode(*s)).collect(),
        }
    }
    fn decode(self, bytes: &[u8]) -> Vec<i16> {
        match self {
            Format::L16 => bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
            Format::Mulaw => bytes.iter().map(|b| mulaw_decode(*b)).collect(),
        }
    }
}

// G.711 μ-law, written here independently of the server's implementation.
fn mulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign: u8 = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent: i32 = 7;
    let mut mask = 0x4000;
    while exponent > 0 && (s & mask) == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = ((s >> (exponent + 3)) & 0x0f) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

fn mulaw_decode(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let x = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -x } else { x }) as i16
}

fn tone(rate: u32, ms: u32) -> Vec<i16> {
    let n = (rate * ms / 1000) as usize;
    (0..n)
        .map(|i| {
            ((i as f32 * TONE_HZ * std::f32::consts::TAU / rate as f32).sin() * 0.3 * 32767.0)
                as i16
        })
        .collect()
}

/// What the test agent saw and did, for the assertions.
#[derive(Default)]
struct AgentLog {
    start: Option<Value>,
    participant_pcm: Vec<i16>,
    /// (name, sent at, echoed at)
    marks: Vec<(String, Instant, Option<Instant>)>,
    clear_first_audio_at: Option<Instant>,
    clear_sent_at: Option<Instant>,
    stopped: bool,
    events: Vec<String>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("agent send");
}

async fn send_audio(ws: &mut Ws, format: Format, sid: &str, pcm: &[i16]) {
    let per_frame = (format.rate() / 50) as usize;
    for chunk in pcm.chunks(per_frame) {
        let payload = base64::engine::general_purpose::STANDARD.encode(format.encode(chunk));
        send(
            ws,
            json!({"event":"media","streamSid":sid,"media":{"payload":payload}}),
        )
        .await;
    }
}

/// The scripted agent: greets with a tone and marks, listens, takes a participant line, starts
/// a long answer and cuts it with `clear` (barge-in), says goodbye and ends the interview.
async fn run_agent(listener: TcpListener, format: Format, log: Arc<Mutex<AgentLog>>) {
    let (tcp, _) = listener.accept().await.expect("agent accept");
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .expect("agent handshake");
    let mut sid = String::new();
    // Wait for `start`.
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json from earshot");
            let event = v["event"].as_str().unwrap_or_default().to_string();
            log.lock().await.events.push(event.clone());
            if event == "start" {
                sid = v["streamSid"].as_str().unwrap_or_default().to_string();
                log.lock().await.start = Some(v);
                break;
            }
        }
    }
    let rate = format.rate();
    send(&mut ws, json!({"event":"transcript","role":"ai","text":"Hello, please tell me about your work.","final":true,"start_ms":0,"end_ms":1500})).await;
    send_audio(&mut ws, format, &sid, &tone(rate, 1000)).await;
    log.lock()
        .await
        .marks
        .push(("m1".into(), Instant::now(), None));
    send(
        &mut ws,
        json!({"event":"mark","streamSid":sid,"mark":{"name":"m1"}}),
    )
    .await;
    send_audio(&mut ws, format, &sid, &tone(rate, 500)).await;
    log.lock()
        .await
        .marks
        .push(("m2".into(), Instant::now(), None));
    send(
        &mut ws,
        json!({"event":"mark","streamSid":sid,"mark":{"name":"m2"}}),
    )
    .await;

    let mut phase = 0;
    let listen_started = Instant::now();
    // The latest `media.timestamp` (ms since the stream started): our clock for transcript times.
    let mut stream_ms: u64 = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(50), ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("json from earshot");
                let event = v["event"].as_str().unwrap_or_default().to_string();
                let mut l = log.lock().await;
                match event.as_str() {
                    "media" => {
                        stream_ms = v["media"]["timestamp"]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .or_else(|| v["media"]["timestamp"].as_u64())
                            .unwrap_or(stream_ms);
                        let payload = v["media"]["payload"].as_str().unwrap_or_default();
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .expect("base64 media from earshot");
                        let pcm = format.decode(&bytes);
                        l.participant_pcm.extend(pcm);
                    }
                    "mark" => {
                        let name = v["mark"]["name"].as_str().unwrap_or_default().to_string();
                        l.events.push(format!("mark:{name}"));
                        if let Some(m) = l.marks.iter_mut().find(|m| m.0 == name) {
                            m.2.get_or_insert(Instant::now());
                        }
                    }
                    "stop" => {
                        l.stopped = true;
                        l.events.push(event);
                        break;
                    }
                    other => l.events.push(other.to_string()),
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => {}
        }
        let heard = log.lock().await.participant_pcm.len() as u32 / rate;
        if phase == 0 && heard >= 8 && listen_started.elapsed() > Duration::from_secs(8) {
            phase = 1;
            send(&mut ws, json!({"event":"transcript","role":"participant","text":"I really enjoy working with people and solving difficult problems together.","final":true,"start_ms":stream_ms.saturating_sub(4000),"end_ms":stream_ms})).await;
            // A long answer, cut after one second by barge-in.
            let first = Instant::now();
            send_audio(&mut ws, format, &sid, &tone(rate, 4000)).await;
            tokio::time::sleep(Duration::from_millis(1000).saturating_sub(first.elapsed())).await;
            send(&mut ws, json!({"event":"clear","streamSid":sid})).await;
            let mut l = log.lock().await;
            l.clear_first_audio_at = Some(first);
            l.clear_sent_at = Some(Instant::now());
        } else if phase == 1
            && log
                .lock()
                .await
                .clear_sent_at
                .is_some_and(|t| t.elapsed() > Duration::from_secs(2))
        {
            phase = 2;
            send(&mut ws, json!({"event":"transcript","role":"ai","text":"Thank you, goodbye.","final":true,"start_ms":stream_ms,"end_ms":stream_ms + 500})).await;
            send(&mut ws, json!({"event":"end"})).await;
        }
    }
}

async fn agent_script(server: &Server, url: &str, format: Format) -> String {
    let r = server
        .admin(server.http.post(server.url("/v1/scripts")))
        .json(&json!({"name": format!("agent {}", format.name()), "agent": {"url": url, "audio_format": format.name()}}))
        .send()
        .await
        .expect("create script");
    assert_eq!(r.status(), 201, "create script");
    let v: Value = r.json().await.expect("script json");
    v["id"].as_str().expect("script id").to_string()
}

async fn invite_for(server: &Server, script_id: &str) -> String {
    let r = server
        .admin(server.http.post(server.url("/v1/invites")))
        .json(&json!({"script_id": script_id}))
        .send()
        .await
        .expect("create invite");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("invite json");
    v["url"].as_str().expect("url").to_string()
}

/// Collects every live event of a session until the server closes the socket.
async fn monitor(server: &Server, session_id: &str) -> tokio::task::JoinHandle<Vec<Value>> {
    let url = format!(
        "{}/v1/sessions/{session_id}/live?token={ADMIN_TOKEN}",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("live socket");
    tokio::spawn(async move {
        let mut events = Vec::new();
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_secs(120), ws.next()).await
        {
            if let Message::Text(t) = msg
                && let Ok(v) = serde_json::from_str::<Value>(&t)
            {
                events.push(v);
            }
        }
        events
    })
}

async fn download(server: &Server, session_id: &str, file: &str) -> Vec<u8> {
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{session_id}/recordings/{file}"))),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200, "{file}");
    r.bytes().await.expect("body").to_vec()
}

/// Contiguous loud runs (> -40 dBFS) of an envelope, as (start, len) in frames.
fn loud_runs(env: &[f32]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, v) in env.iter().enumerate() {
        match (start, *v > -40.0) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                runs.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, env.len() - s));
    }
    runs.into_iter().filter(|r| r.1 >= 5).collect()
}

async fn agent_drives_a_browser_session(format: Format) {
    let _one = BROWSER.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("agent port");
    let agent_url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
    let log = Arc::new(Mutex::new(AgentLog::default()));
    let agent = tokio::spawn(run_agent(listener, format, log.clone()));

    let server = Server::start(&[]).await;
    let script = agent_script(&server, &agent_url, format).await;
    let url = invite_for(&server, &script).await;
    let speech = fixture("participant_speech.wav");
    let mut browser = Browser::launch(&format!("{url}?ref=agent-test"), Some(&speech)).await;
    let session_id = join_interview(&mut browser, &server).await;
    let live = monitor(&server, &session_id).await;

    assert!(
        browser.hears_audio(Duration::from_secs(20)).await,
        "the browser hears the agent"
    );
    let done = server
        .wait_session(&session_id, Duration::from_secs(90), |s| {
            s["state"] == "completed" && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    let log = log.lock().await;

    // start carried Twilio's shape and our customParameters.
    let start = log.start.as_ref().expect("agent got start");
    assert_eq!(start["start"]["callSid"], session_id.as_str());
    let params = &start["start"]["customParameters"];
    assert_eq!(params["session"], session_id.as_str());
    assert_eq!(params["script"], script.as_str());
    assert_eq!(params["metadata"]["ref"], "agent-test");
    assert_eq!(params["resume"], false);
    assert_eq!(start["start"]["mediaFormat"]["sampleRate"], format.rate());
    assert_eq!(log.events.first().map(String::as_str), Some("connected"));
    assert!(log.stopped, "agent got stop at the end: {:?}", log.events);

    // What the agent heard is the fed speech.
    let (ref_rate, ref_samples) = audio::read_wav(&speech);
    let reference = audio::envelope(ref_rate, &ref_samples);
    let heard: Vec<f32> = log
        .participant_pcm
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    assert!(
        heard.len() as u32 > format.rate() * 8,
        "agent heard {} samples",
        heard.len()
    );
    let heard_env = audio::envelope(format.rate(), &heard);
    let (_, r) = audio::best_loop_lag(&reference, &heard_env[100..]);
    eprintln!("{format:?}: agent-side participant correlation r={r:.3}");
    assert!(
        r > 0.7,
        "participant audio at the agent does not match the fed speech (r={r:.3})"
    );

    // Marks come back in order, each only after the audio before it was played.
    let names: Vec<&str> = log
        .events
        .iter()
        .filter_map(|e| e.strip_prefix("mark:"))
        .collect();
    assert_eq!(names, ["m1", "m2"], "marks echoed in order");
    for ((name, sent, echoed), audio_ms) in log.marks.iter().zip([1000u64, 1500]) {
        let delay = echoed
            .expect("mark echoed")
            .duration_since(*sent)
            .as_millis() as u64;
        eprintln!("{format:?}: mark {name} echoed {delay} ms after it was sent");
        assert!(
            delay + 60 >= audio_ms,
            "mark {name} echoed after {delay} ms, before its {audio_ms} ms of audio played"
        );
    }

    // The AI track: the greeting tone (1.5 s) and the answer cut by `clear`.
    let ai_wav = download(&server, &session_id, "ai.wav").await;
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ai.wav"), &ai_wav).expect("write");
    let (a_rate, a) = audio::read_wav(&dir.path().join("ai.wav"));
    let runs = loud_runs(&audio::envelope(a_rate, &a));
    assert_eq!(runs.len(), 2, "two AI segments expected, found {runs:?}");
    let greeting_ms = runs[0].1 as i64 * 10;
    assert!(
        (greeting_ms - 1500).abs() <= 60,
        "greeting played {greeting_ms} ms of 1500"
    );
    let expected_ms = log
        .clear_sent_at
        .expect("clear sent")
        .duration_since(log.clear_first_audio_at.expect("clear audio"))
        .as_millis() as i64;
    let played_ms = runs[1].1 as i64 * 10;
    eprintln!(
        "{format:?}: barge-in: {played_ms} ms played of the answer, clear sent after {expected_ms} ms"
    );
    assert!(
        played_ms <= expected_ms + 40,
        "AI audio went on {} ms after clear",
        played_ms - expected_ms
    );
    assert!(
        played_ms + 100 >= expected_ms,
        "AI audio stopped {} ms before clear",
        expected_ms - played_ms
    );

    // Transcript lines: stored in the turn log and streamed live, in order.
    let r = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{session_id}/transcript"))),
        )
        .send()
        .await
        .expect("transcript");
    assert_eq!(r.status(), 200);
    let transcript: Value = r.json().await.expect("transcript json");
    let texts: Vec<String> = transcript["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .filter_map(|t| {
            t["text"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from)
        })
        .collect();
    let wanted = [
        "Hello, please tell me about your work.",
        "I really enjoy working with people",
        "Thank you, goodbye.",
    ];
    let mut pos = 0;
    for w in wanted {
        let found = texts[pos..].iter().position(|t| t.contains(w));
        assert!(found.is_some(), "turn log lacks {w:?} in order: {texts:?}");
        pos += found.unwrap_or(0) + 1;
    }
    let events = tokio::time::timeout(Duration::from_secs(30), live)
        .await
        .expect("live closes")
        .expect("live task");
    // A monitor that joins mid-session gets the earlier lines in its snapshot, then the rest live.
    let live_texts: Vec<&str> = events
        .iter()
        .flat_map(|e| match e["type"].as_str() {
            Some("snapshot") => e["turns"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t["text"].as_str()).collect())
                .unwrap_or_default(),
            Some("transcript") => e["text"].as_str().into_iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "transcript"),
        "live transcript lines streamed: {events:?}"
    );
    let mut pos = 0;
    for w in wanted {
        let found = live_texts[pos..].iter().position(|t| t.contains(w));
        assert!(
            found.is_some(),
            "live stream lacks {w:?} in order: {live_texts:?}"
        );
        pos += found.unwrap_or(0) + 1;
    }
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "state" && e["to"] == "completed"),
        "live state change to completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_drives_a_browser_session_in_l16() {
    agent_drives_a_browser_session(Format::L16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_drives_a_browser_session_in_mulaw() {
    agent_drives_a_browser_session(Format::Mulaw).await;
}

async fn assert_ends_technical_with_recordings(server: &Server, session_id: &str) {
    let done = server
        .wait_session(session_id, Duration::from_secs(60), |s| {
            s["state"] == "abandoned" && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(done["state"], "abandoned", "{done:#}\n{}", server.log());
    let reason = done["end_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("technical") && reason.contains("agent"),
        "end_reason {reason:?}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    for track in ["participant", "ai", "mix"] {
        let bytes = download(server, session_id, &format!("{track}.wav")).await;
        let p = dir.path().join(format!("{track}.wav"));
        std::fs::write(&p, bytes).expect("write");
        let (rate, s) = audio::read_wav(&p);
        assert_eq!(rate, 48_000);
        if track != "ai" {
            assert!(
                s.len() > 48_000,
                "{track} holds the participant's audio ({} samples)",
                s.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_ends_the_session_as_technical_with_recordings() {
    let _one = BROWSER.lock().await;
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let url = format!("ws://{}/agent", closed.local_addr().expect("addr"));
    drop(closed);
    let server = Server::start(&[("EARSHOT_AGENT_RETRY_SECS", "2")]).await;
    let script = agent_script(&server, &url, Format::L16).await;
    let invite = invite_for(&server, &script).await;
    let mut browser = Browser::launch(&invite, Some(&fixture("participant_speech.wav"))).await;
    let session_id = join_interview(&mut browser, &server).await;
    assert_ends_technical_with_recordings(&server, &session_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dropping_mid_session_ends_it_as_technical_with_recordings() {
    let _one = BROWSER.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("agent port");
    let url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
    // Accepts once, talks briefly, then hangs up and stops listening.
    let agent = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        drop(listener);
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if tokio::time::timeout(Duration::from_millis(100), ws.next())
                .await
                .is_ok_and(|m| m.is_none())
            {
                break;
            }
        }
        let _ = ws.close(None).await;
    });
    let server = Server::start(&[("EARSHOT_AGENT_RETRY_SECS", "2")]).await;
    let script = agent_script(&server, &url, Format::L16).await;
    let invite = invite_for(&server, &script).await;
    let mut browser = Browser::launch(&invite, Some(&fixture("participant_speech.wav"))).await;
    let session_id = join_interview(&mut browser, &server).await;
    let _ = agent.await;
    assert_ends_technical_with_recordings(&server, &session_id).await;
    // /metrics counted one connection, its drop and the give-up.
    let metrics = server.metrics_text().await;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    assert_eq!(value("earshot_agent_connects_total"), 1.0);
    assert_eq!(value("earshot_agent_disconnects_total"), 1.0);
    assert_eq!(value("earshot_agent_failures_total"), 1.0);
}
