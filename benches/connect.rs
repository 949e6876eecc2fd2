//! Offer -> connected per client (docs/FEATURES.md: p99 <= 100 ms on loopback for Chromium,
//! Firefox and aiortc), measured on the client side against one release `earshot serve`.
//!
//!     cargo bench --bench connect
//!     cargo bench --bench connect -- --clients chromium,aiortc --n 100
//!
//! For each client, N connections one after the other, each with a fresh invite that the bench
//! has opened (`GET /i/{token}`, which creates the session) and consented to, as the participant
//! page does before its offer. One connection: a new peer connection with one audio
//! transceiver (sendrecv, a microphone track), createOffer, setLocalDescription, a wait for ICE
//! gathering to complete (as the participant page: at most 700 ms, then the offer goes with the
//! candidates it has; on loopback with host candidates only it completes in a few ms, so every
//! candidate is in the offer and nothing is trickled), then the timed part: the WHIP `POST` of
//! the offer, `setRemoteDescription` of the answer, and the connection state `connected` (ICE
//! and DTLS done). Then the client hangs up (WHIP `DELETE`, which ends the session) and closes
//! its peer; the bench waits for the session to end and `--gap-ms` more before the next one.
//! The first `--warmup` connections (3) are left out of the figures; the first one is reported
//! on its own (the first WHIP offer of a script loads its prompts; the built-in ones are loaded
//! at start).
//!
//! - `chromium`: one headless Chromium (the test flags, `tests/support/browser.rs`) on a page of
//!   the server's origin (the participant page of an unknown invite: the real page's origin
//!   and CSP, and no session), the loop driven over the DevTools protocol (`Runtime.evaluate`);
//!   the microphone is Chromium's fake capture device (`getUserMedia`, which also makes it put
//!   its host addresses in the offer instead of mDNS names, as for a real participant).
//! - `firefox`: Firefox ESR driven by geckodriver in a network namespace with a private
//!   PulseAudio (`tests/support/{firefox,netns,pulse}.rs`; Firefox never pairs with 127.0.0.1
//!   candidates); the same JS, the microphone from `getUserMedia` (PulseAudio's null-sink
//!   monitor), or an oscillator when that fails.
//! - `aiortc`: `tests/clients/aiortc_connect.py` in the test virtual environment (or
//!   `$AIORTC_PYTHON`), one process that connects once per WHIP URL it reads (aiortc's silence
//!   track as the microphone; its host candidate on the server's address, as in the matrix).
//!
//! With `firefox` among the clients the server binds the namespace's host-side address (as the
//! client matrix does) and every client connects to that address: Chromium and aiortc on the
//! host reach it over the loopback device, Firefox over the namespace's veth pair. Without it
//! the server binds 127.0.0.1 (`--netns` keeps the namespace address anyway).
//!
//! Prints a table per client (with the phases: offer POST -> answer, -> answer applied, -> ICE
//! connected, -> connected) and writes every figure and sample as JSON to
//! `<target dir>/connect-bench.json` (`--out PATH`). `--server-log PATH` keeps the server's log
//! (`info,earshot_media=debug`, or `--log FILTER`). Not run by the test suite. A plain
//! `cargo bench` runs it too, with the clients this machine has; given arguments it does not
//! know (criterion's, as in `cargo bench -- --quick`) it prints that it skips and does nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::browser::Browser;
use support::firefox::Firefox;
use support::netns::Netns;
use support::pulse::PulseAudio;
use support::{Server, interview};

const ALL_CLIENTS: [&str; 3] = ["chromium", "firefox", "aiortc"];
/// The bar (docs/FEATURES.md).
const BAR_P99_MS: f64 = 100.0;

const USAGE: &str = "cargo bench --bench connect -- [--clients chromium,firefox,aiortc] [--n 50] \
[--warmup 3] [--gap-ms 250] [--netns] [--out PATH] [--server-log PATH] [--log FILTER]";

struct Args {
    clients: Vec<String>,
    /// Whether `--clients` named them (then a missing client is an error, not a skip).
    explicit: bool,
    n: usize,
    warmup: usize,
    gap: Duration,
    netns: bool,
    out: Option<PathBuf>,
    server_log: Option<PathBuf>,
    /// The server's `EARSHOT_LOG` filter.
    log: String,
}

/// `Ok(None)`: arguments meant for other benches (skip).
fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        clients: ALL_CLIENTS.iter().map(|s| s.to_string()).collect(),
        explicit: false,
        n: 50,
        warmup: 3,
        gap: Duration::from_millis(250),
        netns: false,
        out: None,
        server_log: None,
        log: "info,earshot_media=debug".into(),
    };
    let mut it = std::env::args().skip(1);
    let mut foreign = Vec::new();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--clients" => {
                a.clients = value("--clients")?
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| c.to_string())
                    .collect();
                a.explicit = true;
                if let Some(bad) = a
                    .clients
                    .iter()
                    .find(|c| !ALL_CLIENTS.contains(&c.as_str()))
                {
                    return Err(format!("unknown client {bad} (one of {ALL_CLIENTS:?})"));
                }
            }
            "--n" => a.n = value("--n")?.parse().map_err(|e| format!("--n: {e}"))?,
            "--warmup" => {
                a.warmup = value("--warmup")?
                    .parse()
                    .map_err(|e| format!("--warmup: {e}"))?
            }
            "--gap-ms" => {
                a.gap = Duration::from_millis(
                    value("--gap-ms")?
                        .parse()
                        .map_err(|e| format!("--gap-ms: {e}"))?,
                )
            }
            "--netns" => a.netns = true,
            "--out" => a.out = Some(value("--out")?.into()),
            "--server-log" => a.server_log = Some(value("--server-log")?.into()),
            "--log" => a.log = value("--log")?,
            "-h" | "--help" => return Err(String::new()),
            _ => foreign.push(arg),
        }
    }
    if !foreign.is_empty() {
        println!("connect: skipped (arguments {foreign:?} are not this bench's; it takes {USAGE})");
        return Ok(None);
    }
    if a.n == 0 || a.clients.is_empty() {
        return Err("nothing to measure".into());
    }
    Ok(Some(a))
}

fn which(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The Python interpreter with aiortc (as the client matrix finds it).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AIORTC_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/earshot/test-venv/bin/python3")
}

/// Why `client` cannot run here, if it cannot.
fn missing(client: &str) -> Option<String> {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let firefox = std::env::var("FIREFOX_BIN").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    match client {
        "chromium" if which(&chromium).is_none() => Some(format!("{chromium} not found")),
        "firefox" if which(&firefox).is_none() => Some(format!("{firefox} not found")),
        "firefox"
            if which("geckodriver").is_none()
                && std::env::var_os("GECKODRIVER").is_none()
                && !Path::new(&std::env::var("HOME").unwrap_or_default())
                    .join(".cargo/bin/geckodriver")
                    .is_file() =>
        {
            Some("geckodriver not found".into())
        }
        "firefox" if which("pulseaudio").is_none() => Some("pulseaudio not found".into()),
        // SAFETY: geteuid has no preconditions.
        "firefox" if unsafe { libc::geteuid() } != 0 => {
            Some("the network namespace needs root".into())
        }
        "aiortc" if !python().is_file() => Some(format!(
            "{} not found (scripts/install-deps.sh --test)",
            python().display()
        )),
        _ => None,
    }
}

/// One connection, as the browsers' JS reports it (ms since the peer connection was made).
/// Returns `{error}` or the timestamps; the hang-up is part of it.
fn browser_js(whip: &str) -> String {
    let js = r#"(async function (whip) {
  var out = { error: null, conn: {}, ice: {} };
  var pc = null;
  try {
    var mic = window.__connectMic;
    if (!mic || mic.getAudioTracks()[0].readyState !== 'live') {
      try {
        mic = await navigator.mediaDevices.getUserMedia({ audio: true });
        window.__connectMicKind = 'getUserMedia: ' + mic.getAudioTracks()[0].label;
      } catch (e) {
        var ctx = new AudioContext(), osc = ctx.createOscillator(), dst = ctx.createMediaStreamDestination();
        osc.connect(dst); osc.start(); await ctx.resume();
        mic = dst.stream;
        window.__connectMicKind = 'oscillator (getUserMedia: ' + e.name + ')';
      }
      window.__connectMic = mic;
    }
    out.mic = window.__connectMicKind;
    var track = mic.getAudioTracks()[0];
    var t0 = performance.now(), ms = function () { return performance.now() - t0; };
    pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    pc.addTransceiver(track, { direction: 'sendrecv', streams: [mic] });
    var connected = new Promise(function (resolve, reject) {
      pc.addEventListener('connectionstatechange', function () {
        var s = pc.connectionState;
        if (!(s in out.conn)) out.conn[s] = ms();
        if (s === 'connected') resolve();
        if (s === 'failed' || s === 'closed') reject(new Error('connection ' + s));
      });
    });
    connected.catch(function () {});
    pc.addEventListener('iceconnectionstatechange', function () {
      var s = pc.iceConnectionState;
      if (!(s in out.ice)) out.ice[s] = ms();
    });
    await pc.setLocalDescription(await pc.createOffer());
    // As the participant page: wait for gathering to complete, at most 700 ms.
    await new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') return resolve();
      var timer = setTimeout(done, 700);
      function check() { if (pc.iceGatheringState === 'complete') done(); }
      function done() { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
      pc.addEventListener('icegatheringstatechange', check);
    });
    out.gathered = ms();
    out.gathering_complete = pc.iceGatheringState === 'complete';
    var sdp = pc.localDescription.sdp;
    out.candidates = sdp.split(/\r?\n/).filter(function (l) { return l.indexOf('a=candidate:') === 0; })
      .map(function (l) { var f = l.split(' '); return f[4] + ' ' + f[2].toLowerCase() + ' ' + f[7]; });
    out.post_sent = ms();
    var r = await fetch(whip, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: sdp, cache: 'no-store' });
    var answer = await r.text();
    out.answer = ms();
    if (r.status !== 201) { out.error = 'WHIP ' + r.status + ': ' + answer.slice(0, 200); return out; }
    var resource = new URL(r.headers.get('location'), new URL(whip, location.href)).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    out.applied = ms();
    await Promise.race([connected, new Promise(function (_, reject) {
      setTimeout(function () { reject(new Error('not connected in 10 s')); }, 10000);
    })]).catch(function (e) { out.error = String((e && e.message) || e); });
    if (!out.error) {
      out.offer_to_connected_ms = out.conn.connected - out.post_sent;
      var stats = await pc.getStats(), pair = null, byId = {};
      stats.forEach(function (s) { byId[s.id] = s; });
      stats.forEach(function (s) {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId];
      });
      if (!pair) stats.forEach(function (s) { if (s.type === 'candidate-pair' && (s.selected || s.nominated) && s.state === 'succeeded') pair = s; });
      var pairs = 0; stats.forEach(function (s) { if (s.type === 'candidate-pair') pairs++; });
      out.pairs = pairs;
      if (pair) {
        var l = byId[pair.localCandidateId] || {}, rc = byId[pair.remoteCandidateId] || {};
        out.selected = (l.address || l.ip) + ':' + l.port + ' (' + l.candidateType + ') -> ' + (rc.address || rc.ip) + ':' + rc.port;
        out.requests_sent = pair.requestsSent;
      }
    }
    var d = await fetch(resource, { method: 'DELETE', cache: 'no-store' });
    out.hangup_status = d.status;
  } catch (e) {
    out.error = String((e && e.message) || e);
  } finally {
    if (pc) pc.close();
  }
  return out;
})"#;
    format!(
        "{js}({})",
        serde_json::to_string(whip).expect("a JS string")
    )
}

/// `chromium --version`, e.g. "Chromium 156.0.8078.73".
fn chromium_version() -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `tests/clients/aiortc_connect.py`, reading WHIP URLs on stdin and printing JSON lines.
struct Aiortc {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Aiortc {
    fn spawn(host_address: &str) -> Aiortc {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/aiortc_connect.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--host-address", host_address])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the aiortc client");
        let stdin = child.stdin.take().expect("stdin");
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
        Aiortc {
            child,
            stdin,
            lines,
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.recv())
                .await
                .expect("the aiortc client answers in time")
                .expect("the aiortc client ended early");
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => return v,
                Err(_) => eprintln!("aiortc: {line}"),
            }
        }
    }
}

impl Drop for Aiortc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Client {
    Chromium(Box<Browser>),
    Firefox(Box<(Firefox, PulseAudio)>),
    Aiortc(Aiortc),
}

impl Client {
    /// Starts the client; returns it with its version.
    async fn start(name: &str, server: &Server, ns: Option<&Netns>, ip: &str) -> (Client, String) {
        // The participant page of an unknown invite: the server's origin and CSP, no session.
        let page = server.url("/i/connect-bench");
        match name {
            "chromium" => {
                let flag = format!("--unsafely-treat-insecure-origin-as-secure={}", server.base);
                let mut b = Browser::launch_with(&page, None, &[flag]).await;
                // The page must have loaded first: a navigation that commits during an
                // evaluation ends it without a result.
                let loaded = format!(
                    "document.readyState === 'complete' && location.origin === {}",
                    serde_json::to_string(&server.base).expect("a JS string")
                );
                assert!(
                    b.wait_for(&loaded, Duration::from_secs(20)).await,
                    "chromium did not load {page}"
                );
                (Client::Chromium(Box::new(b)), chromium_version())
            }
            "firefox" => {
                let ns = ns.expect("a namespace for Firefox");
                let pulse = PulseAudio::start();
                let ff = Firefox::launch(ns, ip, &pulse).await;
                ff.navigate(&page).await;
                let v = format!("Firefox ESR {}", ff.version);
                (Client::Firefox(Box::new((ff, pulse))), v)
            }
            "aiortc" => {
                let mut c = Aiortc::spawn(ip);
                let hello = c.next().await;
                let v = format!(
                    "aiortc {} (aioice {})",
                    hello["aiortc"].as_str().unwrap_or("?"),
                    hello["aioice"].as_str().unwrap_or("?")
                );
                (Client::Aiortc(c), v)
            }
            other => unreachable!("client {other}"),
        }
    }

    /// One connection to `whip`; the client's own report.
    async fn connect(&mut self, whip: &str) -> Value {
        match self {
            Client::Chromium(b) => b.eval(&browser_js(whip)).await,
            Client::Firefox(f) => f.0.eval(&browser_js(whip)).await,
            Client::Aiortc(c) => {
                writeln!(c.stdin, "{whip}").expect("write to the aiortc client");
                c.stdin.flush().expect("flush");
                c.next().await
            }
        }
    }

    async fn stop(self) {
        match self {
            Client::Firefox(f) => {
                let (ff, _pulse) = *f;
                ff.quit().await;
            }
            Client::Chromium(_) | Client::Aiortc(_) => {}
        }
    }
}

/// The phases of one connection, ms: offer POST -> answer received (the WHIP round trip),
/// -> answer applied, -> ICE connected (checks), -> connected (DTLS); and their sum.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: f64,
    post: f64,
    apply: f64,
    ice: f64,
    dtls: f64,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn sample_of(client: &str, r: &Value) -> Result<Sample, String> {
    if let Some(e) = r["error"].as_str() {
        return Err(e.to_string());
    }
    let (post_sent, answer, applied) =
        (num(&r["post_sent"]), num(&r["answer"]), num(&r["applied"]));
    let (ice, connected) = if client == "aiortc" {
        (
            num(&r["ice_completed"]).or(num(&r["ice_connected"])),
            num(&r["connected"]),
        )
    } else {
        (
            num(&r["ice"]["connected"]).or(num(&r["ice"]["completed"])),
            num(&r["conn"]["connected"]),
        )
    };
    match (post_sent, answer, applied, ice, connected) {
        (Some(p), Some(a), Some(ap), Some(i), Some(c)) => Ok(Sample {
            total: c - p,
            post: a - p,
            apply: ap - a,
            ice: i - ap,
            dtls: c - i,
        }),
        _ => Err(format!("incomplete report: {r}")),
    }
}

/// Nearest-rank percentile of sorted values (as the load generator's).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn distribution(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Value::Null;
    }
    let r = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "n": v.len(),
        "mean": r(v.iter().sum::<f64>() / v.len() as f64),
        "min": r(v[0]),
        "p50": r(percentile(&v, 50.0)),
        "p95": r(percentile(&v, 95.0)),
        "p99": r(percentile(&v, 99.0)),
        "max": r(v[v.len() - 1]),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The target directory this bench was built in (`<target>/release/deps/connect-<hash>`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Waits until the session has ended (the hang-up's work done) or 5 s passed.
async fn wait_ended(server: &Server, session_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let s = server.session(session_id).await;
        if s["state"] != "in_progress" && s["state"] != "created" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("connect: session {session_id} still live 5 s after the hang-up");
}

async fn run_client(
    name: &str,
    args: &Args,
    server: &Server,
    ns: Option<&Netns>,
    ip: &str,
) -> Value {
    let (mut client, version) = Client::start(name, server, ns, ip).await;
    eprintln!("connect: {name}: {version}");
    let total = args.warmup + args.n;
    let mut samples: Vec<Sample> = Vec::new();
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    let mut first = None;
    for i in 0..total {
        let (token, _) = server.invite().await;
        let session_id = interview::open_and_consent(server, &token).await;
        let whip = server.url(&format!("/v1/invites/{token}/whip"));
        let report = client.connect(&whip).await;
        let s = sample_of(name, &report);
        match &s {
            Ok(s) => {
                if i == 0 {
                    first = Some(*s);
                }
                if i >= args.warmup {
                    samples.push(*s);
                }
            }
            Err(e) => {
                eprintln!("connect: {name} #{i}: {e}");
                errors.push(json!({"i": i, "error": e, "session": session_id}));
            }
        }
        if i == 0 {
            eprintln!("connect: {name}: first connection {report}");
        }
        reports.push(json!({"i": i, "session": session_id, "report": report}));
        wait_ended(server, &session_id).await;
        tokio::time::sleep(args.gap).await;
    }
    client.stop().await;
    let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
    json!({
        "client": name,
        "version": version,
        "warmup": args.warmup,
        "first_ms": first.map(|s| (s.total * 10.0).round() / 10.0),
        "failed": errors.len(),
        "errors": errors,
        "offer_to_connected_ms": distribution(&col(|s| s.total)),
        "phases_ms": {
            "post_to_answer": distribution(&col(|s| s.post)),
            "answer_to_applied": distribution(&col(|s| s.apply)),
            "applied_to_ice_connected": distribution(&col(|s| s.ice)),
            "ice_connected_to_connected": distribution(&col(|s| s.dtls)),
        },
        "samples_ms": col(|s| (s.total * 10.0).round() / 10.0),
        "reports": reports,
    })
}

fn print_table(results: &[Value]) {
    println!(
        "\noffer -> connected (WHIP POST sent -> connectionState 'connected'), ms; bar p99 <= {BAR_P99_MS}"
    );
    println!(
        "{:<9} {:<34} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  phases p50 (post/apply/ice/dtls)",
        "client", "version", "n", "first", "p50", "p95", "p99", "max", "failed"
    );
    for r in results {
        let d = &r["offer_to_connected_ms"];
        let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
        let ph = &r["phases_ms"];
        println!(
            "{:<9} {:<34} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}/{}/{}/{}",
            r["client"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("?"),
            d["n"].as_u64().unwrap_or(0),
            f(&r["first_ms"]),
            f(&d["p50"]),
            f(&d["p95"]),
            f(&d["p99"]),
            f(&d["max"]),
            r["failed"],
            f(&ph["post_to_answer"]["p50"]),
            f(&ph["answer_to_applied"]["p50"]),
            f(&ph["applied_to_ice_connected"]["p50"]),
            f(&ph["ice_connected_to_connected"]["p50"]),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        // An empty message: --help.
        Err(e) if e.is_empty() => {
            println!("usage: {USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("connect: {e}\nusage: {USAGE}");
            std::process::exit(2);
        }
    };
    let mut clients = Vec::new();
    let mut skipped = Vec::new();
    for c in &args.clients {
        match missing(c) {
            None => clients.push(c.clone()),
            Some(why) if args.explicit => {
                eprintln!("connect: {c}: {why}");
                std::process::exit(1);
            }
            Some(why) => {
                eprintln!("connect: skipping {c}: {why}");
                skipped.push(json!({"client": c, "why": why}));
            }
        }
    }
    let ns = (args.netns || clients.iter().any(|c| c == "firefox")).then(Netns::create);
    let ip = ns
        .as_ref()
        .map_or("127.0.0.1".to_string(), |n| n.host_ip.to_string());
    let load_before = loadavg();
    let server = Server::start_on(
        &ip,
        &[
            (
                "EARSHOT_LIMITS_WHIP_OFFERS_PER_ADDRESS_PER_MINUTE",
                "1000000",
            ),
            ("EARSHOT_LIMITS_MAX_SESSIONS", "100000"),
            // The sessions end at the hang-up: no mix and MP3s made then (as the matrix).
            ("EARSHOT_RECORDING_DERIVE", "on_request"),
            ("EARSHOT_LOG", &args.log),
        ],
    )
    .await;
    eprintln!(
        "connect: server {} (release build), load average {load_before}",
        server.base
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for c in &clients {
        results.push(run_client(c, &args, &server, ns.as_ref(), &ip).await);
    }
    let load_after = loadavg();
    print_table(&results);
    println!(
        "load average before {load_before}, after {load_after}; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let report = json!({
        "measured": "WHIP offer POST sent -> the client's connectionState 'connected' (ICE + DTLS), client side",
        "date": command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": command_line("git", &["describe", "--always", "--dirty", "--abbrev=7"]),
        "server": {"address": server.base, "build": "release", "bind": if ns.is_some() { "netns host side" } else { "loopback" }},
        "n": args.n,
        "warmup": args.warmup,
        "gap_ms": args.gap.as_millis() as u64,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "skipped": skipped,
        "clients": results,
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("connect-bench.json"));
    match std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).expect("json") + "\n",
    ) {
        Ok(()) => println!("written to {}", out.display()),
        Err(e) => eprintln!("connect: writing {}: {e}", out.display()),
    }
    if let Some(path) = &args.server_log
        && let Err(e) = std::fs::write(path, server.log())
    {
        eprintln!("connect: writing {}: {e}", path.display());
    }
}
