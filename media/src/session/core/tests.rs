//! The session core stepped in virtual time: no sockets, no files, no sleeping. Time is an
//! `Instant` the test advances; packets are real Opus; the speech is the test fixture.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::agent::bridge::FromAgent;
use crate::request::LoadedAudio;
use earshot_vocab::AgentAudioFormat;
use earshot_vocab::media_port::PromptSpec;

const TICK: Duration = Duration::from_millis(20);

/// The fixture speech (48 kHz mono) from the repository's tests.
fn fixture_speech() -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/participant_speech.wav");
    let mut r = hound::WavReader::open(&path).expect("fixture speech");
    assert_eq!(r.spec().sample_rate, 48_000, "fixture is 48 kHz");
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

fn opus_packets(pcm: &[i16]) -> Vec<Bytes> {
    let mut enc = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    pcm.chunks(FRAME)
        .map(|c| {
            let mut f = [0i16; FRAME];
            f[..c.len()].copy_from_slice(c);
            enc.encode(&f).expect("encode")
        })
        .collect()
}

/// A prompt of `secs` seconds of a 300 Hz tone.
fn tone_prompt(id: &str, secs: f32) -> LoadedPrompt {
    let n = (48_000.0 * secs) as usize;
    let pcm: Vec<i16> = (0..n)
        .map(|i| ((i as f32 * 300.0 * std::f32::consts::TAU / 48_000.0).sin() * 6000.0) as i16)
        .collect();
    LoadedPrompt {
        prompt: PromptSpec {
            id: id.into(),
            text: format!("question {id}"),
            audio: id.into(),
        },
        audio: LoadedAudio::encode(pcm, OpusSettings::default()).expect("encode"),
    }
}

/// The AI packets sent, in order.
fn sent_packets(out: &[Output]) -> Vec<Bytes> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendAi(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn prompts_go_with_fec_only_after_the_participant_reports_loss() {
    let (q1, q2) = (tone_prompt("q1", 1.0), tone_prompt("q2", 1.0));
    let plain = q2.audio.packets.clone();
    let fec = q2.audio.packets_fec.clone().expect("a FEC copy");
    assert_ne!(plain[10], fec[10], "the FEC copy carries other bits");
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(vec![q1.clone(), q2], None);
    h.input(Input::PeerConnected);
    // Lead-in and the first prompt, with no loss reported: its plain packets.
    h.steps(90, Some(&silence));
    let out = h.take();
    assert!(
        sent_packets(&out).contains(&q1.audio.packets[10]),
        "the first prompt went without FEC"
    );
    // The participant reports 3 % loss, answers and falls silent: the next prompt goes from
    // the FEC copy.
    h.core.reported_loss(0.03);
    for p in opus_packets(&fixture_speech()) {
        h.step(Some(p));
    }
    h.steps(150, Some(&silence));
    let sent = sent_packets(&h.take());
    assert!(sent.contains(&fec[10]), "the second prompt went with FEC");
    assert!(!sent.contains(&plain[10]));
    // Five clean reports later the window has forgotten the loss.
    for _ in 0..5 {
        h.core.reported_loss(0.0);
    }
    assert!(!h.core.sends_fec());
}

fn agent_request() -> AgentRequest {
    AgentRequest {
        url: "ws://127.0.0.1:9/agent".into(),
        audio_format: AgentAudioFormat::L16k16,
        custom_parameters: serde_json::json!({}),
        retry_for: Duration::from_secs(10),
        tls: None,
    }
}

/// A core, its virtual clock, and everything it has put out so far.
struct Harness {
    core: SessionCore,
    now: Instant,
    out: Vec<Output>,
    /// Next RTP sequence number and timestamp of the simulated participant.
    seq: u16,
    ts: u32,
}

impl Harness {
    fn new(prompts: Vec<LoadedPrompt>, agent: Option<AgentRequest>) -> Self {
        let now = Instant::now();
        let core = SessionCore::new(
            CoreParams {
                session_id: "ses_test".into(),
                prompts,
                silence_ms: 600,
                start_at: 0,
                noise_suppression: true,
                timeline_base: 0,
                recording: true,
                opus: OpusSettings::default(),
                agent,
            },
            now,
        )
        .expect("core");
        Self {
            core,
            now,
            out: Vec::new(),
            seq: 1000,
            ts: 90_000,
        }
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, self.now);
        while let Some(o) = self.core.poll_output() {
            self.out.push(o);
        }
    }

    /// One 20 ms step: the participant's packet (if any) arrives, then the tick runs.
    fn step(&mut self, packet: Option<Bytes>) {
        self.now += TICK;
        if let Some(payload) = packet {
            let pkt = RtpAudioPacket {
                sequence: self.seq,
                timestamp: self.ts,
                payload,
                arrival: self.now,
            };
            self.input(Input::Audio(pkt));
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME as u32);
        self.input(Input::Tick {
            scheduled: self.now,
        });
    }

    fn steps(&mut self, n: usize, packet: Option<&Bytes>) {
        for _ in 0..n {
            self.step(packet.cloned());
        }
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }
}

fn events(out: &[Output]) -> Vec<&MediaEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// A turn's start (`TurnStarted.at_ms`) or its span (`TurnEnded`), in order.
type TurnMark = (Option<u64>, Option<(u64, u64)>);

fn turns(out: &[Output], role: Role) -> Vec<TurnMark> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::TurnStarted { role: r, at_ms, .. } if *r == role => {
                Some((Some(*at_ms), None))
            }
            MediaEvent::TurnEnded {
                role: r,
                start_ms,
                end_ms,
                ..
            } if *r == role => Some((None, Some((*start_ms, *end_ms)))),
            _ => None,
        })
        .collect()
}

fn sent(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::SendAi(_)))
        .count()
}

/// Recorded AI samples that are not silent.
fn ai_recorded_loud(out: &[Output]) -> usize {
    out.iter()
        .filter_map(|o| match o {
            Output::Record {
                track: RecordTrack::Ai,
                pcm,
                ..
            } => Some(pcm.iter().filter(|s| s.unsigned_abs() > 500).count()),
            _ => None,
        })
        .sum()
}

fn count_events(out: &[Output], f: impl Fn(&MediaEvent) -> bool) -> usize {
    events(out).into_iter().filter(|e| f(e)).count()
}

#[test]
fn built_in_interviewer_asks_waits_for_the_answer_and_asks_again() {
    let speech = opus_packets(&fixture_speech());
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(vec![tone_prompt("q1", 1.0), tone_prompt("q2", 1.0)], None);
    h.input(Input::PeerConnected);
    // Lead-in (0.5 s), then the first prompt (1 s), with the participant silent.
    h.steps(90, Some(&silence));
    let out = h.take();
    assert_eq!(
        count_events(&out, |e| matches!(e, MediaEvent::Connected { .. })),
        1
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, MediaEvent::Progress { prompt_id, .. } if prompt_id == "q1")),
        "first prompt not started"
    );
    assert_eq!(sent(&out), 90, "an AI packet every tick");
    let ai = turns(&out, Role::Ai);
    assert_eq!(ai.len(), 2, "one AI turn started and ended: {ai:?}");
    let (start, (s, e)) = (ai[0].0.expect("start"), ai[1].1.expect("end"));
    assert_eq!(start, 500, "prompt starts after the 0.5 s lead-in");
    assert_eq!((s, e), (500, 1500), "the prompt's second on the timeline");
    assert!(
        ai_recorded_loud(&out) > 40_000,
        "the prompt is in the AI track"
    );
    // The participant answers (the fixture speech), then is silent: the next prompt comes
    // after `silence_ms` of silence.
    for p in &speech {
        h.step(Some(p.clone()));
    }
    h.steps(60, Some(&silence));
    let out = h.take();
    let part = turns(&out, Role::Participant);
    assert!(
        part.len() >= 2,
        "the answer is a participant turn: {part:?}"
    );
    let recorded: usize = out
        .iter()
        .filter_map(|o| match o {
            Output::Record {
                track: RecordTrack::Participant,
                pcm,
                ..
            } => Some(pcm.len()),
            _ => None,
        })
        .sum();
    assert!(
        recorded >= (speech.len() - 2) * FRAME,
        "participant audio recorded: {recorded} samples of {}",
        speech.len() * FRAME
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, MediaEvent::Progress { prompt_id, .. } if prompt_id == "q2")),
        "second prompt not asked after the answer"
    );
    // Once the last prompt has played, the interview is finished (once).
    h.steps(60, Some(&silence));
    let later = h.take();
    let finished =
        |o: &[Output]| count_events(o, |e| matches!(e, MediaEvent::InterviewFinished { .. }));
    assert_eq!(finished(&out) + finished(&later), 1);
}

#[test]
fn agent_audio_plays_and_a_clear_cuts_it_off_at_once_echoing_its_marks() {
    let mut h = Harness::new(Vec::new(), Some(agent_request()));
    h.input(Input::PeerConnected);
    let out = h.take();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Agent(ToAgent::Dial(_)))),
        "the agent is dialled once the peer is up"
    );
    // The agent sends 2 s of speech-like tone with a mark after the first second.
    let tone = tone_prompt("a", 2.0).audio.pcm;
    h.input(Input::Agent(Some(FromAgent::Audio(
        tone[..48_000].to_vec(),
    ))));
    h.input(Input::Agent(Some(FromAgent::Mark("half".into()))));
    h.input(Input::Agent(Some(FromAgent::Audio(
        tone[48_000..].to_vec(),
    ))));
    h.input(Input::Agent(Some(FromAgent::Mark("all".into()))));
    // 0.5 s of it plays.
    h.steps(25, None);
    let out = h.take();
    let ai = turns(&out, Role::Ai);
    assert_eq!(ai.len(), 1, "an AI turn started: {ai:?}");
    assert!(ai_recorded_loud(&out) > 20_000, "agent audio recorded");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Agent(ToAgent::EchoMark(_)))),
        "no mark is echoed before its audio played"
    );
    // Barge-in: `clear` drops the queued 1.5 s; both marks are echoed at once, the turn ends
    // where the played audio ends, and nothing more is played.
    h.input(Input::Agent(Some(FromAgent::Clear)));
    let out = h.take();
    let marks: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Agent(ToAgent::EchoMark(m)) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(marks, vec!["half", "all"]);
    let ended = turns(&out, Role::Ai);
    let (start, end) = ended[0].1.expect("AI turn ended on clear");
    assert_eq!(
        end - start,
        500,
        "the turn holds the 0.5 s played: {start}-{end}"
    );
    h.steps(25, None);
    let out = h.take();
    assert_eq!(ai_recorded_loud(&out), 0, "nothing plays after a clear");
    assert_eq!(sent(&out), 25, "silence is still sent every tick");
}

/// One tick of a paced agent: its 20 ms of audio (if any) arrives `before` the tick, then
/// the tick runs; returns what the tick put out.
fn paced_tick(h: &mut Harness, audio: Option<&[i16]>, before: Duration) -> Vec<Output> {
    if let Some(pcm) = audio {
        h.now += TICK - before;
        h.input(Input::Agent(Some(FromAgent::Audio(pcm.to_vec()))));
        h.now += before;
    } else {
        h.now += TICK;
    }
    h.input(Input::Tick { scheduled: h.now });
    h.take()
}

#[test]
fn a_paced_agent_waits_a_margin_before_a_turn_and_a_longer_one_after_it_came_late() {
    let mut h = Harness::new(Vec::new(), Some(agent_request()));
    h.input(Input::PeerConnected);
    h.steps(5, None);
    h.take();
    let tone = tone_prompt("a", 2.0).audio.pcm;
    let frames: Vec<&[i16]> = tone.chunks_exact(FRAME).collect();
    // The first frame arrives 5 ms before a tick: within the 10 ms margin, so it waits that
    // tick and plays on the next.
    let out = paced_tick(&mut h, Some(frames[0]), Duration::from_millis(5));
    assert_eq!(
        ai_recorded_loud(&out),
        0,
        "the first frame waits for the margin"
    );
    assert!(turns(&out, Role::Ai).is_empty(), "no turn yet");
    let out = paced_tick(&mut h, Some(frames[1]), Duration::from_millis(5));
    assert_eq!(
        turns(&out, Role::Ai).len(),
        1,
        "the AI turn starts on this tick"
    );
    assert!(ai_recorded_loud(&out) > FRAME / 2, "played one tick later");
    for f in &frames[2..10] {
        let out = paced_tick(&mut h, Some(f), Duration::from_millis(5));
        assert!(
            ai_recorded_loud(&out) > FRAME / 2,
            "each frame plays on its tick"
        );
    }
    assert_eq!(h.core.agent.as_ref().map(|a| a.underruns), Some(0));
    // The resampler's 5 ms tail, pushed out by the bridge when the agent pauses, comes after
    // a dry tick: the end of a talk, not late audio.
    for _ in 0..2 {
        paced_tick(&mut h, None, Duration::ZERO);
    }
    paced_tick(&mut h, Some(&frames[9][..240]), Duration::from_millis(5));
    assert_eq!(h.core.agent.as_ref().map(|a| a.underruns), Some(0));
    // A turn whose first frame arrives 15 ms before a tick plays on that tick.
    for _ in 0..15 {
        paced_tick(&mut h, None, Duration::ZERO);
    }
    let out = paced_tick(&mut h, Some(frames[20]), Duration::from_millis(15));
    assert!(ai_recorded_loud(&out) > FRAME / 2, "15 ms ahead is enough");
    // One frame of it comes 25 ms late: the tick before runs dry (an underrun) ...
    let out = paced_tick(&mut h, None, Duration::ZERO);
    assert_eq!(
        ai_recorded_loud(&out),
        0,
        "nothing to play: the frame is late"
    );
    paced_tick(&mut h, Some(frames[21]), Duration::from_millis(15));
    assert_eq!(h.core.agent.as_ref().map(|a| a.underruns), Some(1));
    // ... so the next turn's first frame, again 15 ms before a tick, waits (margin 20 ms).
    for _ in 0..15 {
        paced_tick(&mut h, None, Duration::ZERO);
    }
    let out = paced_tick(&mut h, Some(frames[30]), Duration::from_millis(15));
    assert_eq!(ai_recorded_loud(&out), 0, "the margin grew to 20 ms");
    let out = paced_tick(&mut h, Some(frames[31]), Duration::from_millis(15));
    assert!(
        ai_recorded_loud(&out) > FRAME / 2,
        "it plays one tick later"
    );
}

#[test]
fn pause_stops_the_timeline_and_the_agent_and_resume_continues_both() {
    let mut h = Harness::new(Vec::new(), Some(agent_request()));
    h.input(Input::PeerConnected);
    h.steps(50, None);
    h.take();
    let before = h.core.timeline.position(h.now);
    assert_eq!(before, 50 * FRAME as u64, "1 s of active time");
    h.input(Input::Pause);
    let out = h.take();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Agent(ToAgent::Stop { .. }))),
        "the agent's stream stops on a pause"
    );
    // 10 s paused: nothing is sent or recorded, the timeline stands still.
    h.steps(500, None);
    let out = h.take();
    assert_eq!(sent(&out), 0);
    assert!(!out.iter().any(|o| matches!(o, Output::Record { .. })));
    assert_eq!(h.core.timeline.position(h.now), before);
    h.input(Input::Resume {
        agent: Some(agent_request()),
    });
    assert!(
        h.take()
            .iter()
            .any(|o| matches!(o, Output::Agent(ToAgent::Dial(_)))),
        "the agent is dialled again on resume"
    );
    h.steps(50, None);
    let out = h.take();
    assert_eq!(sent(&out), 50);
    assert_eq!(
        h.core.timeline.position(h.now),
        before + 50 * FRAME as u64,
        "the timeline continues without the paused time"
    );
}

#[test]
fn audio_that_stops_is_reported_after_a_second_and_restored_when_it_returns() {
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(vec![tone_prompt("q1", 5.0)], None);
    h.input(Input::PeerConnected);
    h.steps(20, Some(&silence));
    h.take();
    // No packets: reported once, after more than a second.
    h.steps(50, None);
    let out = h.take();
    assert_eq!(
        count_events(&out, |e| matches!(e, MediaEvent::Disconnected { .. })),
        0,
        "reported before a second passed"
    );
    h.steps(5, None);
    h.steps(100, None);
    let out = h.take();
    assert_eq!(
        count_events(&out, |e| matches!(e, MediaEvent::Disconnected { .. })),
        1
    );
    // Packets again: restored once.
    h.steps(10, Some(&silence));
    let out = h.take();
    assert_eq!(
        count_events(&out, |e| matches!(e, MediaEvent::Restored { .. })),
        1
    );
}

#[test]
fn a_peer_that_goes_before_connecting_reports_nothing_and_keeps_no_media() {
    let mut h = Harness::new(vec![tone_prompt("q1", 1.0)], None);
    h.steps(10, None);
    h.input(Input::PeerGone);
    let out = h.take();
    assert!(events(&out).is_empty(), "events: {:?}", events(&out));
    assert!(!h.core.ever_connected());
    assert_eq!(sent(&out), 0);
}

#[test]
fn a_lost_peer_is_reported_and_a_new_one_hears_the_cut_off_question_again() {
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(vec![tone_prompt("q1", 2.0), tone_prompt("q2", 1.0)], None);
    h.input(Input::PeerConnected);
    h.steps(50, Some(&silence)); // lead-in, then 0.5 s of q1
    h.input(Input::PeerGone);
    let out = h.take();
    assert_eq!(
        count_events(&out, |e| matches!(e, MediaEvent::Disconnected { .. })),
        1
    );
    let ai = turns(&out, Role::Ai);
    // Ticks fall at 20, 40, ... 1000 ms: q1's frames went out at 500 ... 1000 ms, 26 of them.
    assert_eq!(
        ai.last().and_then(|t| t.1),
        Some((500, 500 + 26 * 20)),
        "q1 cut off: {ai:?}"
    );
    // 5 s without a peer: the timeline stands still.
    h.steps(250, None);
    h.input(Input::PeerAttached { agent: None });
    h.input(Input::PeerConnected);
    h.steps(60, Some(&silence));
    let out = h.take();
    let asked: Vec<&str> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::Progress { prompt_id, .. } => Some(prompt_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec!["q1"], "the cut-off question is asked again");
    let ai = turns(&out, Role::Ai);
    assert_eq!(
        ai[0].0,
        Some(1500),
        "asked again after a lead-in, on the same timeline (no gap for the lost peer)"
    );
}

/// RMS of decoded listener packets.
fn listener_rms(out: &[Output]) -> (usize, f64) {
    let mut dec = crate::codec::OpusDecoder::new().expect("decoder");
    let (mut n, mut sum, mut packets) = (0usize, 0f64, 0usize);
    for o in out {
        if let Output::SendListeners(p) = o {
            packets += 1;
            let pcm = dec.decode(p).expect("decode");
            n += pcm.len();
            sum += pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        }
    }
    (packets, (sum / n.max(1) as f64).sqrt())
}

#[test]
fn listeners_hear_the_ai_and_the_participant_a_little_late_and_stop_when_gone() {
    let speech = opus_packets(&fixture_speech());
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(vec![tone_prompt("q1", 1.0), tone_prompt("q2", 1.0)], None);
    h.input(Input::PeerConnected);
    h.steps(10, Some(&silence));
    h.take();
    // Nobody listens: nothing is made for listeners.
    h.steps(10, Some(&silence));
    assert_eq!(listener_rms(&h.take()).0, 0);
    h.input(Input::Listeners(1));
    // The prompt (0.5 s .. 1.5 s on the timeline).
    h.steps(75, Some(&silence));
    let (packets, rms) = listener_rms(&h.take());
    let delay_frames = (listen::LISTEN_DELAY / FRAME as u64) as usize;
    assert!(
        (75 - delay_frames - 1..=75 - delay_frames + 1).contains(&packets),
        "a frame per tick after the {delay_frames}-frame delay: {packets}"
    );
    assert!(rms > 1000.0, "the prompt is heard: rms {rms:.0}");
    // The participant's answer, while the AI is silent.
    for p in &speech[..100] {
        h.step(Some(p.clone()));
    }
    let (packets, rms) = listener_rms(&h.take());
    assert_eq!(packets, 100);
    assert!(rms > 300.0, "the participant is heard: rms {rms:.0}");
    // The last listener leaves: nothing more is made.
    h.input(Input::Listeners(0));
    h.steps(20, Some(&silence));
    assert_eq!(listener_rms(&h.take()).0, 0);
}

fn quality_signals(out: &[Output]) -> Vec<earshot_vocab::media_port::QualitySignals> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::Signals { signals, .. } => Some(signals.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn signals_measure_silence_on_the_participants_turn_their_level_and_the_ai_response_time() {
    let speech = opus_packets(&fixture_speech());
    let silence = opus_packets(&[0i16; FRAME])[0].clone();
    let mut h = Harness::new(
        vec![
            tone_prompt("q1", 1.0),
            tone_prompt("q2", 1.0),
            tone_prompt("q3", 1.0),
        ],
        None,
    );
    h.input(Input::PeerConnected);
    // Lead-in and the first prompt end 1.5 s in; the participant stays silent until 4.5 s.
    h.steps(225, Some(&silence));
    let out = h.take();
    let s = quality_signals(&out);
    assert_eq!(s.len(), 4, "one report a second: {s:?}");
    // At 1 s the interviewer has not spoken yet: nobody's turn; at 2, 3 and 4 s the
    // participant has been silent on their turn since 1.5 s.
    let silent: Vec<f32> = s.iter().map(|s| s.silence_secs).collect();
    assert_eq!(silent[0], 0.0, "{silent:?}");
    for (got, want) in silent[1..].iter().zip([0.5, 1.5, 2.5]) {
        assert!((got - want).abs() < 0.05, "{silent:?}");
    }
    let last = &s[3];
    // Opus-coded digital silence decodes to a whisper of noise.
    assert!(last.input_dbfs < -80.0, "silence: {}", last.input_dbfs);
    assert_eq!(
        (last.loss, last.concealment, last.clipping),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(last.ai_latency_ms, None, "no exchange yet");
    assert_eq!(last.agent_errors, 0);

    // The participant answers; the next prompt comes once they have been silent for the
    // interviewer's 600 ms: that is the AI's response time.
    for p in &speech {
        h.step(Some(p.clone()));
    }
    h.steps(100, Some(&silence));
    let out = h.take();
    let s = quality_signals(&out);
    assert!(
        s.iter()
            .any(|s| s.input_dbfs > -40.0 && s.silence_secs == 0.0),
        "the answer's level shows while they speak: {s:?}"
    );
    let latency = s
        .iter()
        .rev()
        .find_map(|s| s.ai_latency_ms)
        .expect("an AI response time");
    assert!(
        (550..=900).contains(&latency),
        "the interviewer answered {latency} ms after the participant stopped"
    );
    let ai = turns(&out, Role::Ai);
    let part = turns(&out, Role::Participant);
    let next_prompt = ai.iter().find_map(|t| t.0).expect("the next prompt");
    let answer_end = part
        .iter()
        .filter_map(|t| t.1)
        .map(|(_, end)| end)
        .filter(|end| *end <= next_prompt)
        .max()
        .expect("the answer's end");
    assert_eq!(
        latency,
        next_prompt - answer_end,
        "the measure is the turn gap"
    );
}
