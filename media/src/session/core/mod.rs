//! The sans-IO core of one session's media, in the style of str0m: inputs in with the time
//! (`handle(input, now)`), outputs out ([`SessionCore::poll_output`]). It holds the session's
//! state and does its computing — reordering, loss recovery, decoding, denoising, voice
//! activity, the interviewer's turn-taking, pacing the agent's audio, encoding the AI audio —
//! and never touches a socket, a file, a channel or the clock. The async shell
//! ([`super::SessionTask`]) moves the I/O: it feeds packets, ticks, commands and agent messages
//! in, and carries out what comes out (AI packets to send to the participant and every
//! listener, samples to record, events, messages to the agent).
//!
//! The timeline is 48 kHz samples of *active* time: it runs only while a peer is connected and
//! the lifecycle does not hold the session, so recordings hold no paused time.
//!
//! Paths through it: `participant` (packets in), `ai` (the 20 ms tick out), `agent` (the
//! external agent's side); `listen` is what silent listeners hear and `signals` the live
//! quality signals.

mod agent;
mod ai;
mod listen;
mod participant;
mod signals;
#[cfg(test)]
mod tests;

use crate::units::samples_to_ms;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::agent::bridge::FromAgent;
use crate::codec::{OpusEncoder, OpusSettings, ParticipantDecoder};
use crate::denoise::Denoiser;
use crate::interviewer::Interviewer;
use crate::jitter::JitterBuffer;
use crate::peer::RtpAudioPacket;
use crate::request::{AgentRequest, LoadedPrompt};
use crate::vad::{VadConfig, VoiceActivity};
use earshot_vocab::Role;
use earshot_vocab::media_port::MediaEvent;

use super::timeline::Timeline;
pub(crate) use agent::AgentSide;
use ai::Playout;
use listen::ListenerMix;

pub use crate::units::{FRAME, FRAME_DURATION};
/// How long a gap in the participant's packets is held open for a late packet: at least
/// `REORDER_WAIT`, more while the network reorders (adaptive, see `jitter`), at most
/// `MAX_REORDER_WAIT`. Only a gap waits: in-order packets pass at once.
const REORDER_WAIT: Duration = Duration::from_millis(30);
const MAX_REORDER_WAIT: Duration = Duration::from_millis(120);
/// Lead-in before the interviewer's first words, so the participant's playout has started.
const LEAD_IN_SAMPLES: u64 = crate::units::ms_to_samples(500);
/// No participant packet for this long on a connected peer: the media stopped.
const AUDIO_GAP: Duration = Duration::from_secs(1);

/// Something that happened to the session, with the time it is handled at.
/// Receiver reports (one read every 2 s) the FEC decision looks back over.
const LOSS_WINDOW: usize = 5;

#[derive(Debug)]

pub(crate) enum Input {
    /// A new participant peer replaces the current one (a reconnect or a resume); it is not
    /// connected yet. The newest agent request (resume context) comes with it.
    PeerAttached { agent: Option<AgentRequest> },
    /// The participant's peer is up (DTLS-SRTP): AI audio can be sent.
    PeerConnected,
    /// The participant's peer failed or closed (reported to the lifecycle as a disconnect).
    PeerGone,
    /// The peer was hung up on the lifecycle's word (the session ends or stops its media).
    HangUp,
    /// One RTP packet from the participant.
    Audio(RtpAudioPacket),
    /// The 20 ms clock, with the time this tick was scheduled for.
    Tick { scheduled: Instant },
    /// The lifecycle paused the session: hold the interview (the peer stays up).
    Pause,
    /// The lifecycle resumed it; a fresh agent request (resume context) replaces the old one.
    Resume { agent: Option<AgentRequest> },
    /// A message from the agent bridge; `None`: the bridge task ended.
    Agent(Option<FromAgent>),
    /// How many silent listeners (receive-only peers) the session has now.
    Listeners(usize),
}

/// Which recorded track samples belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordTrack {
    Participant,
    Ai,
}

/// What the agent bridge is to do.
#[derive(Debug)]
pub(crate) enum ToAgent {
    /// Dial the agent (a bridge runs from now on).
    Dial(AgentRequest),
    /// End the agent's stream; `dropped_samples` of its audio were never played.
    Stop { dropped_samples: u64 },
    /// 20 ms of the participant's denoised audio at `at` on the timeline.
    Media { pcm: Vec<i16>, at: u64 },
    /// The audio before this mark has been played.
    EchoMark(String),
}

/// What the shell is to do, in order.
#[derive(Debug)]
pub(crate) enum Output {
    Event(MediaEvent),
    /// 20 ms of AI audio, Opus: to the participant.
    SendAi(Bytes),
    /// 20 ms of the session (participant and AI mixed, [`listen::LISTEN_DELAY`] behind), Opus:
    /// to every listener.
    SendListeners(Bytes),
    /// Samples for a track at a timeline position.
    Record {
        track: RecordTrack,
        at: u64,
        pcm: Vec<i16>,
    },
    Agent(ToAgent),
}

/// The participant's connection as the session sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No peer (hung up, failed, or before the first one).
    Detached,
    /// A peer is attached and not connected yet.
    Connecting,
    /// Connected; `audio_stopped`: no packet for [`AUDIO_GAP`] (reported as a disconnect).
    Connected { audio_stopped: bool },
}

/// Whether the lifecycle lets the interview run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interview {
    Running,
    /// Paused by the lifecycle: nothing is played or recorded.
    Held,
}

/// What a session's media is configured with.
pub(crate) struct CoreParams {
    pub session_id: String,
    pub prompts: Vec<LoadedPrompt>,
    pub silence_ms: u32,
    pub start_at: usize,
    pub noise_suppression: bool,
    /// Samples already recorded (a session taken over after a restart continues after them).
    pub timeline_base: u64,
    pub recording: bool,
    pub opus: OpusSettings,
    /// `Some`: an external agent leads the interview instead of the built-in interviewer.
    pub agent: Option<AgentRequest>,
}

#[derive(Debug, thiserror::Error)]
#[error("opus: {0}")]
pub(crate) struct CoreError(String);

/// One session's media state and rules; see the module doc.
pub(crate) struct SessionCore {
    id: String,
    prompts: Vec<LoadedPrompt>,
    timeline: Timeline,
    jitter: JitterBuffer,
    decoder: ParticipantDecoder,
    denoiser: Denoiser,
    vad: VoiceActivity,
    /// (first RTP timestamp, its timeline position) of the current peer's stream.
    rtp_anchor: Option<(u32, u64)>,
    interviewer: Interviewer,
    playout: Option<Playout>,
    /// Where the next AI frame goes on the timeline.
    ai_pos: u64,
    /// The AI turn being played (its start), and where its audio ends so far.
    ai_turn: Option<u64>,
    ai_audio_end: u64,
    /// `Some` for an agent-led session.
    agent: Option<AgentSide>,
    encoder: OpusEncoder,
    /// The loss fractions the participant reported lately (newest last): the encoder's FEC
    /// prepares for the worst of them.
    reported_loss: VecDeque<f64>,
    recording: bool,
    /// The participant's turn in progress (its start).
    turn_start: Option<u64>,
    /// The participant's last finished turn (start, end).
    last_turn: Option<(u64, u64)>,
    link: Link,
    interview: Interview,
    /// A peer of this session's media has connected: there is media to keep.
    ever_connected: bool,
    last_audio: Option<Instant>,
    /// The encoded 20 ms of silence, reused while the AI is quiet.
    silence_packet: Option<Bytes>,
    opus: OpusSettings,
    /// The listeners' mix; `Some` while the session has listeners.
    listen: Option<ListenerMix>,
    /// Counters behind the live quality signals.
    signals: signals::SignalMeter,
    outputs: VecDeque<Output>,
}

impl SessionCore {
    pub(crate) fn new(p: CoreParams, now: Instant) -> Result<Self, CoreError> {
        let encoder = OpusEncoder::new(p.opus).map_err(|e| CoreError(e.to_string()))?;
        let decoder = ParticipantDecoder::new().map_err(|e| CoreError(e.to_string()))?;
        let mut timeline = Timeline::new(p.timeline_base, now);
        timeline.pause(now);
        Ok(Self {
            interviewer: Interviewer::new(
                p.prompts.len(),
                p.silence_ms,
                p.start_at,
                LEAD_IN_SAMPLES,
            ),
            id: p.session_id,
            prompts: p.prompts,
            timeline,
            jitter: JitterBuffer::adaptive(REORDER_WAIT, MAX_REORDER_WAIT),
            decoder,
            denoiser: Denoiser::new(p.noise_suppression),
            vad: VoiceActivity::new(VadConfig::default()),
            rtp_anchor: None,
            playout: None,
            ai_pos: 0,
            ai_turn: None,
            ai_audio_end: 0,
            agent: p.agent.map(AgentSide::new),
            encoder,
            reported_loss: VecDeque::with_capacity(LOSS_WINDOW),
            recording: p.recording,
            turn_start: None,
            last_turn: None,
            link: Link::Connecting,
            interview: Interview::Running,
            ever_connected: false,
            last_audio: None,
            silence_packet: None,
            opus: p.opus,
            listen: None,
            signals: signals::SignalMeter::default(),
            outputs: VecDeque::new(),
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The next thing for the shell to do.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether a peer of this session has ever connected (else nothing was recorded).
    /// The participant's side reports this share (0-1) of the AI audio's packets lost: the
    /// encoder's FEC prepares for the worst of the last few reports (about 10 s).
    pub(crate) fn reported_loss(&mut self, fraction: f64) {
        if self.reported_loss.len() == LOSS_WINDOW {
            self.reported_loss.pop_front();
        }
        self.reported_loss.push_back(fraction.clamp(0.0, 1.0));
        let worst = self.reported_loss.iter().copied().fold(0.0, f64::max);
        let before = self.encoder.prepared_loss();
        let now = self.encoder.set_reported_loss((worst * 100.0).ceil() as u8);
        if now != before {
            tracing::debug!(session = %self.id, reported = worst, fec_for_pct = now, "FEC follows the reported loss");
        }
    }

    /// Whether the AI audio is sent with FEC (the participant reported loss lately).
    pub(crate) fn sends_fec(&self) -> bool {
        self.encoder.prepared_loss() > 0
    }

    pub(crate) fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// Whether the timeline runs (a connected peer, not held): AI ticks are due.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.link, Link::Connected { .. }) && self.interview == Interview::Running
    }

    /// Receive and loss-recovery statistics of the participant's audio, for the log.
    pub(crate) fn log_statistics(&self) {
        let (j, d) = (self.jitter.stats(), self.decoder.stats());
        tracing::info!(
            session = %self.id,
            received = j.received, lost = j.lost, late = j.late, duplicate = j.duplicate,
            reordered = j.reordered, resets = j.resets, fec = d.fec, plc = d.plc, corrupt = d.corrupt,
            "participant audio statistics"
        );
    }

    pub(crate) fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::PeerAttached { agent } => {
                self.detach(now);
                self.attach(agent, now);
            }
            Input::PeerConnected => {
                self.link = Link::Connected {
                    audio_stopped: false,
                };
                self.ever_connected = true;
                self.last_audio = Some(now);
                self.update_timeline(now);
                self.emit(MediaEvent::Connected {
                    session_id: self.id.clone(),
                });
                self.maybe_start_agent();
            }
            Input::PeerGone => {
                let was_attached = self.link != Link::Detached;
                self.detach(now);
                if was_attached && self.ever_connected {
                    self.emit(MediaEvent::Disconnected {
                        session_id: self.id.clone(),
                    });
                }
            }
            Input::HangUp => self.detach(now),
            Input::Audio(pkt) => self.on_audio(pkt, now),
            Input::Tick { scheduled } => self.on_tick(scheduled, now),
            Input::Pause => {
                self.interview = Interview::Held;
                self.playout = None;
                self.update_timeline(now);
                self.end_turn(self.timeline.position(now));
                self.stop_agent();
            }
            Input::Resume { agent } => {
                if self.interview == Interview::Held {
                    self.interview = Interview::Running;
                    if let Some(side) = &mut self.agent {
                        side.failed = false;
                        if let Some(request) = agent {
                            side.request = request;
                        }
                    }
                    self.resume_interview(now);
                }
            }
            Input::Agent(msg) => self.on_agent_message(msg, now),
            Input::Listeners(0) => self.listen = None,
            Input::Listeners(_) if self.listen.is_none() => {
                match ListenerMix::new(self.timeline.position(now), self.opus) {
                    Ok(mix) => self.listen = Some(mix),
                    Err(e) => {
                        tracing::warn!(session = %self.id, error = %e, "no listener mix")
                    }
                }
            }
            Input::Listeners(_) => {}
        }
    }

    /// The session ends: the agent's stream is stopped and what was playing is cut off.
    pub(crate) fn end(&mut self, now: Instant) {
        self.stop_agent();
        self.detach(now);
    }

    fn emit(&mut self, ev: MediaEvent) {
        self.outputs.push_back(Output::Event(ev));
    }

    /// Samples of a track at a timeline position: recorded (if recording) and heard by the
    /// listeners.
    fn record(&mut self, track: RecordTrack, at: u64, pcm: &[i16]) {
        if let Some(mix) = &mut self.listen {
            mix.add(at, pcm);
        }
        if self.recording {
            self.outputs.push_back(Output::Record {
                track,
                at,
                pcm: pcm.to_vec(),
            });
        }
    }

    fn on_audio(&mut self, pkt: RtpAudioPacket, now: Instant) {
        self.last_audio = Some(pkt.arrival);
        if let Link::Connected {
            audio_stopped: true,
        } = self.link
        {
            self.link = Link::Connected {
                audio_stopped: false,
            };
            self.emit(MediaEvent::Restored {
                session_id: self.id.clone(),
            });
        }
        if self.timeline.paused_at.is_none() {
            self.signals.packet(pkt.timestamp, pkt.arrival);
            self.jitter
                .push(pkt.sequence, pkt.timestamp, pkt.payload, pkt.arrival);
            self.drain_jitter(now);
        }
    }

    fn on_tick(&mut self, scheduled: Instant, now: Instant) {
        if let Link::Connected {
            audio_stopped: false,
        } = self.link
            && self
                .last_audio
                .is_some_and(|t| now.saturating_duration_since(t) > AUDIO_GAP)
        {
            self.link = Link::Connected {
                audio_stopped: true,
            };
            self.emit(MediaEvent::Disconnected {
                session_id: self.id.clone(),
            });
        }
        self.drain_jitter(now);
        if self.is_live() {
            // AI frames are placed at the tick's scheduled time: a tick that runs late (a busy
            // machine) must not push the following frames ahead of where they are sent on the
            // timeline.
            let at = scheduled.max(self.timeline.last_resume);
            self.ai_tick(at, now);
            self.signal_tick(now);
        }
    }

    fn attach(&mut self, agent: Option<AgentRequest>, now: Instant) {
        if let Some(side) = &mut self.agent {
            if let Some(request) = agent {
                side.request = request;
            }
            side.failed = false;
        } else if agent.is_some() {
            tracing::warn!(session = %self.id, "agent request on a session of the built-in interviewer ignored");
        }
        self.link = Link::Connecting;
        // A returning participant hears the cut-off question again (from the timeline point
        // where the new peer connects).
        self.playout = None;
        let pos = self.timeline.position(now);
        self.interviewer.resume(pos, LEAD_IN_SAMPLES);
        // A new peer has its own RTP clock and sequence numbers.
        self.restart_participant_stream();
    }

    /// The timeline runs only while a peer is connected and the session is not held.
    fn update_timeline(&mut self, now: Instant) {
        if self.is_live() {
            self.timeline.resume(now);
        } else {
            self.timeline.pause(now);
        }
    }

    /// The participant's packets are placed anew from here: after a hold the RTP stream went on
    /// while the timeline stood still, so the old anchor would put new audio after the pause,
    /// and the sequence gap would be "concealed" as if it were loss.
    fn restart_participant_stream(&mut self) {
        self.rtp_anchor = None;
        self.signals.restart_stream();
        self.jitter = JitterBuffer::adaptive(REORDER_WAIT, MAX_REORDER_WAIT);
        if let Ok(d) = ParticipantDecoder::new() {
            self.decoder = d;
        }
    }

    fn resume_interview(&mut self, now: Instant) {
        self.update_timeline(now);
        self.restart_participant_stream();
        self.playout = None;
        let pos = self.timeline.position(now);
        self.interviewer.resume(pos, LEAD_IN_SAMPLES);
        self.maybe_start_agent();
    }

    /// The peer goes (the shell closes it): the timeline stops, the participant's turn ends, and what was playing is
    /// cut off (a prompt is asked again; agent audio still queued plays when a peer is back, as
    /// a new turn).
    fn detach(&mut self, now: Instant) {
        self.link = Link::Detached;
        self.timeline.pause(now);
        self.end_turn(self.timeline.position(now));
        self.end_ai_turn();
    }

    /// Ends the participant's turn in progress at `end`.
    fn end_turn(&mut self, end: u64) {
        if let Some(start) = self.turn_start.take() {
            self.last_turn = Some((start, end));
            self.emit(MediaEvent::TurnEnded {
                session_id: self.id.clone(),
                role: Role::Participant,
                start_ms: samples_to_ms(start),
                end_ms: samples_to_ms(end),
            });
        }
    }
}
