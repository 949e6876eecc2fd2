//! The turn log (F6): every AI and participant turn of a session with its bounds on the
//! session's media timeline (ms), its text, word count, response time and sentiment.
//!
//! [`TurnLog`] assembles turns from the media plane's events and is pure (no I/O, no clock):
//!
//! - Turn bounds come from `TurnStarted` / `TurnEnded` (voice activity for the participant,
//!   interviewer audio for the AI). A start opens a turn (`end_ms` is `None` until it ends);
//!   the end sets both bounds from the event.
//! - Text comes from final transcript lines of the same role. A line goes to the turn of its
//!   role that overlaps it most in time; else to the open turn of its role; else to the
//!   latest turn if that is of its role (a participant line, a line with no usable times, or
//!   AI text that touches AI text still waiting for its audio); else it starts a new turn. Partial lines
//!   never change the log (they are only streamed live).
//! - AI text often arrives before its audio: an AI turn made from text alone is taken over by
//!   the next AI `TurnStarted` / `TurnEnded`, so text and audio bounds land in one turn.
//! - Turns are ordered by start time and numbered from 1 (`seq`).
//! - `response_ms` of a participant turn: its start minus the end of the AI turn before it
//!   (negative when the participant barged in); `None` for AI turns and when there is no
//!   ended AI turn before it.
//! - `sentiment`: the VADER compound score of the text in [-1, 1] (lexicon method), rounded to
//!   3 decimals; `None` while the turn has no text.

use serde::{Deserialize, Serialize};

/// Longest transcript line kept (bytes); longer lines are cut at a character boundary.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Longest text of one turn (bytes); lines beyond it are dropped.
pub const MAX_TURN_BYTES: usize = 64 * 1024;
/// Most turns kept per session; events that would add more are ignored.
pub const MAX_TURNS: usize = 10_000;

/// Who speaks in a turn: the shared vocabulary's role.
pub use earshot_vocab::Role;

/// One turn as stored and served (`GET /v1/sessions/{id}/transcript`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub seq: u32,
    pub role: Role,
    pub start_ms: u64,
    /// `None` while the turn is still going on.
    pub end_ms: Option<u64>,
    pub text: String,
    pub words: u32,
    pub response_ms: Option<i64>,
    pub sentiment: Option<f64>,
}

/// What moves the log: the media plane's turn and transcript events for one session.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnInput<'a> {
    Started {
        role: Role,
        at_ms: u64,
    },
    Ended {
        role: Role,
        start_ms: u64,
        end_ms: u64,
    },
    Transcript {
        role: Role,
        text: &'a str,
        is_final: bool,
        start_ms: u64,
        end_ms: u64,
    },
}

/// Who is speaking right now (`{"type":"speaking","who":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaking {
    Ai,
    Participant,
    None,
}

impl Speaking {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaking::Ai => "ai",
            Speaking::Participant => "participant",
            Speaking::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    turn: Turn,
    /// Bounds came from TurnStarted/TurnEnded (false: made from transcript text alone).
    timed: bool,
}

/// The turn log of one session, assembled event by event.
#[derive(Debug, Clone, Default)]
pub struct TurnLog {
    slots: Vec<Slot>,
}

impl TurnLog {
    pub fn new() -> TurnLog {
        TurnLog::default()
    }

    /// Continues a stored log (after a restart of the process, or a resumed session).
    pub fn from_turns(mut turns: Vec<Turn>) -> TurnLog {
        turns.sort_by_key(|t| t.seq);
        TurnLog {
            slots: turns
                .into_iter()
                .map(|turn| Slot { turn, timed: true })
                .collect(),
        }
    }

    /// Assembles a whole log from a sequence of events (the pure form of the log).
    pub fn assemble<'a>(inputs: impl IntoIterator<Item = TurnInput<'a>>) -> Vec<Turn> {
        let mut log = TurnLog::new();
        for input in inputs {
            log.apply(input);
        }
        log.turns()
    }

    /// Every turn, in order.
    pub fn turns(&self) -> Vec<Turn> {
        self.slots.iter().map(|s| s.turn.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Who is speaking: the role of the latest-started open turn.
    pub fn speaking(&self) -> Speaking {
        self.slots
            .iter()
            .filter(|s| s.timed && s.turn.end_ms.is_none())
            .max_by_key(|s| (s.turn.start_ms, s.turn.seq))
            .map_or(Speaking::None, |s| match s.turn.role {
                Role::Ai => Speaking::Ai,
                Role::Participant => Speaking::Participant,
            })
    }

    /// Whether the interviewer is speaking (an AI turn is open), whoever else is.
    pub fn ai_speaking(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.timed && s.turn.end_ms.is_none() && s.turn.role == Role::Ai)
    }

    /// Applies one event; returns the turns whose stored form changed (to persist).
    pub fn apply(&mut self, input: TurnInput<'_>) -> Vec<Turn> {
        let before = self.turns();
        match input {
            TurnInput::Started { role, at_ms } => self.started(role, at_ms),
            TurnInput::Ended {
                role,
                start_ms,
                end_ms,
            } => self.ended(role, start_ms, end_ms.max(start_ms)),
            TurnInput::Transcript {
                role,
                text,
                is_final: true,
                start_ms,
                end_ms,
            } => self.transcript(role, text, start_ms, end_ms),
            TurnInput::Transcript { .. } => {}
        }
        self.normalize();
        self.slots
            .iter()
            .filter(|s| before.get(s.turn.seq as usize - 1) != Some(&s.turn))
            .map(|s| s.turn.clone())
            .collect()
    }

    fn full(&self) -> bool {
        self.slots.len() >= MAX_TURNS
    }

    /// The index of the open (timed, not ended) turn of `role`, the latest if several.
    fn open(&self, role: Role) -> Option<usize> {
        self.slots
            .iter()
            .rposition(|s| s.turn.role == role && s.timed && s.turn.end_ms.is_none())
    }

    /// An AI turn made from text alone that the next AI audio takes over: the latest AI turn,
    /// if it is untimed.
    fn adoptable(&self, role: Role) -> Option<usize> {
        if role != Role::Ai {
            return None;
        }
        self.slots
            .iter()
            .rposition(|s| s.turn.role == role)
            .filter(|&i| !self.slots[i].timed)
    }

    fn push(&mut self, turn: Turn, timed: bool) {
        if !self.full() {
            self.slots.push(Slot { turn, timed });
        }
    }

    fn started(&mut self, role: Role, at_ms: u64) {
        if self.open(role).is_some() {
            return; // a repeated start: the turn is already open
        }
        if let Some(i) = self.adoptable(role) {
            let slot = &mut self.slots[i];
            slot.timed = true;
            slot.turn.start_ms = at_ms;
            slot.turn.end_ms = None;
            return;
        }
        self.push(new_turn(role, at_ms, None), true);
    }

    fn ended(&mut self, role: Role, start_ms: u64, end_ms: u64) {
        if let Some(i) = self.open(role).or_else(|| self.adoptable(role)) {
            let slot = &mut self.slots[i];
            slot.timed = true;
            slot.turn.start_ms = start_ms;
            slot.turn.end_ms = Some(end_ms);
            return;
        }
        self.push(new_turn(role, start_ms, Some(end_ms)), true);
    }

    fn transcript(&mut self, role: Role, text: &str, start_ms: u64, end_ms: u64) {
        let text = clip(text.trim(), MAX_LINE_BYTES);
        if text.is_empty() {
            return;
        }
        let span = (end_ms >= start_ms && end_ms > 0).then_some((start_ms, end_ms));
        let target = span
            .and_then(|span| self.best_overlap(role, span))
            .or_else(|| self.open(role))
            .or_else(|| {
                let last = self.slots.len().checked_sub(1)?;
                let slot = &self.slots[last];
                // AI text waiting for its audio takes the lines that touch it in time.
                let joins = role == Role::Participant
                    || span.is_none()
                    || (!slot.timed && span.is_some_and(|(s, _)| Some(s) <= slot.turn.end_ms));
                (slot.turn.role == role && joins).then_some(last)
            });
        match target {
            Some(i) => append_text(&mut self.slots[i].turn, text),
            None => {
                let at = span.map_or_else(|| self.latest_ms(), |(s, _)| s);
                let end = span.map_or(at, |(_, e)| e);
                let mut turn = new_turn(role, at, Some(end));
                append_text(&mut turn, text);
                self.push(turn, false);
            }
        }
    }

    /// The turn of `role` that overlaps `(start, end)` most (an open turn reaches to the end
    /// of time); a zero-length line must lie inside the turn.
    fn best_overlap(&self, role: Role, (start, end): (u64, u64)) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.turn.role == role)
            .filter_map(|(i, s)| {
                let t_end = s.turn.end_ms.unwrap_or(u64::MAX);
                let overlap = if start == end {
                    (s.turn.start_ms <= start && start < t_end).then_some(0)
                } else {
                    let o = end.min(t_end).saturating_sub(start.max(s.turn.start_ms));
                    (o > 0).then_some(o)
                };
                overlap.map(|o| (o, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// The latest time the log knows of (for a line without usable times).
    fn latest_ms(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.turn.end_ms.unwrap_or(s.turn.start_ms))
            .max()
            .unwrap_or(0)
    }

    /// Orders by start, renumbers, recomputes response times.
    fn normalize(&mut self) {
        self.slots.sort_by_key(|s| s.turn.start_ms);
        let mut last_ai_end: Option<Option<u64>> = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let t = &mut slot.turn;
            t.seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
            match t.role {
                Role::Ai => {
                    t.response_ms = None;
                    last_ai_end = Some(t.end_ms);
                }
                Role::Participant => {
                    t.response_ms = last_ai_end.flatten().map(|end| {
                        i64::try_from(t.start_ms)
                            .unwrap_or(i64::MAX)
                            .saturating_sub(i64::try_from(end).unwrap_or(i64::MAX))
                    });
                }
            }
        }
    }
}

impl Turn {
    /// The stored form.
    pub fn to_row(&self) -> crate::store::TurnRow {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        crate::store::TurnRow {
            seq: i64::from(self.seq),
            role: self.role,
            start_ms: ms(self.start_ms),
            end_ms: self.end_ms.map(ms),
            text: self.text.clone(),
            words: i64::from(self.words),
            response_ms: self.response_ms,
            sentiment: self.sentiment,
        }
    }

    /// From the stored form; `None` for a row this version cannot read.
    pub fn from_row(r: crate::store::TurnRow) -> Option<Turn> {
        let ms = |v: i64| u64::try_from(v).unwrap_or(0);
        Some(Turn {
            seq: u32::try_from(r.seq).ok()?,
            role: r.role,
            start_ms: ms(r.start_ms),
            end_ms: r.end_ms.map(ms),
            text: r.text,
            words: u32::try_from(r.words).unwrap_or(0),
            response_ms: r.response_ms,
            sentiment: r.sentiment,
        })
    }
}

fn new_turn(role: Role, start_ms: u64, end_ms: Option<u64>) -> Turn {
    Turn {
        seq: 0,
        role,
        start_ms,
        end_ms,
        text: String::new(),
        words: 0,
        response_ms: None,
        sentiment: None,
    }
}

fn append_text(turn: &mut Turn, line: &str) {
    if turn.text.len() + 1 + line.len() > MAX_TURN_BYTES {
        tracing::warn!(
            seq = turn.seq,
            "turn text reached {MAX_TURN_BYTES} bytes; line dropped"
        );
        return;
    }
    if !turn.text.is_empty() {
        turn.text.push(' ');
    }
    turn.text.push_str(line);
    turn.words = word_count(&turn.text);
    turn.sentiment = sentiment(&turn.text);
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Words: whitespace-separated tokens that contain a letter or digit.
pub fn word_count(text: &str) -> u32 {
    let n = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// VADER compound score in [-1, 1], rounded to 3 decimals; `None` for text with no words.
pub fn sentiment(text: &str) -> Option<f64> {
    if word_count(text) == 0 {
        return None;
    }
    // The analyzer is third-party code fed with agent text: a panic must not take the
    // controller down with it.
    let score = std::panic::catch_unwind(|| {
        let analyzer = vader_sentiment::SentimentIntensityAnalyzer::new();
        analyzer
            .polarity_scores(text)
            .get("compound")
            .copied()
            .unwrap_or(0.0)
    })
    .ok()?;
    score
        .is_finite()
        .then(|| (score.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests;
