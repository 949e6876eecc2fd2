//! The client matrix (issue 10): each kind of WebRTC client Earshot is verified with takes a
//! whole interview of more than 90 s with the built-in interviewer against a real server, with
//! no disconnect and no pause, and the recordings must hold what was said and played:
//!
//! - Chromium (Debian's, headless, over the DevTools protocol), its server on the host side of
//!   the namespace below (see `browser_interview` for why not on 127.0.0.1);
//! - Firefox ESR (Debian's, headless, driven by geckodriver, its audio output a private
//!   PulseAudio null sink) in a network namespace of the test's own (Firefox does not pair with
//!   127.0.0.1 candidates);
//! - aiortc (Python, `tests/clients/aiortc_participant.py`): a plain run, one whose RFC 7675
//!   consent checks come 6 s apart, and one that stops sending anything after a few seconds
//!   (the session pauses, and the server closes the peer about 35 s after the stop);
//! - the webrtc-rs client (`earshot_media::client::ClientPeer`) sending the speech as Opus at
//!   real-time pace.
//!
//! The scenarios run concurrently in this one test (a test binary runs tests on as many threads
//! as there are cores, two here; this way the matrix costs about one interview of wall time),
//! each against its own server, and a table of what was measured is printed at the end.
//! `CLIENT_MATRIX=firefox,aiortc` runs only the scenarios whose names contain one of the words.
//!
//! The browsers get the test speech as their microphone the same way: the page's
//! `navigator.mediaDevices.getUserMedia` is replaced (before the participant consents) with one
//! that returns a WebAudio stream playing the speech file in a loop. The page code is otherwise
//! untouched (consent, mic meter, WHIP, trickle, playback). Firefox's fake microphone plays a
//! tone, not chosen speech, and the same source in both browsers keeps the content checks alike
//! (Chromium's own fake capture, with its echo canceller, is covered by `e2e_interview`).

mod support;

use base64::Engine as _;
use bytes::Bytes;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::codec::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings};
use earshot_media::peer::PeerEvent;
use serde_json::Value;
use std::future::Future;
use std::io::BufRead;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::browser::Browser;
use support::firefox::Firefox;
use support::interview::{self, InterviewFigures, LongScript, MIN_INTERVIEW, SERVER_ENV};
use support::netns::Netns;
use support::pulse::PulseAudio;
use support::{Server, audio, fixture};

/// Longest a scenario may take (a 90-130 s interview plus set-up and checks).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the interview to complete once connected.
const INTERVIEW_TIMEOUT: Duration = Duration::from_secs(200);

/// What one scenario measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    client: String,
    version: String,
    offer_to_connected_ms: Option<f64>,
    /// Connected -> the session completed (or the scenario's end), seconds.
    connected_s: f64,
    /// Disconnects the client saw (a connection state other than connecting/connected before
    /// the server ended the session).
    disconnects: usize,
    interview: Option<InterviewFigures>,
    /// The first WHIP request of the server's script (its prompts loaded then), ms.
    cold_whip_ms: Option<f64>,
    note: String,
}

/// Offer -> connected above this is a failure. The bar (docs/FEATURES.md) is 100 ms on loopback; the
/// matrix runs six clients and their servers at once on two shared cores (debug build), where
/// single connections took up to 390 ms (README, client matrix): the figures are printed and
/// reported, and this ceiling only catches gross failures (a connection that waited out a
/// retransmission timeout of a second or more).
const CONNECT_CEILING_MS: f64 = 1000.0;

fn check_connect_time(name: &str, ms: f64) {
    assert!(
        ms > 0.0 && ms < CONNECT_CEILING_MS,
        "{name}: offer -> connected {ms:.0} ms (ceiling {CONNECT_CEILING_MS} ms)"
    );
}

type Scenario = Pin<Box<dyn Future<Output = Outcome> + Send>>;
type MakeScenario = fn(Arc<Netns>) -> Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_matrix() {
    let all: Vec<(&str, MakeScenario)> = vec![
        ("firefox-esr", |ns| {
            Box::pin(browser_interview(BrowserKind::Firefox, ns))
        }),
        ("chromium", |ns| {
            Box::pin(browser_interview(BrowserKind::Chromium, ns))
        }),
        ("aiortc", |_| Box::pin(aiortc_interview("aiortc", None))),
        ("aiortc-consent-6s", |_| {
            Box::pin(aiortc_interview("aiortc-consent-6s", Some(6.0)))
        }),
        ("aiortc-stops-sending", |_| Box::pin(aiortc_stops_sending())),
        ("webrtc-rs", |_| Box::pin(webrtc_rs_interview())),
    ];
    let only = std::env::var("CLIENT_MATRIX").unwrap_or_default();
    let words: Vec<&str> = only.split(',').filter(|w| !w.is_empty()).collect();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| words.is_empty() || words.iter().any(|w| name.contains(w)))
        .collect();
    assert!(!chosen.is_empty(), "CLIENT_MATRIX={only} names no scenario");

    // The browsers run in a network namespace of the test's own (see `browser_interview`),
    // removed when the matrix is over.
    let ns = Arc::new(Netns::create());
    let started = Instant::now();
    let mut handles = Vec::new();
    for (i, (name, make)) in chosen.into_iter().enumerate() {
        let ns = Arc::clone(&ns);
        // Staggered starts, so that the connections being measured do not coincide. The short
        // scenario (about 55 s) starts once the others stream, not while their servers load
        // their questions, and still ends long before them.
        let delay = if name == "aiortc-stops-sending" && words.is_empty() {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(1500 * i as u64)
        };
        handles.push((
            name,
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let t = Instant::now();
                let outcome = tokio::time::timeout(SCENARIO_TIMEOUT, make(ns))
                    .await
                    .unwrap_or_else(|_| panic!("{name}: no result in {SCENARIO_TIMEOUT:?}"));
                (outcome, t.elapsed())
            }),
        ));
    }
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for (name, h) in handles {
        match h.await {
            Ok((o, took)) => rows.push((o, took)),
            Err(e) => {
                let msg = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into()),
                    Err(e) => e.to_string(),
                };
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    eprintln!(
        "\nclient matrix ({:.0} s):",
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "{:<22} {:<34} {:>9} {:>10} {:>6} {:>8} {:>7} {:>7} {:>7} {:>9} {:>6} {:>8}  note",
        "client",
        "version",
        "offer->c",
        "connected",
        "disc",
        "active",
        "part r",
        "gap",
        "level",
        "ai r",
        "cold",
        "took"
    );
    for (o, took) in &rows {
        let f = o.interview.clone().unwrap_or_default();
        let has = o.interview.is_some();
        eprintln!(
            "{:<22} {:<34} {:>7}ms {:>9.1}s {:>6} {:>7}s {:>7} {:>5}ms {:>5}dB {:>9} {:>4}ms {:>7.0}s  {}",
            o.client,
            o.version,
            o.offer_to_connected_ms
                .map_or("-".into(), |v| format!("{v:.0}")),
            o.connected_s,
            o.disconnects,
            if has {
                format!("{:.1}", f.active_ms / 1000.0)
            } else {
                "-".into()
            },
            if has {
                format!("{:.3}", f.participant_min_r)
            } else {
                "-".into()
            },
            if has {
                f.participant_gap_ms.to_string()
            } else {
                "-".into()
            },
            if has {
                format!("{:+.1}", f.participant_level_db)
            } else {
                "-".into()
            },
            if has {
                format!("{:.3}", f.ai_min_r)
            } else {
                "-".into()
            },
            o.cold_whip_ms.map_or("-".into(), |v| format!("{v:.0}")),
            took.as_secs_f64(),
            o.note
        );
    }
    assert!(
        failures.is_empty(),
        "{} of the matrix failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Browsers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrowserKind {
    Chromium,
    Firefox,
}

enum Page {
    Chromium(Box<Browser>),
    Firefox(Firefox),
}

impl Page {
    async fn eval(&mut self, expr: &str) -> Value {
        match self {
            Page::Chromium(b) => b.eval(expr).await,
            Page::Firefox(f) => f.eval(expr).await,
        }
    }

    async fn wait_for(&mut self, expr: &str, timeout: Duration) -> bool {
        match self {
            Page::Chromium(b) => b.wait_for(expr, timeout).await,
            Page::Firefox(f) => f.wait_for(expr, timeout).await,
        }
    }

    /// Clicks like a user (Firefox: WebDriver input; Chromium: its autoplay flag makes a
    /// scripted click enough).
    async fn click(&mut self, css: &str) {
        match self {
            Page::Chromium(b) => {
                b.eval(&format!("document.querySelector('{css}').click(), true"))
                    .await;
            }
            Page::Firefox(f) => f.click(css).await,
        }
    }

    fn diagnostics(&self) -> String {
        match self {
            Page::Chromium(_) => String::new(),
            Page::Firefox(f) => format!("geckodriver/firefox log:\n{}", f.log()),
        }
    }
}

/// Records, in the page, each peer connection's state changes and when the WHIP offer was
/// POSTed (the page looks both globals up when it uses them, so wrapping them after load
/// works).
const INSTRUMENT: &str = r#"(function () {
  if (window.__mx) return true;
  var mx = window.__mx = { pcs: [], whip: [], gum: 0, rx: { windows: 0, loud: 0, maxRms: 0 },
    inbound: null, outbound: null };
  var Orig = window.RTCPeerConnection;
  var Wrapped = function (cfg) {
    var pc = new Orig(cfg);
    var rec = { created: performance.now(), conn: [], ice: [] };
    mx.pcs.push(rec);
    pc.addEventListener('connectionstatechange', function () { rec.conn.push([pc.connectionState, performance.now()]); });
    pc.addEventListener('iceconnectionstatechange', function () { rec.ice.push([pc.iceConnectionState, performance.now()]); });
    return pc;
  };
  Wrapped.prototype = Orig.prototype;
  window.RTCPeerConnection = Wrapped;
  var origFetch = window.fetch;
  window.fetch = function (url, opt) {
    if (opt && opt.method === 'POST' && /\/whip$/.test(String(url))) mx.whip.push(performance.now());
    return origFetch.apply(this, arguments);
  };
  return true;
})()"#;

/// Replaces getUserMedia with a WebAudio stream looping the speech (16-bit PCM, base64).
fn microphone_script(pcm_b64: &str, rate: u32) -> String {
    format!(
        r#"(function (b64, rate) {{
  var raw = atob(b64), n = raw.length >> 1, f = new Float32Array(n);
  for (var i = 0; i < n; i++) {{
    var v = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
    if (v >= 32768) v -= 65536;
    f[i] = v / 32768;
  }}
  var mx = window.__mx;
  navigator.mediaDevices.getUserMedia = function () {{
    var ctx = new AudioContext({{ sampleRate: rate }});
    var buf = ctx.createBuffer(1, n, rate);
    buf.copyToChannel(f, 0);
    var src = ctx.createBufferSource();
    src.buffer = buf; src.loop = true;
    var dest = ctx.createMediaStreamDestination();
    dest.channelCount = 1;
    src.connect(dest);
    mx.gum++; mx.ctx = ctx;
    return ctx.resume().then(function () {{ src.start(); mx.micState = ctx.state; return dest.stream; }});
  }};
  return true;
}})("{pcm_b64}", {rate})"#
    )
}

/// Once connected: the level of the audio the page receives (WebAudio analyser on the remote
/// track, every 100 ms) and its RTP counters (getStats, every second).
const RECEIVE_PROBE: &str = r#"(function () {
  var mx = window.__mx, pc = window.earshot.pc;
  var track = pc.getReceivers()[0].track;
  var ctx = mx.ctx || new AudioContext();
  var an = ctx.createAnalyser(); an.fftSize = 2048;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(an);
  var buf = new Float32Array(2048);
  setInterval(function () {
    if (pc.connectionState !== 'connected') return;
    an.getFloatTimeDomainData(buf);
    var s = 0; for (var i = 0; i < buf.length; i++) s += buf[i] * buf[i];
    var rms = Math.sqrt(s / buf.length);
    mx.rx.windows++; if (rms > 0.01) mx.rx.loud++; if (rms > mx.rx.maxRms) mx.rx.maxRms = rms;
  }, 100);
  setInterval(function () {
    if (pc.connectionState !== 'connected') return;
    pc.getStats().then(function (st) {
      st.forEach(function (x) {
        if (x.type === 'inbound-rtp' && x.kind === 'audio')
          mx.inbound = { packets: x.packetsReceived, bytes: x.bytesReceived, lost: x.packetsLost, jitter: x.jitter };
        if (x.type === 'outbound-rtp' && x.kind === 'audio')
          mx.outbound = { packets: x.packetsSent, bytes: x.bytesSent };
      });
    }, function () {});
  }, 1000);
  return true;
})()"#;

const MX_REPORT: &str = "JSON.stringify({pcs: window.__mx.pcs, whip: window.__mx.whip, gum: window.__mx.gum, \
     micState: window.__mx.micState, rx: window.__mx.rx, inbound: window.__mx.inbound, \
     outbound: window.__mx.outbound, ua: navigator.userAgent})";

/// An expression that runs `code` in the page's own realm (a script element), not in the
/// driver's evaluation sandbox (Firefox evaluates WebDriver scripts in one: functions made
/// there and handed to the page run with the sandbox's global). The element carries the
/// page's CSP nonce (read from the page's own script), as any script the page allows must.
fn in_page(code: &str) -> String {
    format!(
        "(function (code) {{ var s = document.createElement('script'); \
         var own = document.querySelector('script[nonce]'); if (own) s.nonce = own.nonce; \
         s.textContent = code; \
         document.documentElement.appendChild(s); s.remove(); return true; }})({})",
        serde_json::to_string(code).expect("js string")
    )
}

fn speech_pcm_b64() -> (String, u32) {
    let mut r = hound::WavReader::open(fixture("participant_speech.wav")).expect("speech");
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "speech format"
    );
    let mut bytes = Vec::new();
    for s in r.samples::<i16>() {
        bytes.extend_from_slice(&s.expect("sample").to_le_bytes());
    }
    (
        base64::engine::general_purpose::STANDARD.encode(bytes),
        spec.sample_rate,
    )
}

/// `chromium --version`, e.g. "Chromium 156.0.8078.73 built on Debian ...".
fn chromium_version() -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn f64_at(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A browser against a server on the host side of the namespace's pair.
///
/// Firefox never pairs with a 127.0.0.1 candidate: it runs inside the namespace. Chromium runs
/// on the host, with a candidate on every local address (loopback, the host's own, the pair's
/// host side): a server bound to 127.0.0.1 cannot answer a check that comes from any of the
/// others (the kernel refuses a send from 127.0.0.1 to them), yet it took such a check's
/// nomination and sent the AI audio where it could not go (see the README's client matrix
/// notes); bound to the pair's host address it can answer every check that reaches it.
/// (`e2e_interview` covers Chromium with a loopback server.)
async fn browser_interview(kind: BrowserKind, ns: Arc<Netns>) -> Outcome {
    let name = match kind {
        BrowserKind::Chromium => "chromium",
        BrowserKind::Firefox => "firefox-esr",
    };
    let host_ip = ns.host_ip.to_string();
    let server = Server::start_on(&host_ip, &SERVER_ENV).await;
    let script = LongScript::create(&server).await;
    let cold = script.warm_up(&server).await;
    let (_token, url) = script.invite(&server).await;
    // Firefox's audio output (without one its WebAudio never runs).
    let pulse = (kind == BrowserKind::Firefox).then(PulseAudio::start);
    let mut page = match (kind, &pulse) {
        (BrowserKind::Firefox, Some(pulse)) => {
            let ff = Firefox::launch(&ns, &host_ip, pulse).await;
            ff.navigate(&url).await;
            Page::Firefox(ff)
        }
        _ => {
            // The page needs a secure context for the microphone: an https deployment is one,
            // as 127.0.0.1 is; this address is made one.
            let flag = format!("--unsafely-treat-insecure-origin-as-secure={}", server.base);
            Page::Chromium(Box::new(Browser::launch_with(&url, None, &[flag]).await))
        }
    };
    assert!(
        page.wait_for(
            "!!document.querySelector('#accept') && !document.querySelector('#accept').closest('[hidden]')",
            Duration::from_secs(20),
        )
        .await,
        "{name}: consent screen shown\n{}",
        page.diagnostics()
    );
    page.eval(&in_page(INSTRUMENT)).await;
    let (pcm, rate) = speech_pcm_b64();
    page.eval(&in_page(&microphone_script(&pcm, rate))).await;
    page.click("#accept").await;
    assert!(
        page.wait_for(
            "window.earshot.state === 'mic' && !document.querySelector('#start').disabled",
            Duration::from_secs(15),
        )
        .await,
        "{name}: mic check screen; state {}",
        page.eval("JSON.stringify(window.earshot)").await
    );
    // The page's own meter hears the speech (Firefox's fake microphone read 0 here).
    assert!(
        page.wait_for("window.earshot.micLevel > 0.05", Duration::from_secs(10))
            .await,
        "{name}: the page's microphone meter stays at {} (audio context {})",
        page.eval("window.earshot.micLevel").await,
        page.eval("window.__mx.micState || 'none'").await
    );
    page.click("#start").await;
    assert!(
        page.wait_for(
            "window.earshot.state === 'connected'",
            Duration::from_secs(20)
        )
        .await,
        "{name}: page connected; page state {}\n{}\nserver log:\n{}",
        page.eval("JSON.stringify(window.earshot)").await,
        page.diagnostics(),
        server.log()
    );
    let connected_at = Instant::now();
    let session_id = page
        .eval("window.earshot.sessionId")
        .await
        .as_str()
        .expect("session id")
        .to_string();
    page.eval(&in_page(RECEIVE_PROBE)).await;

    let done = server
        .wait_session(&session_id, INTERVIEW_TIMEOUT, |s| {
            s["state"] != "in_progress" && s["state"] != "created"
        })
        .await;
    let connected_s = connected_at.elapsed().as_secs_f64();
    assert_eq!(
        done["state"],
        "completed",
        "{name}: session {done:#}\nserver log:\n{}",
        server.log()
    );
    assert!(
        page.wait_for("window.earshot.state === 'ended'", Duration::from_secs(10))
            .await,
        "{name}: the page shows the end"
    );
    let mx: Value = serde_json::from_str(page.eval(MX_REPORT).await.as_str().expect("report"))
        .expect("report json");
    eprintln!("{name}: page report {mx}");
    let version = match page {
        Page::Firefox(ff) => {
            let v = format!("Firefox ESR {}", ff.version);
            ff.quit().await;
            v
        }
        Page::Chromium(_) => chromium_version(),
    };

    // One peer connection, never disconnected; the offer was POSTed once.
    let pcs = mx["pcs"].as_array().expect("pcs");
    assert_eq!(pcs.len(), 1, "{name}: peer connections made: {mx}");
    assert_eq!(mx["gum"], 1, "{name}: getUserMedia calls: {mx}");
    let states: Vec<(String, f64)> = pcs[0]["conn"]
        .as_array()
        .expect("states")
        .iter()
        .map(|s| (s[0].as_str().unwrap_or_default().to_string(), f64_at(&s[1])))
        .collect();
    let disconnects = states
        .iter()
        .filter(|(s, _)| s == "disconnected" || s == "failed")
        .count();
    assert_eq!(
        disconnects, 0,
        "{name}: connection states {states:?}; ICE states {}",
        pcs[0]["ice"]
    );
    let whip = mx["whip"].as_array().expect("whip posts");
    assert_eq!(whip.len(), 1, "{name}: WHIP offers {mx}");
    let connected = states
        .iter()
        .find(|(s, _)| s == "connected")
        .map(|(_, t)| *t)
        .expect("connected state");
    let offer_to_connected = connected - f64_at(&whip[0]);
    eprintln!("{name}: offer -> connected {offer_to_connected:.0} ms");
    check_connect_time(name, offer_to_connected);

    // What the page received: RTP at 50 packets a second, and the interviewer heard.
    let inbound = &mx["inbound"];
    let packets = f64_at(&inbound["packets"]);
    assert!(
        packets >= 0.95 * 50.0 * (connected_s - 3.0),
        "{name}: {packets} AI packets received in {connected_s:.1} s connected: {inbound}"
    );
    let (windows, loud) = (f64_at(&mx["rx"]["windows"]), f64_at(&mx["rx"]["loud"]));
    // Questions fill at least 80 % of the interview; speech is above -40 dBFS most of it.
    assert!(
        windows > 500.0 && loud >= 0.4 * windows && f64_at(&mx["rx"]["maxRms"]) > 0.05,
        "{name}: received audio level: {}",
        mx["rx"]
    );
    let liveness = interview::liveness_lines(&server);
    assert!(
        liveness.is_empty(),
        "{name}: the server found the peer quiet: {liveness:?}"
    );
    let figures = interview::check_finished(&server, &session_id, name).await;
    Outcome {
        client: name.into(),
        version,
        offer_to_connected_ms: Some(offer_to_connected),
        connected_s,
        disconnects,
        interview: Some(figures),
        cold_whip_ms: Some(cold.as_secs_f64() * 1000.0),
        note: format!(
            "rx {packets:.0} packets, {:.0} % of 100 ms windows loud",
            100.0 * loud / windows
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// aiortc

/// The Python interpreter with aiortc: `$AIORTC_PYTHON`, else the virtual environment
/// `scripts/install-deps.sh --test` makes.
fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("AIORTC_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = std::path::Path::new(&home).join(".cache/earshot/test-venv/bin/python3");
    assert!(
        p.exists(),
        "{} not found: run scripts/install-deps.sh --test (it installs aiortc there)",
        p.display()
    );
    p
}

/// A running aiortc participant; its stdout is JSON lines (read on a thread of its own).
struct PyClient {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pub received_wav: std::path::PathBuf,
}

impl PyClient {
    fn spawn(server: &Server, token: &str, extra: &[&str]) -> PyClient {
        let dir = tempfile::tempdir().expect("client dir");
        let received_wav = dir.path().join("received.wav");
        let stderr_path = dir.path().join("client.log");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/aiortc_participant.py");
        let mut child = std::process::Command::new(python())
            .arg(script)
            .args(["--server", &server.base, "--token", token])
            .arg("--wav")
            .arg(fixture("participant_speech.wav"))
            .arg("--record")
            .arg(&received_wav)
            .args(["--host-address", "127.0.0.1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("client log"))
            .spawn()
            .expect("spawn the aiortc client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PyClient {
            child,
            lines,
            stderr_path,
            _dir: dir,
            received_wav,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The next JSON line, or `None` at the end of its output.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let line = self.lines.recv().await?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => return Some(v),
                Err(_) => eprintln!("aiortc client: {line}"),
            }
        }
    }

    /// Its exit status, waiting up to 10 s.
    async fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Reads until the summary line; returns it with the events before it.
    async fn summary(&mut self, timeout: Duration) -> (Value, Vec<Value>) {
        let mut events = Vec::new();
        let r = tokio::time::timeout(timeout, async {
            while let Some(v) = self.next().await {
                if v.get("summary").is_some() {
                    return Some(v["summary"].clone());
                }
                events.push(v);
            }
            None
        })
        .await;
        match r {
            Ok(Some(s)) => {
                let status = self.exit_status().await;
                assert!(
                    status.is_some_and(|s| s.success()),
                    "aiortc client exit: {status:?}\n{}",
                    self.stderr()
                );
                (s, events)
            }
            Ok(None) => panic!(
                "aiortc client ended without a summary ({:?}):\n{}",
                self.exit_status().await,
                self.stderr()
            ),
            Err(_) => panic!(
                "aiortc client: no summary in {timeout:?}:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection or ICE state change the aiortc client saw, with the session's state then.
#[derive(Debug)]
struct Change {
    kind: String,
    state: String,
    at_ms: f64,
    session_state: String,
    /// The client closed it itself (at its end).
    by_client: bool,
}

fn state_changes(summary: &Value) -> Vec<Change> {
    summary["state_changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| Change {
                    kind: c["kind"].as_str().unwrap_or_default().to_string(),
                    state: c["state"].as_str().unwrap_or_default().to_string(),
                    at_ms: f64_at(&c["at_ms"]),
                    session_state: c["session_state"].as_str().unwrap_or("-").to_string(),
                    by_client: c["by_client"] == true,
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn aiortc_interview(name: &'static str, consent_interval: Option<f64>) -> Outcome {
    let server = Server::start(&SERVER_ENV).await;
    let script = LongScript::create(&server).await;
    let cold = script.warm_up(&server).await;
    let (token, _) = script.invite(&server).await;
    let interval = consent_interval.map(|s| s.to_string());
    let mut extra = vec!["--max-seconds", "200"];
    if let Some(i) = &interval {
        extra.extend(["--consent-interval", i.as_str()]);
    }
    let mut client = PyClient::spawn(&server, &token, &extra);
    let (s, _) = client
        .summary(INTERVIEW_TIMEOUT + Duration::from_secs(30))
        .await;
    let ctx = format!("{name}: summary {s:#}\nclient log:\n{}", client.stderr());
    assert_eq!(s["session_state_at_end"], "completed", "{ctx}");
    let offer_to_connected = s["offer_to_connected_ms"].as_f64().expect("connected");
    eprintln!("{name}: offer -> connected {offer_to_connected:.0} ms");
    check_connect_time(name, offer_to_connected);
    let connected_s = (f64_at(&s["ended_ms"]) - f64_at(&s["connected_ms"])) / 1000.0;

    // Connection states: connecting, connected, and nothing else until the server ended the
    // session (it closes the peer then: the client notes the session's state at each change).
    let changes = state_changes(&s);
    let disconnects = changes
        .iter()
        .filter(|c| c.kind == "connection" && c.state != "connecting" && c.state != "connected")
        .filter(|c| c.state == "failed" || (!c.by_client && c.session_state != "completed"))
        .count();
    assert_eq!(disconnects, 0, "{name}: connection states {changes:?}");
    assert!(
        connected_s >= MIN_INTERVIEW.as_secs_f64(),
        "{name}: connected {connected_s:.1} s"
    );

    // Its consent checks: aioice's pace (5 s +-20 %), or exactly the interval asked for.
    let checks: Vec<f64> = s["consent_checks_ms"]
        .as_array()
        .expect("checks")
        .iter()
        .map(f64_at)
        .collect();
    let gaps: Vec<f64> = checks.windows(2).map(|w| w[1] - w[0]).collect();
    let (lo, hi) = match consent_interval {
        Some(i) => (i * 1000.0 - 100.0, i * 1000.0 + 600.0),
        None => (4000.0 - 100.0, 6000.0 + 600.0),
    };
    let pace = consent_interval.unwrap_or(5.0);
    assert!(
        gaps.len() as f64 >= connected_s / (pace * 1.2) - 2.0
            && gaps.iter().all(|g| *g >= lo && *g <= hi),
        "{name}: consent checks {gaps:?} ms apart (expected {lo}-{hi})"
    );

    // What it received: every AI packet, and the questions in the audio.
    let rx = &s["rtp_in"];
    let packets = f64_at(&rx["packets"]);
    assert!(
        packets >= 0.95 * 50.0 * connected_s && f64_at(&rx["lost"]) <= packets * 0.005,
        "{name}: RTP received {rx} in {connected_s:.1} s"
    );
    if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
        let _ = std::fs::copy(
            &client.received_wav,
            std::path::Path::new(&art).join(format!("{name}-received.wav")),
        );
    }
    let (rate, received) = audio::read_wav(&client.received_wav);
    let received_r = interview::check_ai_audio(
        &audio::envelope(rate, &received),
        0.85,
        &format!("{name} (received audio)"),
    );
    let liveness = interview::liveness_lines(&server);
    assert!(
        liveness.is_empty(),
        "{name}: the server found the peer quiet: {liveness:?}"
    );
    let session_id = s["session_id"].as_str().expect("session id").to_string();
    let figures = interview::check_finished(&server, &session_id, name).await;
    Outcome {
        client: name.into(),
        version: format!(
            "aiortc {} (aioice {})",
            s["aiortc"].as_str().unwrap_or("?"),
            s["aioice"].as_str().unwrap_or("?")
        ),
        offer_to_connected_ms: Some(offer_to_connected),
        connected_s,
        disconnects,
        interview: Some(figures),
        cold_whip_ms: Some(cold.as_secs_f64() * 1000.0),
        note: format!(
            "{} consent checks {:.0}-{:.0} ms apart; rx {packets:.0} packets, questions r>={received_r:.2}",
            checks.len(),
            gaps.iter().copied().fold(f64::MAX, f64::min),
            gaps.iter().copied().fold(0.0, f64::max)
        ),
    }
}

/// `silent_ms=Some(N)` of a liveness log line.
fn silent_ms(line: &str) -> Option<u64> {
    let rest = line.split("silent_ms=Some(").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

/// A client that stops sending anything (consent checks, media, RTCP) after a few seconds: the
/// session pauses once its audio has been gone for the lifecycle's grace, the server reports
/// the link quiet after 10 s and fails and closes the peer 35 s after the last datagram.
async fn aiortc_stops_sending() -> Outcome {
    const STOP_AFTER_S: f64 = 8.0;
    let server = Server::start(&[("EARSHOT_INTERVIEWER_SILENCE_MS", "1000")]).await;
    let (token, _) = server.invite().await;
    let after = STOP_AFTER_S.to_string();
    let mut client = PyClient::spawn(
        &server,
        &token,
        &["--stop-sending-after", &after, "--max-seconds", "52"],
    );
    let mut offer_to_connected = None;
    let stopped = loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), client.next())
            .await
            .expect("client events in time")
            .unwrap_or_else(|| panic!("client ended early:\n{}", client.stderr()));
        if ev["event"] == "connected" {
            offer_to_connected = ev["offer_to_connected_ms"].as_f64();
        }
        if ev["event"] == "stopped_sending" {
            break Instant::now();
        }
        assert!(
            ev["event"] != "connection" || ev["state"] != "failed",
            "{ev}"
        );
    };
    // Watch the session and the server's liveness log for 40 s after the stop.
    let session_id = {
        let r: Value = server
            .http
            .get(server.url(&format!("/v1/invites/{token}")))
            .send()
            .await
            .expect("invite")
            .json()
            .await
            .expect("invite json");
        r["session"]["id"].as_str().expect("session id").to_string()
    };
    let (mut paused_after, mut quiet, mut failed) = (None, None, None);
    while stopped.elapsed() < Duration::from_secs(40) {
        let s = server.session(&session_id).await;
        if paused_after.is_none() && s["state"] == "paused" {
            paused_after = Some((stopped.elapsed().as_secs_f64(), s));
        }
        for line in interview::liveness_lines(&server) {
            if quiet.is_none() && line.contains("Disconnected") {
                quiet = Some((stopped.elapsed().as_secs_f64(), line.clone()));
            }
            if failed.is_none() && line.contains("Failed") {
                failed = Some((stopped.elapsed().as_secs_f64(), line.clone()));
            }
        }
        if failed.is_some() && paused_after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = server.log();
    let (paused_s, paused) =
        paused_after.unwrap_or_else(|| panic!("the session never paused:\n{log}"));
    // Audio gone for 1 s: media lost; then the 10 s grace (lifecycle ticks every 500 ms).
    assert!(
        (10.5..=13.0).contains(&paused_s),
        "paused {paused_s:.1} s after the client stopped sending"
    );
    assert_eq!(paused["pauses"][0]["cause"], "media_lost", "{paused:#}");
    let (quiet_s, quiet_line) = quiet.unwrap_or_else(|| panic!("no quiet report:\n{log}"));
    let (failed_s, failed_line) = failed.unwrap_or_else(|| panic!("peer never failed:\n{log}"));
    let (quiet_ms, failed_ms) = (
        silent_ms(&quiet_line).expect("silent_ms"),
        silent_ms(&failed_line).expect("silent_ms"),
    );
    // The rule: quiet after 10 s, failed after 35 s of nothing; the watchdog looks every 500 ms
    // (1 s of slack for a late look on a busy machine).
    assert!(
        (10_000..=11_000).contains(&quiet_ms) && (9.5..=12.0).contains(&quiet_s),
        "quiet after {quiet_s:.1} s: {quiet_line}"
    );
    assert!(
        (35_000..=36_000).contains(&failed_ms) && (34.5..=37.0).contains(&failed_s),
        "failed after {failed_s:.1} s: {failed_line}"
    );
    assert!(
        log.contains("peer connection state") && log.contains("closed"),
        "the server closed the peer:\n{log}"
    );
    let (s, _) = client.summary(Duration::from_secs(40)).await;
    let changes = state_changes(&s);
    Outcome {
        client: "aiortc-stops-sending".into(),
        version: format!("aiortc {}", s["aiortc"].as_str().unwrap_or("?")),
        offer_to_connected_ms: offer_to_connected,
        connected_s: f64_at(&s["ended_ms"]) / 1000.0 - f64_at(&s["connected_ms"]) / 1000.0,
        // Expected here: the client's own consent expiry (its checks are dropped too).
        disconnects: changes
            .iter()
            .filter(|c| c.kind == "connection" && (c.state == "closed" || c.state == "failed"))
            .count(),
        interview: None,
        cold_whip_ms: None,
        note: format!(
            "stop after {STOP_AFTER_S} s: paused +{paused_s:.1} s, quiet +{quiet_s:.1} s \
             (silent {quiet_ms} ms), closed +{failed_s:.1} s (silent {failed_ms} ms); client \
             saw {:?}; hang-up {}",
            changes
                .iter()
                .filter(|c| c.kind == "connection")
                .map(|c| format!("{}@{:.1}s", c.state, c.at_ms / 1000.0))
                .collect::<Vec<_>>(),
            s["hangup_status"]
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// webrtc-rs

/// What the webrtc-rs client received: the AI audio decoded in arrival order, RTP counts, and
/// its link events with the time since connecting.
struct Received {
    decoder: OpusDecoder,
    received: Vec<f32>,
    packets_in: u64,
    lost: u64,
    last_seq: Option<u16>,
    link_events: Vec<(f64, String)>,
    connected_at: Instant,
}

impl Received {
    fn new(connected_at: Instant) -> Self {
        Self {
            decoder: OpusDecoder::new().expect("decoder"),
            received: Vec::new(),
            packets_in: 0,
            lost: 0,
            last_seq: None,
            link_events: Vec::new(),
            connected_at,
        }
    }

    /// Takes one peer event; false when the channel has ended.
    fn on_event(&mut self, ev: Option<PeerEvent>) -> bool {
        match ev {
            Some(PeerEvent::Audio(p)) => {
                self.packets_in += 1;
                if let Some(prev) = self.last_seq {
                    self.lost += u64::from(p.sequence.wrapping_sub(prev).wrapping_sub(1)).min(1000);
                }
                self.last_seq = Some(p.sequence);
                if let Ok(pcm) = self.decoder.decode(&p.payload) {
                    self.received
                        .extend(pcm.iter().map(|s| f32::from(*s) / 32768.0));
                }
                true
            }
            Some(other) => {
                self.link_events.push((
                    self.connected_at.elapsed().as_secs_f64(),
                    format!("{other:?}"),
                ));
                true
            }
            None => false,
        }
    }
}

fn write_wav(path: &std::path::Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    if let Ok(mut w) = hound::WavWriter::create(path, spec) {
        for s in samples {
            let _ = w.write_sample((s * 32767.0) as i16);
        }
        let _ = w.finalize();
    }
}

fn webrtc_version() -> String {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
    )
    .unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"webrtc\""
            && let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = "))
        {
            return format!("webrtc {}", v.trim_matches('"'));
        }
    }
    "webrtc ?".into()
}

async fn webrtc_rs_interview() -> Outcome {
    let name = "webrtc-rs";
    let server = Server::start(&SERVER_ENV).await;
    let script = LongScript::create(&server).await;
    let cold = script.warm_up(&server).await;
    let (token, _) = script.invite(&server).await;
    let session_id = interview::open_and_consent(&server, &token).await;

    // The speech as 20 ms Opus packets, as a browser sends it.
    let pcm =
        earshot_media::prompt::load_prompt(fixture("participant_speech.wav")).expect("speech");
    let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    let packets: Arc<Vec<Bytes>> = Arc::new(
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|c| enc.encode(c.try_into().expect("frame")).expect("encode"))
            .collect(),
    );

    let (peer, offer, mut events) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("offer");
    let peer = Arc::new(peer);
    let offered = Instant::now();
    let r = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/whip")))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("whip");
    assert_eq!(r.status(), 201, "{name}: WHIP");
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("Location")
        .to_string();
    let answer = r.text().await.expect("answer");
    peer.apply_answer(&answer).await.expect("answer applied");
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(PeerEvent::Connected) => return,
                Some(PeerEvent::Audio(_) | PeerEvent::Restored | PeerEvent::Disconnected) => {}
                other => panic!("{name}: before connecting: {other:?}"),
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "{name}: not connected in 10 s");
    let offer_to_connected = offered.elapsed().as_secs_f64() * 1000.0;
    eprintln!("{name}: offer -> connected {offer_to_connected:.0} ms");
    check_connect_time(name, offer_to_connected);
    let connected_at = Instant::now();

    let send_errors = Arc::new(AtomicUsize::new(0));
    let sender = {
        let peer = Arc::clone(&peer);
        let packets = Arc::clone(&packets);
        let errors = Arc::clone(&send_errors);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            // A capture clock does not skip: catch up after a stall.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0usize.. {
                tick.tick().await;
                let frame = packets[i % packets.len()].clone();
                if peer
                    .send_opus(frame, Duration::from_millis(20))
                    .await
                    .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut rx = Received::new(connected_at);
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let deadline = Instant::now() + INTERVIEW_TIMEOUT;
    let done = loop {
        tokio::select! {
            ev = events.recv() => {
                assert!(rx.on_event(ev), "{name}: peer events ended");
            }
            _ = poll.tick() => {
                let s = server.session(&session_id).await;
                if s["state"] != "in_progress" && s["state"] != "created" {
                    break s;
                }
                assert!(Instant::now() < deadline, "{name}: not over in {INTERVIEW_TIMEOUT:?}: {s:#}");
            }
        }
    };
    let connected_s = connected_at.elapsed().as_secs_f64();
    // What arrived before the end but is still queued: the server closed the peer at the end,
    // so the queue runs dry within moments.
    while let Ok(ev) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if !rx.on_event(ev) {
            break;
        }
    }
    let Received {
        received,
        packets_in,
        lost,
        link_events,
        ..
    } = rx;
    sender.abort();
    peer.close().await;
    assert_eq!(done["state"], "completed", "{name}: {done:#}");
    // Sends fail once the server has ended the session and closed the peer (noticed here
    // within the 1 s poll), never before.
    let send_errors = send_errors.load(Ordering::Relaxed);
    assert!(
        send_errors <= 60,
        "{name}: {send_errors} packets the client failed to send"
    );
    let disconnects = link_events
        .iter()
        .filter(|(_, e)| e.contains("Disconnected") || e.contains("Failed"))
        .count();
    assert_eq!(disconnects, 0, "{name}: link events {link_events:?}");
    assert!(
        packets_in as f64 >= 0.95 * 50.0 * connected_s && lost as f64 <= packets_in as f64 * 0.005,
        "{name}: {packets_in} AI packets in {connected_s:.1} s, {lost} lost"
    );
    if let Ok(art) = std::env::var("TEST_ARTIFACTS_DIR") {
        write_wav(
            &std::path::Path::new(&art).join("webrtc-rs-received.wav"),
            &received,
        );
    }
    let received_r = interview::check_ai_audio(
        &audio::envelope(48_000, &received),
        0.85,
        &format!("{name} (received audio)"),
    );
    let liveness = interview::liveness_lines(&server);
    assert!(
        liveness.is_empty(),
        "{name}: the server found the peer quiet: {liveness:?}"
    );
    // The server ended the session: the WHIP resource is gone with it.
    let d = server
        .http
        .delete(server.url(&location))
        .send()
        .await
        .expect("hang up");
    assert_eq!(d.status(), 409, "{name}: DELETE after the end");
    let figures = interview::check_finished(&server, &session_id, name).await;
    Outcome {
        client: name.into(),
        version: webrtc_version(),
        offer_to_connected_ms: Some(offer_to_connected),
        connected_s,
        disconnects,
        interview: Some(figures),
        cold_whip_ms: Some(cold.as_secs_f64() * 1000.0),
        note: format!("rx {packets_in} packets, {lost} lost, questions r>={received_r:.2}"),
    }
}
