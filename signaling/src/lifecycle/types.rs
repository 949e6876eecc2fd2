//! Data types of the session lifecycle: the persisted record, its config, events, effects.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Unix time in milliseconds. Serialized as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// `self` plus `secs` seconds (saturating).
    pub fn plus_secs(self, secs: u64) -> Millis {
        let ms = i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, never negative (a clock that steps back counts 0).
    pub fn since(self, earlier: Millis) -> i64 {
        self.0.saturating_sub(earlier.0).max(0)
    }
}

/// All lifecycle durations. `#[serde(default)]`: any field may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Pauses allowed per session (button, tab close and media loss all count; a pause
    /// caused by a restart of the server does not).
    pub pause_limit: u32,
    /// A paused session emits one resume prompt this long after the pause began.
    pub resume_prompt_secs: u64,
    /// A pause this long abandons the session (`pause_expired`).
    pub pause_expiry_secs: u64,
    /// Media gone this long while in progress counts as a disconnect (a pause).
    pub disconnect_grace_secs: u64,
    /// In progress with no activity this long ends the session (`stuck`).
    pub stuck_secs: u64,
    /// Created (the invite opened) but never consented this long: the session ends as
    /// abandoned (`never_started`, drop-off `never_started`).
    pub never_started_secs: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            pause_limit: 3,
            resume_prompt_secs: 120,
            pause_expiry_secs: 1800,
            disconnect_grace_secs: 10,
            stuck_secs: 1800,
            never_started_secs: 7 * 24 * 3600,
        }
    }
}

/// A config value that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lifecycle.{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl LifecycleConfig {
    /// Reject values that would end sessions immediately. A `resume_prompt_secs` at or beyond
    /// `pause_expiry_secs` is allowed: it means "never prompt".
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("pause_expiry_secs", self.pause_expiry_secs),
            ("stuck_secs", self.stuck_secs),
            ("never_started_secs", self.never_started_secs),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    field,
                    message: "must be at least 1 second".into(),
                });
            }
        }
        if self.disconnect_grace_secs >= self.stuck_secs {
            return Err(ConfigError {
                field: "disconnect_grace_secs",
                message: format!(
                    "must be shorter than stuck_secs ({} s), got {} s",
                    self.stuck_secs, self.disconnect_grace_secs
                ),
            });
        }
        Ok(())
    }
}

/// Session state: the one definition lives in the shared vocabulary.
pub use earshot_vocab::State;

/// Why a session ended. Serialized snake_case: `"pause_expired"`, `{"technical":"detail"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The interviewer said the interview is finished.
    Completed,
    /// Consent declined (drop-off point `"consent"`).
    Declined,
    PauseExpired,
    /// Disconnected (tab closed / media lost) with no pauses left.
    PauseLimit,
    /// No activity in progress for `stuck_secs` (state completed if a turn was captured).
    Stuck,
    /// Admin ended, restarted or marked (complete / abandoned) the session (the state and
    /// the transition's cause tell which).
    Admin,
    /// The participant ended the interview (WHIP DELETE of their current peer resource: the
    /// page's "End interview" button, or a bot hanging up).
    ParticipantEnded,
    /// Opened but never consented for `never_started_secs`.
    NeverStarted,
    Technical(String),
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Declined => "declined",
            EndReason::PauseExpired => "pause_expired",
            EndReason::PauseLimit => "pause_limit",
            EndReason::Stuck => "stuck",
            EndReason::Admin => "admin",
            EndReason::ParticipantEnded => "participant_ended",
            EndReason::NeverStarted => "never_started",
            EndReason::Technical(_) => "technical",
        }
    }

    /// The detail of a technical failure.
    pub fn detail(&self) -> Option<&str> {
        match self {
            EndReason::Technical(detail) => Some(detail),
            _ => None,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Technical(detail) => write!(f, "technical: {detail}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// What started a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// The participant pressed Pause.
    Button,
    /// The page signalled it was closed or navigated away.
    TabClosed,
    /// Media stopped for longer than the disconnect grace.
    MediaLost,
    /// The server process restarted while the session was in progress: its media died with
    /// the process. The server's fault, not the participant's: it does not count against
    /// `pause_limit` and never ends the session.
    ServerRestart,
}

impl PauseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::Button => "button",
            PauseCause::TabClosed => "tab_closed",
            PauseCause::MediaLost => "media_lost",
            PauseCause::ServerRestart => "server_restart",
        }
    }

    /// Whether a pause of this cause uses one of the participant's `pause_limit` pauses.
    pub fn counts_against_limit(self) -> bool {
        self != PauseCause::ServerRestart
    }
}

/// One pause, for marking recordings and for the pause timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// When the pause began. For a media-loss pause: when the media was lost (not when the
    /// grace ran out), so the dead air belongs to the pause.
    pub started_at: Millis,
    /// When it was resumed, or when the session ended during it. `None` while paused.
    pub ended_at: Option<Millis>,
    pub cause: PauseCause,
    /// When the resume prompt was emitted during this pause (at most once per pause).
    pub resume_prompt_at: Option<Millis>,
}

/// One state change, kept in [`Lifecycle::history`] and announced by [`Effect::Notify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// When it happened. Timer-driven changes carry the deadline, even if `Tick` came later.
    pub at: Millis,
    pub from: State,
    pub to: State,
    /// Human-readable cause, e.g. "pause button", "pause expired after 1800 s".
    pub cause: String,
}

/// The full persisted lifecycle record of one session. Store it as JSON; every timer is an
/// absolute time, so a rebuilt record keeps counting from the original pause or loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: State,
    /// The rules this session runs under, fixed when it was created.
    #[serde(default)]
    pub config: LifecycleConfig,
    pub created_at: Millis,
    /// Set when consent was accepted; media may start from then on.
    pub consented_at: Option<Millis>,
    /// First time media started (the interview began).
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub end_reason: Option<EndReason>,
    /// Last progress point reported by the caller (opaque, e.g. the current question id);
    /// the drop-off point once the session ended; `"consent"` if consent was declined.
    pub drop_off: Option<String>,
    /// Every pause in order (see [`Lifecycle::pause_count`] for the ones that count).
    pub pauses: Vec<Pause>,
    /// Grace timer: when media was lost while in progress, `None` when not armed.
    pub media_lost_at: Option<Millis>,
    /// Last sign of life while in progress (start, resume, media, progress, turn, activity).
    pub last_activity: Option<Millis>,
    /// Turns captured so far (decides completed vs abandoned for a stuck session).
    pub turns_captured: u32,
    /// Active (in-progress) milliseconds of finished stretches; see [`Lifecycle::active_duration_ms`].
    pub active_ms: i64,
    /// Start of the current in-progress stretch, `None` unless in progress.
    pub active_since: Option<Millis>,
    /// Every state change with its time and cause.
    pub history: Vec<StateChange>,
}

impl Lifecycle {
    /// A new session in `created`: invite opened, consent page shown.
    pub fn new(config: LifecycleConfig, now: Millis) -> Lifecycle {
        Lifecycle {
            state: State::Created,
            config,
            created_at: now,
            consented_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            drop_off: None,
            pauses: Vec::new(),
            media_lost_at: None,
            last_activity: None,
            turns_captured: 0,
            active_ms: 0,
            active_since: None,
            history: Vec::new(),
        }
    }

    pub fn consented(&self) -> bool {
        self.consented_at.is_some()
    }

    pub fn is_ended(&self) -> bool {
        self.state.is_terminal()
    }

    /// The participant's pauses: those that count against `pause_limit` (a server restart's
    /// pause is listed in `pauses` but not counted).
    pub fn pause_count(&self) -> u32 {
        let counted = self
            .pauses
            .iter()
            .filter(|p| p.cause.counts_against_limit())
            .count();
        u32::try_from(counted).unwrap_or(u32::MAX)
    }

    pub fn pauses_remaining(&self) -> u32 {
        self.config.pause_limit.saturating_sub(self.pause_count())
    }

    /// The pause in force, if paused.
    pub fn current_pause(&self) -> Option<&Pause> {
        if self.state == State::Paused {
            self.pauses.last()
        } else {
            None
        }
    }

    /// When the pause in force began.
    pub fn paused_at(&self) -> Option<Millis> {
        self.current_pause().map(|p| p.started_at)
    }

    /// Time spent in progress, excluding pauses, up to `now` (or the end).
    pub fn active_duration_ms(&self, now: Millis) -> i64 {
        self.active_ms + self.active_since.map_or(0, |since| now.since(since))
    }

    /// Time from the first start to `now` (or the end), pauses included. `None` if never started.
    pub fn total_duration_ms(&self, now: Millis) -> Option<i64> {
        let start = self.started_at?;
        Some(self.ended_at.unwrap_or(now).since(start))
    }

    /// Time spent paused up to `now` (or the end).
    pub fn paused_duration_ms(&self, now: Millis) -> i64 {
        let end = self.ended_at.unwrap_or(now);
        self.pauses
            .iter()
            .map(|p| p.ended_at.unwrap_or(end).since(p.started_at))
            .sum()
    }
}

/// Something that happened to a session. Serialized `{"type":"progress","point":"q3"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ConsentAccepted,
    ConsentDeclined,
    /// The participant's peer connected and audio is flowing (first start or a return).
    MediaStarted,
    /// Audio stopped arriving; arms the disconnect grace timer.
    MediaLost,
    /// Audio flows again on the same peer; cancels the grace timer.
    MediaRestored,
    /// The Pause button.
    PauseRequested,
    /// The server process restarted: a session that was in progress has lost its media with
    /// the old process (crash recovery). Pauses it without using a participant's pause.
    ServerRestarted,
    /// The page signalled the tab was closed or navigated away.
    TabClosed,
    /// The Resume button.
    ResumeRequested,
    /// The interview reached `point` (opaque to the machine, e.g. a question id).
    Progress {
        point: String,
    },
    /// A turn was captured in the transcript.
    TurnCaptured,
    /// Any other sign of life while in progress (e.g. voice activity); postpones `stuck`.
    Activity,
    /// The interviewer says the interview is finished.
    InterviewFinished,
    /// The participant ended the interview: WHIP DELETE of their current peer resource.
    ParticipantEnded,
    AdminEnd,
    /// Also accepted by an ended session (not one already restarted): the old session keeps
    /// its data and becomes `restarted`, a new one is issued for the same invite.
    AdminRestart,
    /// Admin: a session stuck in progress (no activity for [`MARK_STUCK_AFTER_SECS`]) with
    /// a captured turn ends as `completed`.
    MarkComplete,
    /// Admin: a session stuck in progress ends as `abandoned`.
    MarkAbandoned,
    /// E.g. the AI agent is unreachable.
    TechnicalFailure {
        detail: String,
    },
    /// Fire every timer due at `now`. Early ticks do nothing.
    Tick,
}

impl Event {
    /// Every event kind once, with placeholder payloads (for tables and docs).
    pub fn samples() -> Vec<Event> {
        vec![
            Event::ConsentAccepted,
            Event::ConsentDeclined,
            Event::MediaStarted,
            Event::MediaLost,
            Event::MediaRestored,
            Event::PauseRequested,
            Event::ServerRestarted,
            Event::TabClosed,
            Event::ResumeRequested,
            Event::Progress { point: "q1".into() },
            Event::TurnCaptured,
            Event::Activity,
            Event::InterviewFinished,
            Event::ParticipantEnded,
            Event::AdminEnd,
            Event::AdminRestart,
            Event::MarkComplete,
            Event::MarkAbandoned,
            Event::TechnicalFailure {
                detail: "agent unreachable".into(),
            },
            Event::Tick,
        ]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Event::ConsentAccepted => "consent_accepted",
            Event::ConsentDeclined => "consent_declined",
            Event::MediaStarted => "media_started",
            Event::MediaLost => "media_lost",
            Event::MediaRestored => "media_restored",
            Event::PauseRequested => "pause_requested",
            Event::ServerRestarted => "server_restarted",
            Event::TabClosed => "tab_closed",
            Event::ResumeRequested => "resume_requested",
            Event::Progress { .. } => "progress",
            Event::TurnCaptured => "turn_captured",
            Event::Activity => "activity",
            Event::InterviewFinished => "interview_finished",
            Event::ParticipantEnded => "participant_ended",
            Event::AdminEnd => "admin_end",
            Event::AdminRestart => "admin_restart",
            Event::MarkComplete => "mark_complete",
            Event::MarkAbandoned => "mark_abandoned",
            Event::TechnicalFailure { .. } => "technical_failure",
            Event::Tick => "tick",
        }
    }
}

/// What the caller must do after a transition, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// First start: start the interviewer and the recordings.
    StartMedia,
    /// Pause the interviewer where it is and mark a pause in the recordings.
    PauseMedia,
    /// Resume the interviewer at `point` (the last progress point) in the same session.
    ResumeMedia { point: Option<String> },
    /// The session ended: stop the interviewer, close the participant's peer.
    StopMedia,
    /// Finalize the recordings (only for sessions that started).
    FinalizeRecordings,
    /// Ask the paused participant whether they want to resume (once per pause).
    EmitResumePrompt,
    /// Issue a new session for the same invite (admin restart).
    IssueRestart,
    /// Announce a state change (webhooks, dashboards); also kept in `history`.
    Notify(StateChange),
}

/// The outcome of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new record to persist (may equal the old one, e.g. an early `Tick`).
    pub lifecycle: Lifecycle,
    pub effects: Vec<Effect>,
    /// `(before, after)` if the state changed (a late `Tick` may cross several states).
    pub changed_state: Option<(State, State)>,
    /// What happened, human-readable; several causes are joined with "; ".
    pub cause: String,
}

/// Stable refusal codes.
pub mod codes {
    /// The session is in a terminal state.
    pub const SESSION_ENDED: &str = "session_ended";
    /// The event does not apply in this state (benign for media-plane signals).
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// A requested pause when all pauses are used.
    pub const PAUSE_LIMIT_REACHED: &str = "pause_limit_reached";
    /// Media started before consent was accepted.
    pub const CONSENT_REQUIRED: &str = "consent_required";
    /// Mark complete / abandoned on a session that is not stuck in progress.
    pub const NOT_STUCK: &str = "not_stuck";
    /// Mark complete on a stuck session without a captured turn.
    pub const NO_TRANSCRIPT: &str = "no_transcript";
}

/// How long an in-progress session must have shown no activity before an admin may mark it
/// complete or abandoned (the automatic `stuck_secs` end comes later on its own).
pub const MARK_STUCK_AFTER_SECS: u64 = 60;

/// A refused event: nothing changed; the stored record stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refused {
    /// Stable snake_case code, one of [`codes`].
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    pub fn new(code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }
}
