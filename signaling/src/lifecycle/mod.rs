//! Session lifecycle (F4, F8) as a pure state machine: `(record, event, now) -> (record, effects)`.
//!
//! No I/O and no clock reads: the caller passes `now`, persists [`Lifecycle`] (JSON), applies the
//! [`Effect`]s in order and delivers [`Event::Tick`] at [`next_deadline`]. Every event first
//! fires the state-deciding timers already due at `now` (grace, stuck, expiry), so a late `Tick`
//! (or none, after a crash) cannot let an expired pause be resumed.
//!
//! | state | accepted events (anything else: `invalid_transition`) |
//! |---|---|
//! | created, not consented | consent accepted / declined, progress, admin end/restart, technical, tick; media started is `consent_required` |
//! | created, consented | media started, participant ended, progress, admin end/restart, technical, tick |
//! | in_progress | media started/lost/restored, pause (or `pause_limit_reached`), tab closed, server restarted, progress, turn, activity, finished, participant ended, admin, technical, tick |
//! | paused | resume, media started, media restored (only after a media-loss pause), progress, turn, finished, participant ended, admin, technical, tick |
//! | in_progress, stuck (no activity for [`MARK_STUCK_AFTER_SECS`]) | also mark complete (with a captured turn, else `no_transcript`) / mark abandoned; not stuck: `not_stuck` |
//! | completed, abandoned, admin_ended | admin restart (the session becomes `restarted`, a new one is issued); anything else `session_ended` |
//! | restarted | nothing: `session_ended` |
//!
//! Server restarted (crash recovery: the session's media died with the old process) pauses an
//! in-progress session at once with cause `server_restart`. That pause is the server's, not
//! the participant's: it is not counted against `pause_limit`, so it never ends the session
//! (`pause_limit`) and never takes a pause the participant still has.
//!
//! Participant ended (WHIP DELETE of the participant's current peer resource) ends the session
//! at once as `abandoned` with reason `participant_ended`, keeping the drop-off point.
//!
//! A session created (its invite opened) but never consented for `never_started_secs` ends as
//! `abandoned` with reason and drop-off `never_started`.

mod types;

pub use types::{
    ConfigError, Effect, EndReason, Event, Lifecycle, LifecycleConfig, MARK_STUCK_AFTER_SECS,
    Millis, Pause, PauseCause, Refused, State, StateChange, Transition, codes,
};

/// Apply `event` at `now` to `session`. On `Err` nothing changed.
pub fn step(session: &Lifecycle, event: Event, now: Millis) -> Result<Transition, Refused> {
    let before = session.state;
    if before.is_terminal() {
        if event == Event::AdminRestart && before != State::Restarted {
            return Ok(restart_ended(session, now));
        }
        return Err(ended(session, &event));
    }
    let mut m = Machine {
        l: session.clone(),
        effects: Vec::new(),
        causes: Vec::new(),
    };
    // Before another event only the timers that decide the state fire; a resume prompt that is
    // due waits for the next Tick (pointless if the participant is resuming right now).
    m.fire_due_timers(now, event == Event::Tick);
    m.apply(event, now)?;
    if m.causes.is_empty() {
        m.causes.push("nothing due".into());
    }
    let after = m.l.state;
    Ok(Transition {
        lifecycle: m.l,
        effects: m.effects,
        changed_state: (before != after).then_some((before, after)),
        cause: m.causes.join("; "),
    })
}

/// An ended session restarted by an admin ("useful after technical issues"): it keeps its
/// end time, reason and data, becomes `restarted`, and a new session is issued.
fn restart_ended(session: &Lifecycle, now: Millis) -> Transition {
    let mut l = session.clone();
    let change = StateChange {
        at: now,
        from: l.state,
        to: State::Restarted,
        cause: format!("restarted by admin after it ended as {}", l.state),
    };
    l.state = State::Restarted;
    l.history.push(change.clone());
    Transition {
        cause: change.cause.clone(),
        changed_state: Some((change.from, State::Restarted)),
        lifecycle: l,
        effects: vec![Effect::IssueRestart, Effect::Notify(change)],
    }
}

/// When the caller should deliver the next [`Event::Tick`]; `None` if no timer runs.
pub fn next_deadline(l: &Lifecycle) -> Option<Millis> {
    due_timer(l).map(|(at, _)| at)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Media lost for `disconnect_grace_secs`.
    Grace,
    /// No activity in progress for `stuck_secs`.
    Stuck,
    ResumePrompt,
    PauseExpiry,
    /// Created and never consented for `never_started_secs`.
    NeverStarted,
}

/// The earliest running timer. Ties go to the one that ends the session.
fn due_timer(l: &Lifecycle) -> Option<(Millis, Timer)> {
    let c = &l.config;
    match l.state {
        State::InProgress => {
            let stuck = l
                .last_activity
                .map(|a| (a.plus_secs(c.stuck_secs), Timer::Stuck));
            let grace = l
                .media_lost_at
                .map(|lost| (lost.plus_secs(c.disconnect_grace_secs), Timer::Grace));
            earliest(stuck, grace)
        }
        State::Paused => {
            let pause = l.pauses.last()?;
            let expiry = Some((
                pause.started_at.plus_secs(c.pause_expiry_secs),
                Timer::PauseExpiry,
            ));
            let prompt = pause.resume_prompt_at.is_none().then(|| {
                (
                    pause.started_at.plus_secs(c.resume_prompt_secs),
                    Timer::ResumePrompt,
                )
            });
            earliest(expiry, prompt)
        }
        State::Created if !l.consented() => Some((
            l.created_at.plus_secs(c.never_started_secs),
            Timer::NeverStarted,
        )),
        _ => None,
    }
}

/// `first` wins ties.
fn earliest(
    first: Option<(Millis, Timer)>,
    second: Option<(Millis, Timer)>,
) -> Option<(Millis, Timer)> {
    match (first, second) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn ended(l: &Lifecycle, event: &Event) -> Refused {
    let reason = l.end_reason.as_ref().map_or("unknown", EndReason::as_str);
    Refused::new(
        codes::SESSION_ENDED,
        format!(
            "session is {} ({reason}) and accepts no events; refused {}",
            l.state,
            event.name()
        ),
    )
}

fn invalid(l: &Lifecycle, event: &Event) -> Refused {
    let state = if l.state == State::Created && l.consented() {
        "created (consented)"
    } else {
        l.state.as_str()
    };
    Refused::new(
        codes::INVALID_TRANSITION,
        format!(
            "{} does not apply to a session that is {state}",
            event.name()
        ),
    )
}

struct Machine {
    l: Lifecycle,
    effects: Vec<Effect>,
    causes: Vec<String>,
}

impl Machine {
    fn fire_due_timers(&mut self, now: Millis, prompt: bool) {
        while let Some((due, timer)) = due_timer(&self.l) {
            if due > now {
                return;
            }
            let c = self.l.config.clone();
            match timer {
                Timer::Grace => {
                    let lost = self.l.media_lost_at.unwrap_or(due);
                    let cause = format!("media lost for {} s", c.disconnect_grace_secs);
                    self.disconnect(lost, due, PauseCause::MediaLost, cause);
                }
                Timer::Stuck => {
                    let to = if self.l.turns_captured > 0 {
                        State::Completed
                    } else {
                        State::Abandoned
                    };
                    let cause = format!(
                        "stuck: no activity for {} s, {} turn(s) captured",
                        c.stuck_secs, self.l.turns_captured
                    );
                    self.end(to, EndReason::Stuck, due, cause);
                }
                Timer::PauseExpiry => self.expire(due),
                Timer::NeverStarted => {
                    self.l.drop_off = Some("never_started".into());
                    let cause = format!("never consented for {} s", c.never_started_secs);
                    self.end(State::Abandoned, EndReason::NeverStarted, due, cause);
                }
                Timer::ResumePrompt => {
                    let pause_start = self.l.paused_at().unwrap_or(due);
                    let expiry = pause_start.plus_secs(c.pause_expiry_secs);
                    if expiry <= now {
                        // Catching up late: the pause already expired, a prompt is pointless.
                        self.expire(expiry);
                    } else if !prompt {
                        return;
                    } else {
                        if let Some(pause) = self.l.pauses.last_mut() {
                            pause.resume_prompt_at = Some(now);
                        }
                        self.effects.push(Effect::EmitResumePrompt);
                        self.causes.push(format!(
                            "resume prompt after {} s paused",
                            c.resume_prompt_secs
                        ));
                    }
                }
            }
        }
    }

    fn apply(&mut self, event: Event, now: Millis) -> Result<(), Refused> {
        use Event as E;
        use State as S;
        let l = &self.l;
        if event == E::Tick {
            return Ok(());
        }
        if l.state.is_terminal() {
            // A timer due at `now` just ended it.
            return Err(ended(l, &event));
        }
        let consented = l.consented();
        let limit = l.config.pause_limit;
        let grace = l.config.disconnect_grace_secs;
        match (l.state, event) {
            (S::Created, E::ConsentAccepted) if !consented => {
                self.l.consented_at = Some(now);
                self.causes.push("consent accepted".into());
            }
            (S::Created, E::ConsentDeclined) if !consented => {
                self.l.drop_off = Some("consent".into());
                self.end(
                    S::Abandoned,
                    EndReason::Declined,
                    now,
                    "consent declined".into(),
                );
            }
            (S::Created, E::MediaStarted) if !consented => {
                return Err(Refused::new(
                    codes::CONSENT_REQUIRED,
                    "media cannot start before consent is accepted",
                ));
            }
            (S::Created, E::MediaStarted) => {
                self.l.started_at = Some(now);
                self.l.active_since = Some(now);
                self.l.last_activity = Some(now);
                self.effects.push(Effect::StartMedia);
                self.change(S::InProgress, now, "media started".into());
            }
            (S::Created | S::InProgress | S::Paused, E::Progress { point }) => {
                self.touch(now);
                self.causes.push(format!("progress: {point}"));
                self.l.drop_off = Some(point);
            }
            (S::InProgress | S::Paused, E::TurnCaptured) => {
                self.touch(now);
                self.l.turns_captured = self.l.turns_captured.saturating_add(1);
                self.causes.push("turn captured".into());
            }
            (S::InProgress, E::Activity) => {
                self.touch(now);
                self.causes.push("activity".into());
            }
            (S::InProgress, ev @ (E::MediaStarted | E::MediaRestored)) => {
                self.touch(now);
                let cancelled = self.l.media_lost_at.take().is_some();
                self.causes.push(if cancelled {
                    format!("{}: grace timer cancelled", ev.name())
                } else {
                    ev.name().to_string()
                });
            }
            (S::InProgress, E::MediaLost) => {
                if self.l.media_lost_at.is_none() {
                    self.l.media_lost_at = Some(now);
                    self.causes
                        .push(format!("media lost: pausing in {grace} s unless restored"));
                } else {
                    self.causes
                        .push("media lost (grace timer already running)".into());
                }
            }
            (S::InProgress, E::PauseRequested) => {
                if l.pause_count() >= limit {
                    return Err(Refused::new(
                        codes::PAUSE_LIMIT_REACHED,
                        format!("all {limit} pauses of this session have been used"),
                    ));
                }
                self.pause(now, now, PauseCause::Button, "pause button".into());
            }
            (S::InProgress, E::ServerRestarted) => {
                // Not `disconnect`: with no pause left that would end the session, charging
                // the server's crash to the participant.
                let cause = "server restarted".to_string();
                self.pause(now, now, PauseCause::ServerRestart, cause);
            }
            (S::InProgress, E::TabClosed) => {
                let cause = "tab closed or navigated away".to_string();
                self.disconnect(now, now, PauseCause::TabClosed, cause);
            }
            (S::Paused, E::ResumeRequested) => self.resume(now, "resume button".into()),
            (S::Paused, E::MediaStarted) => self.resume(now, "media started again".into()),
            (S::Paused, E::MediaRestored)
                if l.current_pause().map(|p| p.cause) == Some(PauseCause::MediaLost) =>
            {
                self.resume(now, "media restored".into());
            }
            (S::InProgress | S::Paused, E::InterviewFinished) => {
                let cause = "interviewer finished the interview".into();
                self.end(S::Completed, EndReason::Completed, now, cause);
            }
            // Only a consented session can have a peer to hang up (in progress and paused
            // always are); before consent it is refused like the other media signals.
            (S::Created | S::InProgress | S::Paused, E::ParticipantEnded) if consented => {
                let cause = "participant ended the interview".into();
                self.end(S::Abandoned, EndReason::ParticipantEnded, now, cause);
            }
            (_, E::AdminEnd) => {
                self.end(
                    S::AdminEnded,
                    EndReason::Admin,
                    now,
                    "ended by admin".into(),
                );
            }
            (_, E::AdminRestart) => {
                self.end(
                    S::Restarted,
                    EndReason::Admin,
                    now,
                    "restarted by admin".into(),
                );
            }
            (S::InProgress, ev @ (E::MarkComplete | E::MarkAbandoned)) => {
                let quiet = l.last_activity.map_or(0, |a| now.since(a)) / 1000;
                if quiet < MARK_STUCK_AFTER_SECS as i64 {
                    return Err(Refused::new(
                        codes::NOT_STUCK,
                        format!(
                            "the session had activity {quiet} s ago; it counts as stuck after \
                             {MARK_STUCK_AFTER_SECS} s without"
                        ),
                    ));
                }
                let complete = ev == E::MarkComplete;
                if complete && l.turns_captured == 0 {
                    return Err(Refused::new(
                        codes::NO_TRANSCRIPT,
                        "a session without a captured turn can only be marked abandoned",
                    ));
                }
                let (to, what) = if complete {
                    (S::Completed, "complete")
                } else {
                    (S::Abandoned, "abandoned")
                };
                let cause = format!("marked {what} by admin (stuck: no activity for {quiet} s)");
                self.end(to, EndReason::Admin, now, cause);
            }
            (_, E::MarkComplete | E::MarkAbandoned) => {
                return Err(Refused::new(
                    codes::NOT_STUCK,
                    format!(
                        "only a session stuck in progress can be marked, this one is {}",
                        l.state
                    ),
                ));
            }
            (_, E::TechnicalFailure { detail }) => {
                let cause = format!("technical failure: {detail}");
                self.end(S::Abandoned, EndReason::Technical(detail), now, cause);
            }
            (_, event) => return Err(invalid(l, &event)),
        }
        Ok(())
    }

    /// Record a state change: history, a `Notify` effect, the cause.
    fn change(&mut self, to: State, at: Millis, cause: String) {
        let change = StateChange {
            at,
            from: self.l.state,
            to,
            cause: cause.clone(),
        };
        self.l.state = to;
        self.l.history.push(change.clone());
        self.effects.push(Effect::Notify(change));
        self.causes.push(cause);
    }

    /// A sign of life; only counts while in progress.
    fn touch(&mut self, now: Millis) {
        if self.l.state == State::InProgress {
            self.l.last_activity = Some(now);
        }
    }

    fn close_active(&mut self, at: Millis) {
        if let Some(since) = self.l.active_since.take() {
            self.l.active_ms += at.since(since);
        }
    }

    /// Pause starting at `start` (backdated for media loss), decided at `at`.
    fn pause(&mut self, start: Millis, at: Millis, cause: PauseCause, text: String) {
        self.close_active(start);
        self.l.media_lost_at = None;
        self.l.pauses.push(Pause {
            started_at: start,
            ended_at: None,
            cause,
            resume_prompt_at: None,
        });
        self.effects.push(Effect::PauseMedia);
        let n = self.l.pause_count();
        let limit = self.l.config.pause_limit;
        let count = if cause.counts_against_limit() {
            format!("pause {n} of {limit}")
        } else {
            "not counted against the pause limit".to_string()
        };
        self.change(State::Paused, at, format!("{text} ({count})"));
    }

    /// Tab closed or media lost: a pause if one is left, else the end (`pause_limit`).
    fn disconnect(&mut self, start: Millis, at: Millis, cause: PauseCause, text: String) {
        if self.l.pause_count() < self.l.config.pause_limit {
            self.pause(start, at, cause, text);
        } else {
            self.close_active(start);
            let limit = self.l.config.pause_limit;
            let text = format!("{text} with no pauses left (limit {limit})");
            self.end(State::Abandoned, EndReason::PauseLimit, at, text);
        }
    }

    fn resume(&mut self, now: Millis, text: String) {
        if let Some(pause) = self.l.pauses.last_mut() {
            pause.ended_at = Some(now);
        }
        self.l.active_since = Some(now);
        self.l.last_activity = Some(now);
        self.l.media_lost_at = None;
        self.effects.push(Effect::ResumeMedia {
            point: self.l.drop_off.clone(),
        });
        self.change(State::InProgress, now, text);
    }

    fn expire(&mut self, at: Millis) {
        let secs = self.l.config.pause_expiry_secs;
        let cause = format!("pause expired after {secs} s");
        self.end(State::Abandoned, EndReason::PauseExpired, at, cause);
    }

    /// End the session: close the active stretch or the pause, then StopMedia,
    /// FinalizeRecordings (if it ever started), IssueRestart (restart only) and Notify.
    fn end(&mut self, to: State, reason: EndReason, at: Millis, cause: String) {
        self.close_active(at);
        if self.l.state == State::Paused
            && let Some(pause) = self.l.pauses.last_mut()
        {
            pause.ended_at = Some(at);
        }
        self.l.media_lost_at = None;
        self.l.ended_at = Some(at);
        self.l.end_reason = Some(reason);
        self.effects.push(Effect::StopMedia);
        if self.l.started_at.is_some() {
            self.effects.push(Effect::FinalizeRecordings);
        }
        if to == State::Restarted {
            self.effects.push(Effect::IssueRestart);
        }
        self.change(to, at, cause);
    }
}

#[cfg(test)]
mod tests;
