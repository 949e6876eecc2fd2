//! The agent bridge end to end on loopback, with no mocks: a real WebRTC participant
//! (`ClientPeer`, sending known speech as Opus at real-time pace and decoding what it hears)
//! talks to a real `Engine`, whose session dials a real WebSocket agent run by the test
//! (tokio-tungstenite server on 127.0.0.1). The test agent speaks Twilio Media Streams' shapes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use earshot_media::client::{ClientConfig, ClientPeer};
use earshot_media::codec::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings};
use earshot_media::engine::{
    AgentAudioFormat, AgentRequest, Engine, EngineConfig, MediaEvent, ParticipantRequest,
    RecordingFile, RecordingRequest, Role,
};
use earshot_media::peer::PeerEvent;
use earshot_media::recorder::Quality;
use earshot_media::resample::{mulaw_decode, mulaw_encode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const TONE_AMP: f64 = 8000.0;

// ---------------------------------------------------------------------------------------------
// The test agent: a WebSocket server that records what it gets and sends what it is told.

struct TestAgent {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<AgentConn>,
    accept: JoinHandle<()>,
}

impl TestAgent {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
        let addr = listener.local_addr().expect("agent addr");
        let (tx, conns) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        let _ = tx.send(AgentConn::run(ws));
                    }
                });
            }
        });
        Self {
            addr,
            conns,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/agent?x=1", self.addr)
    }

    async fn next_conn(&mut self, within: Duration) -> AgentConn {
        tokio::time::timeout(within, self.conns.recv())
            .await
            .expect("agent connection in time")
            .expect("agent accept loop alive")
    }

    /// Closes the listening socket: later connects are refused.
    fn stop_accepting(&self) {
        self.accept.abort();
    }
}

type Log = Arc<Mutex<Vec<(Instant, Value)>>>;

struct AgentConn {
    /// Non-media messages, and `{"event":"__closed__"}` when the socket ends.
    events: mpsc::UnboundedReceiver<(Instant, Value)>,
    media: Log,
    /// `sequenceNumber` of every message, in arrival order.
    seqs: Arc<Mutex<Vec<u64>>>,
    out: mpsc::UnboundedSender<Message>,
    task: JoinHandle<()>,
    stream_sid: String,
}

impl AgentConn {
    fn run(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Self {
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let media: Log = Arc::default();
        let seqs: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (m, s) = (Arc::clone(&media), Arc::clone(&seqs));
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            let now = Instant::now();
                            let v: Value = serde_json::from_str(t.as_str()).expect("agent got JSON");
                            if let Some(n) = v["sequenceNumber"].as_str() {
                                s.lock().unwrap().push(n.parse().expect("numeric sequenceNumber"));
                            }
                            if v["event"] == "media" {
                                m.lock().unwrap().push((now, v));
                            } else {
                                let _ = ev_tx.send((now, v));
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                    out = out_rx.recv() => match out {
                        Some(msg) => {
                            if sink.send(msg).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
            let _ = ev_tx.send((Instant::now(), json!({"event": "__closed__"})));
        });
        Self {
            events,
            media,
            seqs,
            out,
            task,
            stream_sid: String::new(),
        }
    }

    async fn next_event(&mut self, within: Duration) -> (Instant, Value) {
        tokio::time::timeout(within, self.events.recv())
            .await
            .expect("agent event in time")
            .expect("agent connection task alive")
    }

    async fn expect_event(&mut self, event: &str, within: Duration) -> (Instant, Value) {
        let (t, v) = self.next_event(within).await;
        assert_eq!(v["event"], event, "agent expected {event}, got {v}");
        (t, v)
    }

    /// Reads `connected` and `start`; returns `start`.
    async fn handshake(&mut self) -> Value {
        let (_, connected) = self.expect_event("connected", Duration::from_secs(5)).await;
        assert_eq!(
            connected,
            json!({"event":"connected","protocol":"Call","version":"1.0.0"})
        );
        let (_, start) = self.expect_event("start", Duration::from_secs(5)).await;
        self.stream_sid = start["streamSid"].as_str().expect("streamSid").to_owned();
        start
    }

    fn send(&self, v: Value) {
        self.out.send(Message::text(v.to_string())).expect("send");
    }

    fn send_raw(&self, m: Message) {
        self.out.send(m).expect("send");
    }

    /// Sends a tone as `media` messages of `chunk_ms` each, all at once.
    fn send_tone(&self, format: AgentAudioFormat, hz: f64, ms: usize, chunk_ms: usize) {
        let rate = format.sample_rate() as usize;
        let pcm = tone(hz, rate as u32, rate * ms / 1000);
        for chunk in pcm.chunks(rate * chunk_ms / 1000) {
            let payload = encode_agent(format, chunk);
            self.send(
                json!({"event":"media","streamSid":self.stream_sid,"media":{"payload":payload}}),
            );
        }
    }

    fn send_mark(&self, name: &str) {
        self.send(json!({"event":"mark","streamSid":self.stream_sid,"mark":{"name":name}}));
    }
}

fn encode_agent(format: AgentAudioFormat, pcm: &[i16]) -> String {
    let bytes: Vec<u8> = match format {
        AgentAudioFormat::L16k16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        AgentAudioFormat::Mulaw8k => pcm.iter().map(|&s| mulaw_encode(s)).collect(),
    };
    BASE64.encode(bytes)
}

fn decode_agent(format: AgentAudioFormat, payload: &str) -> Vec<i16> {
    let bytes = BASE64.decode(payload).expect("base64 payload");
    match format {
        AgentAudioFormat::L16k16 => {
            assert_eq!(bytes.len(), 640, "L16 payload is 20 ms at 16 kHz");
            bytes
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect()
        }
        AgentAudioFormat::Mulaw8k => {
            assert_eq!(bytes.len(), 160, "mulaw payload is 20 ms at 8 kHz");
            bytes.iter().map(|&b| mulaw_decode(b)).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine events, collected with their arrival time.

#[derive(Clone, Default)]
struct Events {
    log: Arc<Mutex<Vec<(Instant, MediaEvent)>>>,
}

impl Events {
    fn collect(mut rx: mpsc::Receiver<MediaEvent>) -> Self {
        let events = Events::default();
        let log = Arc::clone(&events.log);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                log.lock().unwrap().push((Instant::now(), ev));
            }
        });
        events
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn all(&self) -> Vec<(Instant, MediaEvent)> {
        self.log.lock().unwrap().clone()
    }

    /// The first event at index >= `from` matching `pred`.
    async fn wait_for(
        &self,
        from: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&MediaEvent) -> bool,
    ) -> (usize, Instant, MediaEvent) {
        let deadline = Instant::now() + within;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some((i, (t, ev))) = log
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, (_, ev))| pred(ev))
                {
                    return (i, *t, ev.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; events: {:#?}",
                self.all().iter().map(|(_, e)| e).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Finishes the session and returns its recorded files.
    async fn recordings(&self, from: usize, engine: &Engine, id: &str) -> Vec<RecordingFile> {
        engine.finish(id, None).await;
        let (end, _, _) = self
            .wait_for(from, Duration::from_secs(30), "RecordingsFinished", |e| {
                matches!(e, MediaEvent::RecordingsFinished { .. })
            })
            .await;
        self.all()[from..end]
            .iter()
            .filter_map(|(_, e)| match e {
                MediaEvent::RecordingReady { file, .. } => Some(file.clone()),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The participant: a real WebRTC client.

/// Decoded audio heard, per packet, with arrival time.
type HeardLog = Arc<Mutex<Vec<(Instant, Vec<i16>)>>>;

struct Participant {
    client: Arc<ClientPeer>,
    heard: HeardLog,
    stop: Arc<AtomicBool>,
    /// When each frame was handed to the client's peer (`None`: it was not).
    sent: Arc<Mutex<Vec<Option<Instant>>>>,
}

fn engine() -> (Arc<Engine>, Events) {
    let (engine, rx) = Engine::new(EngineConfig::default());
    (engine, Events::collect(rx))
}

fn agent_request(url: String, format: AgentAudioFormat, custom: Value) -> AgentRequest {
    AgentRequest {
        url,
        audio_format: format,
        custom_parameters: custom,
        retry_for: Duration::from_secs(1),
        tls: None,
    }
}

async fn join(
    engine: &Arc<Engine>,
    session_id: &str,
    dir: &Path,
    agent: AgentRequest,
) -> Participant {
    let (client, offer, mut rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("client offer");
    let answer = engine
        .open_participant(ParticipantRequest {
            session_id: session_id.into(),
            offer_sdp: offer,
            prompts: Vec::new(),
            silence_ms: 1000,
            start_at: 0,
            noise_suppression: true,
            recording: Some(RecordingRequest {
                sealing: None,
                dir: dir.to_path_buf(),
                quality: Quality::High,
                derive_at_end: true,
            }),
            agent: Some(agent),
            opus: None,
        })
        .await
        .expect("engine answers");
    client.apply_answer(&answer).await.expect("apply answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(PeerEvent::Connected)) => break,
            Ok(Some(PeerEvent::Failed | PeerEvent::Closed)) | Ok(None) => {
                panic!("client connection failed")
            }
            Ok(Some(_)) => {}
            Err(_) => panic!("client not connected within 10 s"),
        }
    }
    let heard: HeardLog = Arc::default();
    let h = Arc::clone(&heard);
    tokio::spawn(async move {
        let mut dec = OpusDecoder::new().expect("decoder");
        while let Some(ev) = rx.recv().await {
            if let PeerEvent::Audio(p) = ev
                && let Ok(pcm) = dec.decode(&p.payload)
            {
                h.lock().unwrap().push((p.arrival, pcm.to_vec()));
            }
        }
    });
    Participant {
        client: Arc::new(client),
        heard,
        stop: Arc::new(AtomicBool::new(false)),
        sent: Arc::default(),
    }
}

impl Participant {
    /// Sends `speech` at real-time pace, then silence until stopped; the returned handle ends
    /// when the speech has been sent.
    fn speak(&self, speech: Arc<Vec<i16>>) -> tokio::sync::oneshot::Receiver<()> {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let client = Arc::clone(&self.client);
        let stop = Arc::clone(&self.stop);
        let sent = Arc::clone(&self.sent);
        tokio::spawn(async move {
            let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut done_tx = Some(done_tx);
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut frame = [0i16; FRAME_SAMPLES];
                let at = k * FRAME_SAMPLES;
                if at < speech.len() {
                    let n = (speech.len() - at).min(FRAME_SAMPLES);
                    frame[..n].copy_from_slice(&speech[at..at + n]);
                } else if let Some(tx) = done_tx.take() {
                    let _ = tx.send(());
                }
                let packet = enc.encode(&frame).expect("encode");
                let ok = client
                    .send_opus(packet, Duration::from_millis(20))
                    .await
                    .is_ok();
                sent.lock()
                    .unwrap()
                    .push(if ok { Some(Instant::now()) } else { None });
                k += 1;
            }
        });
        done
    }

    /// Participant packet -> agent `media` message: (p50, p99, max) ms. The message with
    /// `timestamp` t carries the frame of sent packet k0 + t/20; k0 is the largest offset that
    /// keeps every latency non-negative (a latency below one frame makes it unambiguous).
    fn uplink_latency(&self, conn: &AgentConn) -> (f64, f64, f64) {
        let sent = self.sent.lock().unwrap().clone();
        let got: Vec<(Instant, usize)> = conn
            .media
            .lock()
            .unwrap()
            .iter()
            .map(|(t, v)| {
                let ts: usize = v["media"]["timestamp"]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .expect("timestamp");
                (*t, ts / 20)
            })
            .collect();
        let latencies = |k0: usize| -> Option<Vec<f64>> {
            got.iter()
                .map(|(r, n)| {
                    let s = sent.get(k0 + n).copied().flatten()?;
                    (*r >= s).then(|| ms(*r - s))
                })
                .collect()
        };
        let Some(mut l) = (0..200).rev().find_map(latencies) else {
            return (f64::NAN, f64::NAN, f64::NAN);
        };
        if std::env::var("AGENT_LATENCY_DEBUG").is_ok() {
            for (n, x) in l.iter().enumerate() {
                if *x > 5.0 {
                    eprintln!(
                        "latency[{n}] = {x:.1} ms at +{:.0} ms",
                        ms(got[n].0 - got[0].0)
                    );
                }
            }
        }
        l.sort_by(f64::total_cmp);
        let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
        (at(0.5), at(0.99), at(1.0))
    }

    fn heard(&self) -> Vec<(Instant, Vec<i16>)> {
        self.heard.lock().unwrap().clone()
    }

    async fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Signal helpers.

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} opens with hound: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.channels, 1);
    let shift = spec.bits_per_sample.saturating_sub(16);
    let samples = r
        .samples::<i32>()
        .map(|s| (s.expect("sample") >> shift) as i16)
        .collect();
    (spec.sample_rate, samples)
}

fn tone(hz: f64, rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (TONE_AMP * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

/// Amplitude of `hz` in `x` (single-bin DFT), in sample units.
fn amplitude(x: &[i16], hz: f64, rate: u32) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let ph = std::f64::consts::TAU * hz * i as f64 / f64::from(rate);
        re += f64::from(s) * ph.cos();
        im += f64::from(s) * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len().max(1) as f64
}

/// RMS per 10 ms window.
fn envelope(pcm: &[i16], rate: u32) -> Vec<f64> {
    pcm.chunks_exact(rate as usize / 100)
        .map(|w| (w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
        .collect()
}

/// Best Pearson correlation of `b` against `a` over lags 0..=max_lag windows (b lags a), and
/// that lag.
fn best_correlation(a: &[f64], b: &[f64], max_lag: usize) -> (f64, usize) {
    let mut best = (f64::MIN, 0);
    for lag in 0..=max_lag.min(b.len().saturating_sub(1)) {
        let n = a.len().min(b.len() - lag);
        if n < 100 {
            break;
        }
        let (x, y) = (&a[..n], &b[lag..lag + n]);
        let (mx, my) = (
            x.iter().sum::<f64>() / n as f64,
            y.iter().sum::<f64>() / n as f64,
        );
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (p, q) in x.iter().zip(y) {
            sxy += (p - mx) * (q - my);
            sxx += (p - mx).powi(2);
            syy += (q - my).powi(2);
        }
        let r = sxy / (sxx * syy).sqrt().max(1e-9);
        if r > best.0 {
            best = (r, lag);
        }
    }
    best
}

/// Runs of sound in a (mostly silent) AI track: (start, end) samples, gaps under 10 ms joined.
fn sound_runs(pcm: &[i16]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &s) in pcm.iter().enumerate() {
        if s.unsigned_abs() > 64 {
            match runs.last_mut() {
                Some((_, end)) if i - *end < 480 => *end = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
    }
    runs
}

/// Which of `freqs` dominates `x` (with at least a third of the tone's amplitude).
fn dominant(x: &[i16], freqs: &[f64], rate: u32) -> Option<f64> {
    freqs
        .iter()
        .map(|&f| (f, amplitude(x, f, rate)))
        .filter(|(_, a)| *a > TONE_AMP / 3.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

/// A tone as the participant heard it.
struct Heard {
    /// Milliseconds of 20 ms packets dominated by the tone.
    ms: u64,
    /// Arrival of the first and the last such packet.
    first: Option<Instant>,
    last: Option<Instant>,
}

fn heard_tones(heard: &[(Instant, Vec<i16>)], freqs: &[f64]) -> Vec<Heard> {
    freqs
        .iter()
        .map(|&f| {
            let mut h = Heard {
                ms: 0,
                first: None,
                last: None,
            };
            for (t, pcm) in heard {
                if dominant(pcm, freqs, 48_000) == Some(f) {
                    h.ms += (pcm.len() / 48) as u64;
                    h.first.get_or_insert(*t);
                    h.last = Some(*t);
                }
            }
            h
        })
        .collect()
}

fn speech_48k() -> Arc<Vec<i16>> {
    let (rate, pcm) = read_wav(&fixture("participant_speech.wav"));
    assert_eq!(rate, 48_000);
    Arc::new(pcm)
}

/// The participant audio the agent received, placed by `timestamp` at the agent's rate.
fn agent_received(conn: &AgentConn, format: AgentAudioFormat) -> Vec<i16> {
    let media = conn.media.lock().unwrap();
    let per_ms = format.sample_rate() as usize / 1000;
    let mut out = Vec::new();
    let mut last_chunk = 0u64;
    let mut last_ts = None;
    let mut uneven = 0;
    for (_, v) in media.iter() {
        assert_eq!(v["streamSid"], conn.stream_sid.as_str());
        let m = &v["media"];
        assert_eq!(m["track"], "inbound");
        let chunk: u64 = m["chunk"]
            .as_str()
            .expect("chunk")
            .parse()
            .expect("chunk n");
        assert_eq!(chunk, last_chunk + 1, "chunks are consecutive");
        last_chunk = chunk;
        let ts: usize = m["timestamp"].as_str().expect("ts").parse().expect("ts n");
        if last_ts.is_some_and(|l| ts != l + 20) {
            uneven += 1;
        }
        last_ts = Some(ts);
        let pcm = decode_agent(format, m["payload"].as_str().expect("payload"));
        let at = ts * per_ms;
        if out.len() < at + pcm.len() {
            out.resize(at + pcm.len(), 0);
        }
        out[at..at + pcm.len()].copy_from_slice(&pcm);
    }
    assert!(
        uneven * 100 <= media.len(),
        "{uneven} of {} media timestamps not 20 ms apart",
        media.len()
    );
    out
}

fn check_sequence(conn: &AgentConn) {
    let seqs = conn.seqs.lock().unwrap();
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "sequenceNumber {s} at message {i}");
    }
}

fn check_files(files: &[RecordingFile]) -> (Vec<i16>, Vec<i16>) {
    assert_eq!(files.len(), 6, "six files: {files:#?}");
    let mut participant = Vec::new();
    let mut ai = Vec::new();
    for f in files {
        assert!(f.bytes > 0 && f.path.exists(), "{f:?}");
        if f.format.as_str() == "wav" {
            let (rate, pcm) = read_wav(&f.path);
            assert_eq!(rate, 48_000);
            match f.track.as_str() {
                "participant" => participant = pcm,
                "ai" => ai = pcm,
                _ => {}
            }
        }
    }
    (participant, ai)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------

async fn full_conversation(format: AgentAudioFormat, session_id: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = TestAgent::bind().await;
    let (engine, events) = engine();
    let custom = json!({"session_id": session_id, "campaign": "c1", "resume": false});
    let participant = join(
        &engine,
        session_id,
        dir.path(),
        agent_request(agent.url(), format, custom.clone()),
    )
    .await;
    let mut conn = agent.next_conn(Duration::from_secs(5)).await;
    let start = conn.handshake().await;
    assert_eq!(start["sequenceNumber"], "1");
    let s = &start["start"];
    assert_eq!(s["streamSid"], conn.stream_sid.as_str());
    assert!(conn.stream_sid.starts_with("MZ") && conn.stream_sid.len() == 34);
    assert_eq!(s["accountSid"], "earshot");
    assert_eq!(s["callSid"], session_id);
    assert_eq!(s["tracks"], json!(["inbound"]));
    assert_eq!(s["customParameters"], custom);
    assert_eq!(
        s["mediaFormat"],
        json!({"encoding": format.encoding(), "sampleRate": format.sample_rate(), "channels": 1})
    );

    let speech = speech_48k();
    let speech_done = participant.speak(Arc::clone(&speech));

    // 1. Two tones with a mark after each, sent at once: played back to back in real time,
    //    each mark echoed once the audio before it has been played.
    let (a, b, d) = (440.0, 660.0, 550.0);
    let barge = [880.0, 990.0, 1100.0];
    let freqs = [a, b, d, barge[0], barge[1], barge[2]];
    let from = events.len();
    let sent = Instant::now();
    // (Each tone goes as one message: the runs measured below must not depend on how fast
    // the test agent itself gets to write under load; 20 ms messages are used further down.)
    conn.send_tone(format, a, 1000, 1000);
    conn.send_mark("m1");
    conn.send_tone(format, b, 600, 600);
    conn.send_mark("m2");
    let (t1, m1) = conn.expect_event("mark", Duration::from_secs(3)).await;
    let (t2, m2) = conn.expect_event("mark", Duration::from_secs(3)).await;
    assert_eq!(m1["mark"]["name"], "m1");
    assert_eq!(m2["mark"]["name"], "m2");
    assert_eq!(m1["streamSid"], conn.stream_sid.as_str());
    let (d1, d2) = (ms(t1 - sent), ms(t2 - sent));
    eprintln!(
        "[{format}] mark delays: m1 {d1:.1} ms after sending 1000 ms of audio, m2 {d2:.1} ms after 1600 ms"
    );
    // Never before the audio has been played; the upper bound only guards against stalls.
    assert!((1000.0..1250.0).contains(&d1), "m1 after {d1} ms");
    assert!((1600.0..1850.0).contains(&d2), "m2 after {d2} ms");
    let (i, _, started) = events
        .wait_for(from, Duration::from_secs(1), "AI TurnStarted", |e| {
            matches!(e, MediaEvent::TurnStarted { role: Role::Ai, .. })
        })
        .await;
    let MediaEvent::TurnStarted { at_ms: ab_at, .. } = started else {
        unreachable!()
    };
    let (_, _, ended) = events
        .wait_for(i, Duration::from_secs(1), "AI TurnEnded", |e| {
            matches!(e, MediaEvent::TurnEnded { role: Role::Ai, .. })
        })
        .await;
    let MediaEvent::TurnEnded {
        start_ms, end_ms, ..
    } = ended
    else {
        unreachable!()
    };
    assert_eq!(start_ms, ab_at);
    // Two segments (the mark between them ends the first), each 5 ms longer than sent: the
    // downlink is causal and passes its resampler's filter delay on.
    assert!(
        (end_ms - start_ms).abs_diff(1600 + 2 * 5) <= 1,
        "AI turn {start_ms}..{end_ms}"
    );

    // 2. Transcript lines, in order; junk in between is ignored.
    let from = events.len();
    conn.send(json!({"event":"transcript","role":"participant","text":"I am","final":false,"start_ms":100,"end_ms":900}));
    conn.send_raw(Message::text("not json"));
    conn.send_raw(Message::binary(vec![1, 2, 3]));
    conn.send(json!({"event":"media","media":{"payload":"@@@"}}));
    conn.send(json!({"event":"mark"}));
    conn.send(json!({"event":"dtmf","dtmf":{"digit":"1"}}));
    conn.send(json!({"event":"transcript","role":"participant","text":"I am here","final":true,"start_ms":100,"end_ms":1200}));
    conn.send(json!({"event":"transcript","role":"ai","text":"Thank you."}));
    let mut lines = Vec::new();
    let mut at = from;
    for _ in 0..3 {
        let (i, _, ev) = events
            .wait_for(at, Duration::from_secs(2), "Transcript", |e| {
                matches!(e, MediaEvent::Transcript { .. })
            })
            .await;
        at = i + 1;
        lines.push(ev);
    }
    let summary: Vec<_> = lines
        .iter()
        .map(|e| match e {
            MediaEvent::Transcript {
                session_id: sid,
                role,
                text,
                is_final,
                start_ms,
                end_ms,
            } => {
                assert_eq!(sid, session_id);
                assert!(end_ms >= start_ms);
                (*role, text.clone(), *is_final, end_ms - start_ms)
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(summary[0], (Role::Participant, "I am".into(), false, 800));
    assert_eq!(
        summary[1],
        (Role::Participant, "I am here".into(), true, 1100)
    );
    assert_eq!(
        (summary[2].0, summary[2].1.as_str(), summary[2].2),
        (Role::Ai, "Thank you.", true)
    );

    // 3. Barge-in, three times: a long tone, cleared 300 ms after it started playing.
    let mut clears = Vec::new();
    for (k, &hz) in barge.iter().enumerate() {
        let from = events.len();
        let name = format!("c{k}");
        conn.send_tone(format, hz, 3000, 3000);
        conn.send_mark(&name);
        let (i, seen_start, started) = events
            .wait_for(from, Duration::from_secs(1), "AI TurnStarted", |e| {
                matches!(e, MediaEvent::TurnStarted { role: Role::Ai, .. })
            })
            .await;
        let MediaEvent::TurnStarted { at_ms, .. } = started else {
            unreachable!()
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cleared = Instant::now();
        conn.send(json!({"event":"clear","streamSid":conn.stream_sid}));
        let (t, mark) = conn.expect_event("mark", Duration::from_secs(1)).await;
        assert_eq!(mark["mark"]["name"], name.as_str());
        let mark_after_clear = ms(t - cleared);
        assert!(
            mark_after_clear < 100.0,
            "pending mark echoed on clear: {mark_after_clear} ms"
        );
        let (_, seen_end, ended) = events
            .wait_for(i, Duration::from_secs(1), "AI TurnEnded after clear", |e| {
                matches!(e, MediaEvent::TurnEnded { role: Role::Ai, .. })
            })
            .await;
        let MediaEvent::TurnEnded { end_ms, .. } = ended else {
            unreachable!()
        };
        clears.push(Clear {
            hz,
            cleared,
            at_ms,
            end_ms,
            // The clear's arrival on the session timeline: the turn started at `at_ms` and
            // the session handled the clear (ending the turn) `seen_end - seen_start` later;
            // both events travel the same way to this test, so their delivery delays cancel.
            clear_ms: at_ms as f64 + ms(seen_end - seen_start),
            handled_after: ms(seen_end.saturating_duration_since(cleared)),
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 4. The agent ends the interview after its goodbye has been played.
    let from = events.len();
    let sent = Instant::now();
    conn.send_tone(format, d, 300, 300);
    conn.send(json!({"event":"end"}));
    let (_, finished_at, _) = events
        .wait_for(from, Duration::from_secs(2), "InterviewFinished", |e| {
            matches!(e, MediaEvent::InterviewFinished { .. })
        })
        .await;
    let end_delay = ms(finished_at - sent);
    assert!(
        (300.0..550.0).contains(&end_delay),
        "InterviewFinished {end_delay} ms after 300 ms of goodbye"
    );

    // The whole speech reaches the agent, then the session ends: `stop`, and the socket closes.
    tokio::time::timeout(Duration::from_secs(15), speech_done)
        .await
        .expect("speech sent")
        .expect("speaker alive");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = events.len();
    let files = events.recordings(from, &engine, session_id).await;
    let (_, stop) = conn.expect_event("stop", Duration::from_secs(3)).await;
    assert_eq!(stop["streamSid"], conn.stream_sid.as_str());
    assert_eq!(
        stop["stop"],
        json!({"accountSid": "earshot", "callSid": session_id})
    );
    let (_, closed) = conn.next_event(Duration::from_secs(3)).await;
    assert_eq!(closed["event"], "__closed__");
    check_sequence(&conn);
    participant.leave().await;

    // The agent heard the participant: envelope of the received stream vs the speech sent.
    let received = agent_received(&conn, format);
    let rate = format.sample_rate();
    let (r, lag) = best_correlation(&envelope(&speech, 48_000), &envelope(&received, rate), 200);
    eprintln!(
        "[{format}] participant audio at the agent: envelope correlation {r:.3} at lag {} ms, {} ms received",
        lag * 10,
        received.len() * 1000 / rate as usize
    );
    assert!(r > 0.8, "correlation {r}");
    let (p50, p99, max) = participant.uplink_latency(&conn);
    eprintln!(
        "[{format}] participant packet -> agent media message: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (loopback, {} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    // Participant turns were taken by voice activity.
    let all = events.all();
    let p_started = all
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                MediaEvent::TurnStarted {
                    role: Role::Participant,
                    ..
                }
            )
        })
        .count();
    let p_ended = all
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                MediaEvent::TurnEnded {
                    role: Role::Participant,
                    ..
                }
            )
        })
        .count();
    assert!(
        p_started >= 1 && p_ended >= 1,
        "participant turns {p_started}/{p_ended}"
    );

    // The participant heard the AI audio.
    let heard = participant.heard();
    let tones = heard_tones(&heard, &freqs);
    eprintln!(
        "[{format}] heard by the participant (Hz, ms): {:?}",
        freqs
            .iter()
            .zip(&tones)
            .map(|(f, h)| (*f, h.ms))
            .collect::<Vec<_>>()
    );
    assert!(
        tones[0].ms.abs_diff(1000) <= 60,
        "440 Hz heard {} ms",
        tones[0].ms
    );
    assert!(
        tones[1].ms.abs_diff(600) <= 60,
        "660 Hz heard {} ms",
        tones[1].ms
    );
    assert!(
        tones[2].ms.abs_diff(300) <= 60,
        "550 Hz heard {} ms",
        tones[2].ms
    );
    let signed_ms = |t: Instant, from: Instant| {
        if t >= from {
            ms(t - from)
        } else {
            -ms(from - t)
        }
    };

    // The AI track: A+B back to back (exactly 1600 ms), each barge-in tone until its clear,
    // D (300 ms).
    let (participant_pcm, ai) = check_files(&files);
    assert!(participant_pcm.len() > 48_000 * 7);
    let runs = sound_runs(&ai);
    assert_eq!(runs.len(), 5, "five runs of AI audio: {runs:?}");
    let ms_of = |n: usize| n as f64 / 48.0;
    let (ab, dr) = (runs[0], runs[4]);
    // 1600 ms of tones plus each segment's 5 ms filter delay (a ramp at A's start and between
    // A and B).
    assert!(
        (1600.0..1612.0).contains(&ms_of(ab.1 - ab.0)),
        "A+B run {:.1} ms",
        ms_of(ab.1 - ab.0)
    );
    assert!(
        (0.0..6.0).contains(&(ms_of(ab.0) - ab_at as f64)),
        "A+B placed at its turn start (after the 5 ms filter delay): {:.1} ms vs {ab_at}",
        ms_of(ab.0)
    );
    assert_eq!(
        dominant(&ai[ab.0 + 4800..ab.0 + 9600], &freqs, 48_000),
        Some(a)
    );
    assert_eq!(
        dominant(&ai[ab.0 + 52_800..ab.0 + 57_600], &freqs, 48_000),
        Some(b)
    );
    assert!(
        (ms_of(dr.1 - dr.0) - 300.0).abs() < 2.0,
        "D run {:.1} ms",
        ms_of(dr.1 - dr.0)
    );
    assert_eq!(
        dominant(&ai[dr.0 + 960..dr.0 + 4800], &freqs, 48_000),
        Some(d)
    );

    // Clear to silence, per barge-in.
    // - recorded: the tone's run in the AI track holds `run` ms; it began playing when its
    //   first packet reached the participant (minus that packet's delivery), and the clear was
    //   sent `cleared - first` later: `run - (cleared - first)` is the audio recorded after
    //   the clear was sent (an upper bound: every delay of this test makes it larger).
    // - by events: the track's end against the clear's place on the timeline seen through the
    //   session's events.
    // - heard: the last packet of the tone reached the participant this long after the clear
    //   was sent.
    let mut recorded = Vec::new();
    let mut heard_after = Vec::new();
    for (k, cl) in clears.iter().enumerate() {
        let run = runs[1 + k];
        let tone = &tones[3 + k];
        assert_eq!(
            dominant(&ai[run.0 + 960..run.0 + 4800], &freqs, 48_000),
            Some(cl.hz)
        );
        let (first, last) = (
            tone.first.expect("barge-in tone heard"),
            tone.last.expect("barge-in tone heard"),
        );
        let run_ms = ms_of(run.1 - run.0);
        let track_end = ms_of(run.1);
        let rec = run_ms - signed_ms(cl.cleared, first);
        let by_events = track_end - cl.clear_ms;
        let heard_ms = signed_ms(last, cl.cleared);
        eprintln!(
            "[{format}] clear {k} -> silence: AI track holds {rec:.1} ms after the clear was sent \
             (by the session's events {by_events:.1} ms; clear handled {:.1} ms after sending); \
             last tone packet reached the participant {heard_ms:.1} ms after the clear was sent",
            cl.handled_after
        );
        assert!(
            (0.0..6.0).contains(&(ms_of(run.0) - cl.at_ms as f64)),
            "tone placed at its turn start (after the 5 ms filter delay): {:.1} ms vs {}",
            ms_of(run.0),
            cl.at_ms
        );
        assert!(
            (track_end - cl.end_ms as f64).abs() < 2.0,
            "TurnEnded matches the track"
        );
        assert!(
            (run_ms - tone.ms as f64).abs() <= 25.0,
            "the track holds what was heard: {run_ms} vs {} ms",
            tone.ms
        );
        assert!(
            rec < 100.0 && heard_ms < 100.0,
            "clear {k} took effect late"
        );
        recorded.push(rec);
        heard_after.push(heard_ms);
    }
    // The median of three, so that one scheduling hiccup of a loaded machine (which can only
    // make these figures larger) does not decide.
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rec, heard_ms) = (median(&mut recorded), median(&mut heard_after));
    assert!(rec < 40.0, "AI audio recorded {rec} ms after the clear");
    assert!(heard_ms < 40.0, "heard {heard_ms} ms after the clear");
}

/// One barge-in of the test.
struct Clear {
    hz: f64,
    /// When the test agent sent `clear`.
    cleared: Instant,
    /// The AI turn's start and end on the session timeline (events).
    at_ms: u64,
    end_ms: u64,
    clear_ms: f64,
    handled_after: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l16_agent_hears_the_participant_and_is_heard() {
    full_conversation(AgentAudioFormat::L16k16, "agent-l16").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mulaw_agent_hears_the_participant_and_is_heard() {
    full_conversation(AgentAudioFormat::Mulaw8k, "agent-mulaw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_the_stream_and_resume_starts_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = TestAgent::bind().await;
    let (engine, events) = engine();
    let id = "agent-pause";
    let participant = join(
        &engine,
        id,
        dir.path(),
        agent_request(
            agent.url(),
            AgentAudioFormat::Mulaw8k,
            json!({"resume": false}),
        ),
    )
    .await;
    let mut conn = agent.next_conn(Duration::from_secs(5)).await;
    conn.handshake().await;
    let _speech = participant.speak(speech_48k());
    conn.send_tone(AgentAudioFormat::Mulaw8k, 440.0, 2000, 20);
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.pause(id).await;
    let (_, stop) = conn.expect_event("stop", Duration::from_secs(2)).await;
    assert_eq!(stop["stop"]["callSid"], id);
    let (_, closed) = conn.next_event(Duration::from_secs(3)).await;
    assert_eq!(closed["event"], "__closed__");
    let frames_before = conn.media.lock().unwrap().len();
    assert!(
        frames_before >= 15,
        "{frames_before} frames before the pause"
    );
    let (_, _, ended) = events
        .wait_for(0, Duration::from_secs(1), "AI TurnEnded on pause", |e| {
            matches!(e, MediaEvent::TurnEnded { role: Role::Ai, .. })
        })
        .await;
    let MediaEvent::TurnEnded {
        start_ms, end_ms, ..
    } = ended
    else {
        unreachable!()
    };
    assert!(
        (400..=620).contains(&(end_ms - start_ms)),
        "cut at {}",
        end_ms - start_ms
    );

    engine.resume(id, None).await;
    let mut conn2 = agent.next_conn(Duration::from_secs(5)).await;
    let start = conn2.handshake().await;
    assert_ne!(conn2.stream_sid, conn.stream_sid, "a new stream");
    assert_eq!(start["start"]["callSid"], id);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(conn2.media.lock().unwrap().len() >= 10, "media flows again");
    assert_eq!(conn2.media.lock().unwrap()[0].1["media"]["timestamp"], "0");

    let from = events.len();
    let files = events.recordings(from, &engine, id).await;
    check_files(&files);
    participant.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_fails_after_retry_for_and_recordings_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (engine, events) = engine();
    let id = "agent-unreachable";
    let participant = join(
        &engine,
        id,
        dir.path(),
        agent_request(
            format!("ws://{closed}/"),
            AgentAudioFormat::L16k16,
            json!({}),
        ),
    )
    .await;
    let (_, connected_at, _) = events
        .wait_for(0, Duration::from_secs(5), "Connected", |e| {
            matches!(e, MediaEvent::Connected { .. })
        })
        .await;
    let _speech = participant.speak(speech_48k());
    let (_, failed_at, failed) = events
        .wait_for(0, Duration::from_secs(5), "AgentFailed", |e| {
            matches!(e, MediaEvent::AgentFailed { .. })
        })
        .await;
    let after = ms(failed_at - connected_at);
    eprintln!(
        "unreachable agent: AgentFailed {after:.0} ms after the participant connected ({failed:?})"
    );
    assert!(
        (950.0..2000.0).contains(&after),
        "AgentFailed after {after} ms"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = events.len();
    let files = events.recordings(from, &engine, id).await;
    let (participant_pcm, _) = check_files(&files);
    assert!(
        participant_pcm.len() > 48_000,
        "participant recorded meanwhile"
    );
    participant.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dropping_mid_session_fails_and_recordings_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = TestAgent::bind().await;
    let (engine, events) = engine();
    let id = "agent-drop";
    let participant = join(
        &engine,
        id,
        dir.path(),
        agent_request(agent.url(), AgentAudioFormat::L16k16, json!({})),
    )
    .await;
    let mut conn = agent.next_conn(Duration::from_secs(5)).await;
    conn.handshake().await;
    let _speech = participant.speak(speech_48k());
    conn.send_tone(AgentAudioFormat::L16k16, 440.0, 500, 500);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // A message over the 1 MiB bound fails that connection; the bridge dials again and
    // starts a new stream (connected + start).
    let sent = Instant::now();
    conn.send_raw(Message::text("x".repeat(2 << 20)));
    let mut conn2 = agent.next_conn(Duration::from_secs(2)).await;
    let start2 = conn2.handshake().await;
    let (_, closed) = conn.next_event(Duration::from_secs(2)).await;
    assert_eq!(closed["event"], "__closed__");
    assert_ne!(conn2.stream_sid, conn.stream_sid);
    assert_eq!(start2["start"]["callSid"], id);
    let reconnect_ms = ms(sent.elapsed());
    // The connection drops: dialled again after the first backoff step (100 ms).
    let dropped = Instant::now();
    conn2.task.abort();
    let mut conn3 = agent.next_conn(Duration::from_secs(2)).await;
    conn3.handshake().await;
    let redial_ms = ms(dropped.elapsed());
    eprintln!(
        "agent reconnects: {reconnect_ms:.0} ms after an oversized message, {redial_ms:.0} ms after a dropped socket"
    );
    assert!(
        (90.0..1000.0).contains(&redial_ms),
        "redial after {redial_ms} ms"
    );
    assert!(
        !events
            .all()
            .iter()
            .any(|(_, e)| matches!(e, MediaEvent::AgentFailed { .. })),
        "no failure while the agent comes back"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(conn3.media.lock().unwrap().len() >= 10, "media flows again");
    conn3.send(json!({"event":"transcript","role":"ai","text":"still here"}));
    events
        .wait_for(0, Duration::from_secs(1), "Transcript", |e| {
            matches!(e, MediaEvent::Transcript { .. })
        })
        .await;

    // The agent goes away: the socket is torn down and nothing accepts any more.
    agent.stop_accepting();
    conn3.task.abort();
    let dropped = Instant::now();
    let (_, failed_at, _) = events
        .wait_for(0, Duration::from_secs(5), "AgentFailed", |e| {
            matches!(e, MediaEvent::AgentFailed { .. })
        })
        .await;
    let after = ms(failed_at - dropped);
    eprintln!("dropped agent: AgentFailed {after:.0} ms after the socket was torn down");
    assert!(
        (950.0..2000.0).contains(&after),
        "AgentFailed after {after} ms"
    );
    let from = events.len();
    let files = events.recordings(from, &engine, id).await;
    let (participant_pcm, ai) = check_files(&files);
    assert!(
        participant_pcm.len() > 48_000 * 2,
        "participant recorded throughout"
    );
    let runs = sound_runs(&ai);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(((runs[0].1 - runs[0].0) as f64 / 48.0 - 500.0).abs() < 2.0);
    participant.leave().await;
}

/// The built-in interviewer reports through the same interface: each prompt is an AI turn
/// (TurnStarted when it starts playing, TurnEnded when played out) with its text as a final AI
/// transcript line, the participant's turns follow voice activity, and the interview finishes
/// after the last prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_interviewer_reports_turns_and_transcript_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut prompts = Vec::new();
    for (k, hz) in [(0, 440.0), (1, 660.0)] {
        let path = dir.path().join(format!("p{k}.wav"));
        let mut w = hound::WavWriter::create(
            &path,
            hound::WavSpec {
                channels: 1,
                sample_rate: 48_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
        )
        .expect("prompt wav");
        for s in tone(hz, 48_000, 24_000) {
            w.write_sample(s).expect("sample");
        }
        w.finalize().expect("finalize");
        prompts.push(earshot_media::engine::PromptSpec {
            id: format!("q{k}"),
            text: format!("Question {k}?"),
            audio: path,
        });
    }
    let (engine, events) = engine();
    let id = "builtin";
    let (client, offer, mut rx) = ClientPeer::offer(&ClientConfig::default())
        .await
        .expect("client offer");
    let answer = engine
        .open_participant(ParticipantRequest {
            session_id: id.into(),
            offer_sdp: offer,
            prompts,
            silence_ms: 500,
            start_at: 0,
            noise_suppression: true,
            recording: Some(RecordingRequest {
                sealing: None,
                dir: dir.path().join("rec"),
                quality: Quality::Standard,
                derive_at_end: true,
            }),
            agent: None,
            opus: None,
        })
        .await
        .expect("engine answers");
    client.apply_answer(&answer).await.expect("apply answer");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(PeerEvent::Connected)) => break,
            Ok(Some(PeerEvent::Audio(_))) => {}
            other => panic!("client not connected: {other:?}"),
        }
    }
    let participant = Participant {
        client: Arc::new(client),
        heard: Arc::default(),
        stop: Arc::new(AtomicBool::new(false)),
        sent: Arc::default(),
    };
    // About 2 s of speech (an answer during and after the first prompt), then silence.
    let speech = speech_48k();
    let _done = participant.speak(Arc::new(speech[..96_000].to_vec()));
    events
        .wait_for(0, Duration::from_secs(15), "InterviewFinished", |e| {
            matches!(e, MediaEvent::InterviewFinished { .. })
        })
        .await;
    participant.leave().await;
    let files = events.recordings(events.len(), &engine, id).await;
    assert_eq!(files.len(), 6);

    let log: Vec<MediaEvent> = events.all().into_iter().map(|(_, e)| e).collect();
    // Per prompt: Progress, TurnStarted(ai), Transcript(ai, its text, final, its span),
    // TurnEnded(ai) over the prompt's 500 ms.
    for k in 0..2usize {
        let p = log
            .iter()
            .position(
                |e| matches!(e, MediaEvent::Progress { prompt_index, .. } if *prompt_index == k),
            )
            .unwrap_or_else(|| panic!("Progress {k}: {log:#?}"));
        let MediaEvent::TurnStarted {
            role: Role::Ai,
            at_ms,
            ..
        } = &log[p + 1]
        else {
            panic!("TurnStarted after Progress {k}: {:?}", log[p + 1]);
        };
        let MediaEvent::Transcript {
            role: Role::Ai,
            text,
            is_final: true,
            start_ms,
            end_ms,
            ..
        } = &log[p + 2]
        else {
            panic!("Transcript after Progress {k}: {:?}", log[p + 2]);
        };
        assert_eq!(text, &format!("Question {k}?"));
        assert_eq!((*start_ms, *end_ms), (*at_ms, at_ms + 500));
        let ended = log[p..]
            .iter()
            .find_map(|e| match e {
                MediaEvent::TurnEnded {
                    role: Role::Ai,
                    start_ms,
                    end_ms,
                    ..
                } => Some((*start_ms, *end_ms)),
                _ => None,
            })
            .expect("AI TurnEnded");
        assert_eq!(ended, (*at_ms, at_ms + 500), "prompt {k} turn");
    }
    // The participant answered between the prompts: a turn by voice activity.
    let q1 = log
        .iter()
        .position(|e| {
            matches!(
                e,
                MediaEvent::Progress {
                    prompt_index: 1,
                    ..
                }
            )
        })
        .expect("second prompt");
    let answer_turn = log[..q1].iter().find_map(|e| match e {
        MediaEvent::TurnEnded {
            role: Role::Participant,
            start_ms,
            end_ms,
            ..
        } => Some((*start_ms, *end_ms)),
        _ => None,
    });
    let (start, end) = answer_turn.expect("participant turn before the second prompt");
    assert!(end > start + 300, "answer {start}..{end}");
    assert!(
        log[..q1].iter().any(|e| matches!(
            e,
            MediaEvent::TurnStarted {
                role: Role::Participant,
                ..
            }
        )),
        "participant TurnStarted"
    );
}
