use super::*;

const T0: i64 = 1_700_000_000_000;

/// `secs` seconds after T0 (fractions allowed).
fn at(secs: f64) -> Millis {
    Millis(T0 + (secs * 1000.0).round() as i64)
}

fn ok(l: &Lifecycle, event: Event, now: Millis) -> Transition {
    let name = event.name();
    step(l, event, now).unwrap_or_else(|r| panic!("{name} at {now:?} refused: {r}"))
}

fn refused(l: &Lifecycle, event: Event, now: Millis) -> Refused {
    let before = l.clone();
    let name = event.name();
    let r = match step(l, event, now) {
        Ok(t) => panic!("{name} accepted: {}", t.cause),
        Err(r) => r,
    };
    assert_eq!(l, &before);
    r
}

fn apply(l: &mut Lifecycle, event: Event, now: Millis) -> Transition {
    let t = ok(l, event, now);
    *l = t.lifecycle.clone();
    t
}

fn created() -> Lifecycle {
    Lifecycle::new(LifecycleConfig::default(), at(-60.0))
}

fn consented() -> Lifecycle {
    ok(&created(), Event::ConsentAccepted, at(-30.0)).lifecycle
}

/// In progress since at(0).
fn running() -> Lifecycle {
    ok(&consented(), Event::MediaStarted, at(0.0)).lifecycle
}

/// Paused by the button at at(100).
fn paused() -> Lifecycle {
    let mut l = running();
    apply(&mut l, Event::Progress { point: "q4".into() }, at(50.0));
    apply(&mut l, Event::PauseRequested, at(100.0));
    l
}

fn notifies(t: &Transition) -> Vec<(State, State)> {
    t.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(c) => Some((c.from, c.to)),
            _ => None,
        })
        .collect()
}

fn non_notify(t: &Transition) -> Vec<Effect> {
    t.effects
        .iter()
        .filter(|e| !matches!(e, Effect::Notify(_)))
        .cloned()
        .collect()
}

#[test]
fn consent_accept_keeps_created_and_allows_media() {
    let l = created();
    let r = refused(&l, Event::MediaStarted, at(0.0));
    assert_eq!(r.code, codes::CONSENT_REQUIRED);

    let t = ok(&l, Event::ConsentAccepted, at(-30.0));
    assert_eq!(t.lifecycle.state, State::Created);
    assert!(t.lifecycle.consented());
    assert_eq!(t.lifecycle.consented_at, Some(at(-30.0)));
    assert_eq!(t.changed_state, None);
    assert!(t.effects.is_empty());
    assert_eq!(next_deadline(&t.lifecycle), None);
}

#[test]
fn consent_decline_abandons_with_consent_drop_off() {
    let t = ok(&created(), Event::ConsentDeclined, at(0.0));
    let l = &t.lifecycle;
    assert_eq!(l.state, State::Abandoned);
    assert_eq!(l.end_reason, Some(EndReason::Declined));
    assert_eq!(l.drop_off.as_deref(), Some("consent"));
    assert_eq!(l.ended_at, Some(at(0.0)));
    assert_eq!(t.changed_state, Some((State::Created, State::Abandoned)));
    // Never started: nothing to finalize.
    assert_eq!(non_notify(&t), vec![Effect::StopMedia]);
    assert_eq!(l.history.len(), 1);
    assert_eq!(l.history[0].cause, "consent declined");
}

#[test]
fn media_start_begins_the_interview() {
    let t = ok(&consented(), Event::MediaStarted, at(0.0));
    let l = &t.lifecycle;
    assert_eq!(l.state, State::InProgress);
    assert_eq!(l.started_at, Some(at(0.0)));
    assert_eq!(non_notify(&t), vec![Effect::StartMedia]);
    assert_eq!(notifies(&t), vec![(State::Created, State::InProgress)]);
    assert_eq!(next_deadline(l), Some(at(1800.0)), "stuck timer");
    assert_eq!(l.total_duration_ms(at(5.0)), Some(5000));
}

#[test]
fn three_button_pauses_then_the_fourth_is_refused() {
    let mut l = running();
    for i in 0..3 {
        let base = 1000.0 * f64::from(i);
        let t = apply(&mut l, Event::PauseRequested, at(base + 10.0));
        assert_eq!(t.changed_state, Some((State::InProgress, State::Paused)));
        assert_eq!(non_notify(&t), vec![Effect::PauseMedia]);
        assert_eq!(l.pause_count(), i + 1);
        let t = apply(&mut l, Event::ResumeRequested, at(base + 20.0));
        assert_eq!(t.changed_state, Some((State::Paused, State::InProgress)));
    }
    assert_eq!(l.pauses_remaining(), 0);
    let r = refused(&l, Event::PauseRequested, at(3000.0));
    assert_eq!(r.code, codes::PAUSE_LIMIT_REACHED);
    assert_eq!(l.state, State::InProgress);
    assert!(l.pauses.iter().all(|p| p.cause == PauseCause::Button));
}

fn exhausted() -> Lifecycle {
    let mut l = running();
    for i in 0..3 {
        let base = 100.0 * f64::from(i);
        apply(&mut l, Event::PauseRequested, at(base + 10.0));
        apply(&mut l, Event::MediaStarted, at(base + 20.0));
    }
    l
}

#[test]
fn tab_close_pauses_while_pauses_remain() {
    let t = ok(&running(), Event::TabClosed, at(30.0));
    assert_eq!(t.lifecycle.state, State::Paused);
    assert_eq!(t.lifecycle.pauses[0].cause, PauseCause::TabClosed);
    assert_eq!(t.lifecycle.paused_at(), Some(at(30.0)));
}

#[test]
fn disconnect_with_no_pauses_left_abandons_with_pause_limit() {
    let mut l = exhausted();
    apply(&mut l, Event::Progress { point: "q9".into() }, at(400.0));
    let t = ok(&l, Event::TabClosed, at(500.0));
    let e = &t.lifecycle;
    assert_eq!(e.state, State::Abandoned);
    assert_eq!(e.end_reason, Some(EndReason::PauseLimit));
    assert_eq!(e.drop_off.as_deref(), Some("q9"));
    assert_eq!(e.pause_count(), 3);
    assert_eq!(
        non_notify(&t),
        vec![Effect::StopMedia, Effect::FinalizeRecordings]
    );

    // Same through the grace timer.
    apply(&mut l, Event::MediaLost, at(500.0));
    assert_eq!(next_deadline(&l), Some(at(510.0)));
    let t = ok(&l, Event::Tick, at(510.0));
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::PauseLimit));
    assert_eq!(t.lifecycle.ended_at, Some(at(510.0)));
}

#[test]
fn a_media_blip_shorter_than_the_grace_is_not_a_pause() {
    let mut l = running();
    apply(&mut l, Event::MediaLost, at(60.0));
    assert_eq!(next_deadline(&l), Some(at(70.0)));
    let t = apply(&mut l, Event::Tick, at(69.999));
    assert_eq!(t.changed_state, None);
    assert!(t.effects.is_empty());
    let t = apply(&mut l, Event::MediaRestored, at(69.999));
    assert_eq!(t.changed_state, None);
    assert_eq!(l.media_lost_at, None);
    assert_eq!(
        next_deadline(&l),
        Some(at(69.999 + 1800.0)),
        "only stuck left"
    );
    let t = apply(&mut l, Event::Tick, at(75.0));
    assert_eq!(t.changed_state, None);
    assert_eq!(l.state, State::InProgress);
    assert_eq!(l.pause_count(), 0);
    // A reconnect reported as MediaStarted cancels the grace too.
    apply(&mut l, Event::MediaLost, at(80.0));
    apply(&mut l, Event::MediaStarted, at(85.0));
    assert_eq!(l.media_lost_at, None);
}

#[test]
fn media_lost_longer_than_the_grace_pauses_from_the_loss() {
    let mut l = running();
    apply(&mut l, Event::MediaLost, at(60.0));
    // A second loss report keeps the original timer.
    let t = apply(&mut l, Event::MediaLost, at(65.0));
    assert_eq!(t.lifecycle.media_lost_at, Some(at(60.0)));
    let t = apply(&mut l, Event::Tick, at(70.0));
    assert_eq!(t.changed_state, Some((State::InProgress, State::Paused)));
    assert_eq!(non_notify(&t), vec![Effect::PauseMedia]);
    let p = l.current_pause().unwrap();
    assert_eq!(p.cause, PauseCause::MediaLost);
    assert_eq!(p.started_at, at(60.0), "pause starts when media was lost");
    assert_eq!(l.history.last().unwrap().at, at(70.0));
    assert_eq!(l.active_duration_ms(at(500.0)), 60_000);
    // Media back on the same peer resumes this kind of pause.
    let t = apply(&mut l, Event::MediaRestored, at(90.0));
    assert_eq!(t.changed_state, Some((State::Paused, State::InProgress)));
    assert_eq!(l.pauses[0].ended_at, Some(at(90.0)));
}

#[test]
fn media_restored_does_not_undo_a_button_pause() {
    let l = paused();
    assert_eq!(
        refused(&l, Event::MediaRestored, at(110.0)).code,
        codes::INVALID_TRANSITION
    );
    // A new peer (the participant came back through the invite) does resume.
    let t = ok(&l, Event::MediaStarted, at(110.0));
    assert_eq!(t.lifecycle.state, State::InProgress);
}

#[test]
fn resume_prompt_is_emitted_once_at_120_s_and_not_before() {
    let mut l = paused();
    assert_eq!(next_deadline(&l), Some(at(220.0)));
    let t = apply(&mut l, Event::Tick, at(219.999));
    assert!(t.effects.is_empty());
    assert_eq!(t.cause, "nothing due");
    let t = apply(&mut l, Event::Tick, at(220.0));
    assert_eq!(t.effects, vec![Effect::EmitResumePrompt]);
    assert_eq!(t.changed_state, None);
    assert_eq!(l.state, State::Paused);
    assert_eq!(l.pauses[0].resume_prompt_at, Some(at(220.0)));
    assert_eq!(next_deadline(&l), Some(at(1900.0)), "now only the expiry");
    for s in [220.0, 221.0, 600.0, 1899.0] {
        let t = apply(&mut l, Event::Tick, at(s));
        assert!(t.effects.is_empty(), "tick at {s}");
    }
    // A later pause gets its own prompt.
    apply(&mut l, Event::ResumeRequested, at(1000.0));
    apply(&mut l, Event::PauseRequested, at(1100.0));
    let t = apply(&mut l, Event::Tick, at(1220.0));
    assert_eq!(t.effects, vec![Effect::EmitResumePrompt]);
}

#[test]
fn pause_expiry_abandons_with_the_drop_off_point() {
    let mut l = paused();
    apply(&mut l, Event::Tick, at(220.0));
    let t = apply(&mut l, Event::Tick, at(1899.999));
    assert!(t.effects.is_empty());
    let t = apply(&mut l, Event::Tick, at(1900.0));
    assert_eq!(t.changed_state, Some((State::Paused, State::Abandoned)));
    assert_eq!(l.end_reason, Some(EndReason::PauseExpired));
    assert_eq!(l.drop_off.as_deref(), Some("q4"));
    assert_eq!(l.ended_at, Some(at(1900.0)));
    assert_eq!(l.pauses[0].ended_at, Some(at(1900.0)));
    assert_eq!(
        non_notify(&t),
        vec![Effect::StopMedia, Effect::FinalizeRecordings]
    );
    assert_eq!(next_deadline(&l), None);
    assert_eq!(l.active_duration_ms(at(5000.0)), 100_000);
    assert_eq!(l.total_duration_ms(at(5000.0)), Some(1_900_000));
    assert_eq!(l.paused_duration_ms(at(5000.0)), 1_800_000);
    assert_eq!(
        refused(&l, Event::Tick, at(5000.0)).code,
        codes::SESSION_ENDED
    );
}

#[test]
fn resume_continues_from_the_point_and_active_time_excludes_the_pause() {
    let l = paused();
    let t = ok(&l, Event::ResumeRequested, at(400.0));
    let r = &t.lifecycle;
    assert_eq!(r.state, State::InProgress);
    assert_eq!(r.started_at, Some(at(0.0)), "same session, same start");
    assert_eq!(
        non_notify(&t),
        vec![Effect::ResumeMedia {
            point: Some("q4".into())
        }]
    );
    assert_eq!(r.pauses[0].started_at, at(100.0));
    assert_eq!(r.pauses[0].ended_at, Some(at(400.0)));
    // 100 s before the pause + 100 s after it.
    assert_eq!(r.active_duration_ms(at(500.0)), 200_000);
    assert_eq!(r.total_duration_ms(at(500.0)), Some(500_000));
    assert_eq!(r.paused_duration_ms(at(500.0)), 300_000);
    assert_eq!(
        next_deadline(r),
        Some(at(2200.0)),
        "stuck counts from the resume"
    );
    let done = ok(r, Event::InterviewFinished, at(500.0)).lifecycle;
    assert_eq!(done.active_duration_ms(at(9999.0)), 200_000);
}

#[test]
fn stuck_in_progress_completes_with_turns() {
    let mut l = running();
    apply(&mut l, Event::TurnCaptured, at(100.0));
    apply(&mut l, Event::Activity, at(200.0));
    assert_eq!(next_deadline(&l), Some(at(2000.0)));
    assert!(ok(&l, Event::Tick, at(1999.0)).effects.is_empty());
    let t = apply(&mut l, Event::Tick, at(2000.0));
    assert_eq!(t.changed_state, Some((State::InProgress, State::Completed)));
    assert_eq!(l.end_reason, Some(EndReason::Stuck));
    assert_eq!(
        non_notify(&t),
        vec![Effect::StopMedia, Effect::FinalizeRecordings]
    );
}

#[test]
fn stuck_in_progress_without_turns_is_abandoned() {
    let l = running();
    let t = ok(&l, Event::Tick, at(1800.0));
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Stuck));
    assert_eq!(t.lifecycle.ended_at, Some(at(1800.0)));
}

#[test]
fn interview_finished_completes() {
    let t = ok(&running(), Event::InterviewFinished, at(300.0));
    assert_eq!(t.lifecycle.state, State::Completed);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Completed));
    let t = ok(&paused(), Event::InterviewFinished, at(300.0));
    assert_eq!(t.lifecycle.state, State::Completed);
    assert_eq!(t.lifecycle.pauses[0].ended_at, Some(at(300.0)));
}

#[test]
fn admin_end_and_restart() {
    let t = ok(&running(), Event::AdminEnd, at(300.0));
    assert_eq!(t.lifecycle.state, State::AdminEnded);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Admin));
    assert_eq!(
        non_notify(&t),
        vec![Effect::StopMedia, Effect::FinalizeRecordings]
    );

    let t = ok(&paused(), Event::AdminRestart, at(300.0));
    assert_eq!(t.lifecycle.state, State::Restarted);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Admin));
    assert_eq!(
        non_notify(&t),
        vec![
            Effect::StopMedia,
            Effect::FinalizeRecordings,
            Effect::IssueRestart
        ]
    );
    assert_eq!(notifies(&t), vec![(State::Paused, State::Restarted)]);
}

#[test]
fn technical_failure_abandons_with_detail() {
    let t = ok(
        &running(),
        Event::TechnicalFailure {
            detail: "agent unreachable".into(),
        },
        at(42.0),
    );
    let reason = t.lifecycle.end_reason.clone().unwrap();
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(reason, EndReason::Technical("agent unreachable".into()));
    assert_eq!(reason.as_str(), "technical");
    assert_eq!(reason.detail(), Some("agent unreachable"));
    assert_eq!(t.cause, "technical failure: agent unreachable");
}

/// The participant's "End interview" (WHIP DELETE of the current peer) while in progress: the
/// session ends at once, keeps its drop-off point and finalizes what was recorded.
#[test]
fn participant_ended_in_progress_abandons_at_once_with_the_drop_off_kept() {
    let mut l = running();
    apply(&mut l, Event::Progress { point: "q2".into() }, at(40.0));
    apply(&mut l, Event::TurnCaptured, at(45.0));
    let t = ok(&l, Event::ParticipantEnded, at(60.0));
    let e = &t.lifecycle;
    assert_eq!(e.state, State::Abandoned);
    assert_eq!(e.end_reason, Some(EndReason::ParticipantEnded));
    assert_eq!(
        e.end_reason.as_ref().map(EndReason::as_str),
        Some("participant_ended")
    );
    assert_eq!(e.drop_off.as_deref(), Some("q2"), "drop-off kept");
    assert_eq!(e.ended_at, Some(at(60.0)));
    assert_eq!(e.started_at, Some(at(0.0)));
    assert_eq!(t.changed_state, Some((State::InProgress, State::Abandoned)));
    assert_eq!(t.cause, "participant ended the interview");
    let change = StateChange {
        at: at(60.0),
        from: State::InProgress,
        to: State::Abandoned,
        cause: "participant ended the interview".into(),
    };
    assert_eq!(
        t.effects,
        vec![
            Effect::StopMedia,
            Effect::FinalizeRecordings,
            Effect::Notify(change.clone())
        ]
    );
    assert_eq!(e.history.last(), Some(&change));
    assert_eq!(next_deadline(e), None, "no timer runs after the end");
    assert_eq!(e.active_duration_ms(at(5000.0)), 60_000);
    assert_eq!(e.total_duration_ms(at(5000.0)), Some(60_000));
    assert_eq!(e.pause_count(), 0);
    // Once ended, a second hang-up (or anything else) is refused and changes nothing.
    let r = refused(e, Event::ParticipantEnded, at(61.0));
    assert_eq!(r.code, codes::SESSION_ENDED);
    assert!(r.message.contains("participant_ended"), "{}", r.message);
}

/// A paused session ends too: the pause is closed at the end, the drop-off point is the one
/// it stopped at, and the active time excludes the pause.
#[test]
fn participant_ended_while_paused_abandons_and_closes_the_pause() {
    let l = paused();
    let t = ok(&l, Event::ParticipantEnded, at(300.0));
    let e = &t.lifecycle;
    assert_eq!(e.state, State::Abandoned);
    assert_eq!(e.end_reason, Some(EndReason::ParticipantEnded));
    assert_eq!(e.drop_off.as_deref(), Some("q4"));
    assert_eq!(e.ended_at, Some(at(300.0)));
    assert_eq!(e.pauses.len(), 1);
    assert_eq!(e.pauses[0].started_at, at(100.0));
    assert_eq!(
        e.pauses[0].ended_at,
        Some(at(300.0)),
        "pause closed at the end"
    );
    assert_eq!(e.current_pause(), None);
    assert_eq!(
        t.effects,
        vec![
            Effect::StopMedia,
            Effect::FinalizeRecordings,
            Effect::Notify(StateChange {
                at: at(300.0),
                from: State::Paused,
                to: State::Abandoned,
                cause: "participant ended the interview".into(),
            })
        ]
    );
    assert!(!t.effects.contains(&Effect::EmitResumePrompt));
    assert_eq!(next_deadline(e), None);
    assert_eq!(e.active_duration_ms(at(9999.0)), 100_000);
    assert_eq!(e.paused_duration_ms(at(9999.0)), 200_000);
    assert_eq!(e.total_duration_ms(at(9999.0)), Some(300_000));
}

/// Consented but not started (the peer never connected): abandoned, nothing to finalize.
/// Before consent there is no peer to hang up: refused like the other media signals.
#[test]
fn participant_ended_before_the_start() {
    let t = ok(&consented(), Event::ParticipantEnded, at(0.0));
    let e = &t.lifecycle;
    assert_eq!(e.state, State::Abandoned);
    assert_eq!(e.end_reason, Some(EndReason::ParticipantEnded));
    assert_eq!(e.started_at, None);
    assert_eq!(e.drop_off, None);
    assert_eq!(e.ended_at, Some(at(0.0)));
    assert_eq!(non_notify(&t), vec![Effect::StopMedia], "never started");
    assert_eq!(notifies(&t), vec![(State::Created, State::Abandoned)]);
    assert_eq!(e.total_duration_ms(at(10.0)), None);

    let l = created();
    let r = refused(&l, Event::ParticipantEnded, at(0.0));
    assert_eq!(r.code, codes::INVALID_TRANSITION);
    assert!(
        r.message.contains("participant_ended") && r.message.contains("created"),
        "{}",
        r.message
    );
    assert_eq!(
        refused(&l, Event::MediaLost, at(0.0)).code,
        r.code,
        "refused like the other media signals"
    );
}

/// The page closes its peer just before the DELETE, so media loss may come first: a running
/// grace timer is dropped; an overdue one has paused the session first (timers fire before
/// the event), which then ends from the pause. With no pauses left it is still the
/// participant's end, not `pause_limit`.
#[test]
fn participant_ended_after_media_loss_and_with_no_pauses_left() {
    let mut l = running();
    apply(&mut l, Event::Progress { point: "q1".into() }, at(20.0));
    apply(&mut l, Event::MediaLost, at(60.0));
    let t = ok(&l, Event::ParticipantEnded, at(60.5));
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(t.lifecycle.media_lost_at, None);
    assert_eq!(t.lifecycle.pause_count(), 0);
    assert_eq!(notifies(&t), vec![(State::InProgress, State::Abandoned)]);

    let t = ok(&l, Event::ParticipantEnded, at(75.0));
    assert_eq!(
        notifies(&t),
        vec![
            (State::InProgress, State::Paused),
            (State::Paused, State::Abandoned)
        ]
    );
    assert_eq!(
        non_notify(&t),
        vec![
            Effect::PauseMedia,
            Effect::StopMedia,
            Effect::FinalizeRecordings
        ]
    );
    let e = &t.lifecycle;
    assert_eq!(e.end_reason, Some(EndReason::ParticipantEnded));
    assert_eq!(e.drop_off.as_deref(), Some("q1"));
    assert_eq!(e.pauses[0].cause, PauseCause::MediaLost);
    assert_eq!(e.pauses[0].ended_at, Some(at(75.0)));

    let t = ok(&exhausted(), Event::ParticipantEnded, at(400.0));
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::ParticipantEnded));
    assert_eq!(
        non_notify(&t),
        vec![Effect::StopMedia, Effect::FinalizeRecordings]
    );
}

#[test]
fn history_records_every_state_change_with_time_and_cause() {
    let mut l = paused();
    apply(&mut l, Event::ResumeRequested, at(200.0));
    apply(&mut l, Event::InterviewFinished, at(300.0));
    let h: Vec<_> = l
        .history
        .iter()
        .map(|c| (c.at, c.from, c.to, c.cause.as_str()))
        .collect();
    assert_eq!(
        h,
        vec![
            (at(0.0), State::Created, State::InProgress, "media started"),
            (
                at(100.0),
                State::InProgress,
                State::Paused,
                "pause button (pause 1 of 3)"
            ),
            (at(200.0), State::Paused, State::InProgress, "resume button"),
            (
                at(300.0),
                State::InProgress,
                State::Completed,
                "interviewer finished the interview"
            ),
        ]
    );
}

#[test]
fn a_late_tick_catches_up_every_due_timer_in_order() {
    let mut l = running();
    apply(&mut l, Event::MediaLost, at(60.0));
    let t = apply(&mut l, Event::Tick, at(5000.0));
    assert_eq!(t.changed_state, Some((State::InProgress, State::Abandoned)));
    assert_eq!(
        notifies(&t),
        vec![
            (State::InProgress, State::Paused),
            (State::Paused, State::Abandoned)
        ]
    );
    assert!(!t.effects.contains(&Effect::EmitResumePrompt));
    assert_eq!(l.end_reason, Some(EndReason::PauseExpired));
    assert_eq!(l.ended_at, Some(at(1860.0)), "expiry counts from the loss");
}

#[test]
fn events_after_an_overdue_deadline_see_the_timers_first() {
    let l = paused();
    // The pause expired at 1900 s; nobody ticked. Resuming is refused, nothing stored changes.
    let r = refused(&l, Event::ResumeRequested, at(2000.0));
    assert_eq!(r.code, codes::SESSION_ENDED);
    assert!(r.message.contains("pause_expired"), "{}", r.message);
    // Media restored after the grace ran out: the pause happened, then it resumes.
    let mut l = running();
    apply(&mut l, Event::MediaLost, at(60.0));
    let t = apply(&mut l, Event::MediaRestored, at(75.0));
    assert_eq!(
        notifies(&t),
        vec![
            (State::InProgress, State::Paused),
            (State::Paused, State::InProgress)
        ]
    );
    assert_eq!(l.pause_count(), 1);
}

#[test]
fn an_overdue_resume_prompt_waits_for_a_tick() {
    let l = paused();
    // Resuming long after the prompt was due: no prompt.
    let t = ok(&l, Event::ResumeRequested, at(400.0));
    assert!(!t.effects.contains(&Effect::EmitResumePrompt));
    // Another event while still paused leaves the prompt pending for the next Tick.
    let t = ok(&l, Event::TurnCaptured, at(400.0));
    assert!(t.effects.is_empty());
    assert_eq!(next_deadline(&t.lifecycle), Some(at(220.0)));
    let t = ok(&t.lifecycle, Event::Tick, at(400.0));
    assert_eq!(t.effects, vec![Effect::EmitResumePrompt]);
    assert_eq!(t.lifecycle.pauses[0].resume_prompt_at, Some(at(400.0)));
}

#[test]
fn a_paused_lifecycle_survives_a_restart_through_json() {
    let l = paused();
    let json = serde_json::to_string(&l).unwrap();
    assert!(json.contains("\"state\":\"paused\""), "{json}");
    assert!(
        json.contains(&format!("\"started_at\":{}", at(100.0).0)),
        "{json}"
    );
    let back: Lifecycle = serde_json::from_str(&json).unwrap();
    assert_eq!(back, l);
    let original_pause = l.paused_at().unwrap();
    let expiry = original_pause.plus_secs(back.config.pause_expiry_secs);
    assert_eq!(next_deadline(&back), Some(at(220.0)));
    let t = ok(&back, Event::Tick, expiry);
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::PauseExpired));
    assert_eq!(t.lifecycle.drop_off.as_deref(), Some("q4"));
    let ended = serde_json::to_value(&t.lifecycle).unwrap();
    assert_eq!(ended["state"], "abandoned");
    assert_eq!(ended["end_reason"], "pause_expired");
}

#[test]
fn serde_shapes_are_stable() {
    assert_eq!(serde_json::to_string(&Millis(5)).unwrap(), "5");
    assert_eq!(
        serde_json::to_string(&State::AdminEnded).unwrap(),
        "\"admin_ended\""
    );
    for s in State::ALL {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    let reasons = [
        EndReason::Completed,
        EndReason::Declined,
        EndReason::PauseExpired,
        EndReason::PauseLimit,
        EndReason::Stuck,
        EndReason::Admin,
        EndReason::ParticipantEnded,
    ];
    for r in reasons {
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.as_str())
        );
    }
    assert_eq!(
        serde_json::to_string(&EndReason::ParticipantEnded).unwrap(),
        "\"participant_ended\""
    );
    assert_eq!(EndReason::ParticipantEnded.to_string(), "participant_ended");
    assert_eq!(
        serde_json::to_string(&Event::ParticipantEnded).unwrap(),
        r#"{"type":"participant_ended"}"#
    );
    assert_eq!(
        serde_json::to_string(&EndReason::Technical("x".into())).unwrap(),
        r#"{"technical":"x"}"#
    );
    let e: Event = serde_json::from_str(r#"{"type":"progress","point":"q2"}"#).unwrap();
    assert_eq!(e, Event::Progress { point: "q2".into() });
    for e in Event::samples() {
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.name());
    }
}

#[test]
fn config_defaults_and_partial_overrides() {
    let c: LifecycleConfig = serde_json::from_str(r#"{"pause_limit":5}"#).unwrap();
    assert_eq!(
        c,
        LifecycleConfig {
            pause_limit: 5,
            ..LifecycleConfig::default()
        }
    );
    let d = LifecycleConfig::default();
    assert_eq!(
        (
            d.pause_limit,
            d.resume_prompt_secs,
            d.pause_expiry_secs,
            d.disconnect_grace_secs,
            d.stuck_secs
        ),
        (3, 120, 1800, 10, 1800)
    );
    assert_eq!(d.validate(), Ok(()));
    let bad = LifecycleConfig {
        stuck_secs: 0,
        ..d.clone()
    };
    assert_eq!(bad.validate().unwrap_err().field, "stuck_secs");
    // Custom durations drive the timers.
    let quick = LifecycleConfig {
        resume_prompt_secs: 5,
        pause_expiry_secs: 20,
        ..d
    };
    let mut l = Lifecycle::new(quick, at(0.0));
    apply(&mut l, Event::ConsentAccepted, at(0.0));
    apply(&mut l, Event::MediaStarted, at(0.0));
    apply(&mut l, Event::PauseRequested, at(10.0));
    assert_eq!(next_deadline(&l), Some(at(15.0)));
    apply(&mut l, Event::Tick, at(15.0));
    assert_eq!(next_deadline(&l), Some(at(30.0)));
    assert_eq!(
        apply(&mut l, Event::Tick, at(30.0)).lifecycle.state,
        State::Abandoned
    );
}

/// Every event in every situation: the accepted ones land where the rules say, the refused
/// ones carry the right code and leave the record exactly as it was.
#[test]
fn every_event_in_every_state() {
    use Event as E;
    use State as S;
    let mut media_lost_pause = running();
    apply(&mut media_lost_pause, E::MediaLost, at(50.0));
    apply(&mut media_lost_pause, E::Tick, at(60.0));
    let mut grace_armed = running();
    apply(&mut grace_armed, E::MediaLost, at(99.0));
    let mut lost_with_none_left = exhausted();
    apply(&mut lost_with_none_left, E::MediaLost, at(500.0));
    apply(&mut lost_with_none_left, E::Tick, at(510.0));
    let mut restart_pause = exhausted();
    apply(&mut restart_pause, E::ServerRestarted, at(400.0));
    let ended = |e: Event| ok(&running(), e, at(50.0)).lifecycle;

    let situations: Vec<(&str, Lifecycle)> = vec![
        ("created", created()),
        ("consented", consented()),
        ("in_progress", running()),
        ("grace_armed", grace_armed),
        ("exhausted", exhausted()),
        ("paused_button", paused()),
        ("paused_media", media_lost_pause),
        ("paused_restart", restart_pause),
        ("completed", ended(E::InterviewFinished)),
        (
            "abandoned",
            ended(E::TechnicalFailure { detail: "x".into() }),
        ),
        ("abandoned", lost_with_none_left),
        (
            "abandoned",
            ok(&created(), E::ConsentDeclined, at(0.0)).lifecycle,
        ),
        ("abandoned", ended(E::ParticipantEnded)),
        ("admin_ended", ended(E::AdminEnd)),
        ("restarted", ended(E::AdminRestart)),
    ];

    // Expected outcome: Ok(resulting state) or Err(refusal code).
    fn expect(situation: &str, event: &Event) -> Result<State, &'static str> {
        const INVALID: &str = codes::INVALID_TRANSITION;
        match situation {
            "completed" | "abandoned" | "admin_ended" => match event {
                E::AdminRestart => Ok(S::Restarted),
                _ => Err(codes::SESSION_ENDED),
            },
            "restarted" => Err(codes::SESSION_ENDED),
            "created" | "consented" => {
                let fresh = situation == "created";
                match event {
                    E::ConsentAccepted if fresh => Ok(S::Created),
                    E::ConsentDeclined if fresh => Ok(S::Abandoned),
                    E::MediaStarted if fresh => Err(codes::CONSENT_REQUIRED),
                    E::MediaStarted => Ok(S::InProgress),
                    E::ParticipantEnded if !fresh => Ok(S::Abandoned),
                    E::Progress { .. } | E::Tick => Ok(S::Created),
                    E::AdminEnd => Ok(S::AdminEnded),
                    E::AdminRestart => Ok(S::Restarted),
                    E::TechnicalFailure { .. } => Ok(S::Abandoned),
                    E::MarkComplete | E::MarkAbandoned => Err(codes::NOT_STUCK),
                    _ => Err(INVALID),
                }
            }
            "in_progress" | "grace_armed" | "exhausted" => {
                let none_left = situation == "exhausted";
                match event {
                    E::MediaStarted
                    | E::MediaLost
                    | E::MediaRestored
                    | E::Progress { .. }
                    | E::TurnCaptured
                    | E::Activity
                    | E::Tick => Ok(S::InProgress),
                    E::PauseRequested if none_left => Err(codes::PAUSE_LIMIT_REACHED),
                    E::PauseRequested => Ok(S::Paused),
                    E::TabClosed if none_left => Ok(S::Abandoned),
                    E::TabClosed => Ok(S::Paused),
                    // Not the participant's pause: even with none left it pauses.
                    E::ServerRestarted => Ok(S::Paused),
                    E::InterviewFinished => Ok(S::Completed),
                    E::ParticipantEnded => Ok(S::Abandoned),
                    E::AdminEnd => Ok(S::AdminEnded),
                    E::AdminRestart => Ok(S::Restarted),
                    E::TechnicalFailure { .. } => Ok(S::Abandoned),
                    // Grace armed at 99 s: the last activity was at 0 s, so it is stuck
                    // (no turn captured); the others had activity a second ago.
                    E::MarkComplete if situation == "grace_armed" => Err(codes::NO_TRANSCRIPT),
                    E::MarkAbandoned if situation == "grace_armed" => Ok(S::Abandoned),
                    E::MarkComplete | E::MarkAbandoned => Err(codes::NOT_STUCK),
                    _ => Err(INVALID),
                }
            }
            "paused_button" | "paused_media" | "paused_restart" => match event {
                E::ResumeRequested | E::MediaStarted => Ok(S::InProgress),
                E::MediaRestored if situation == "paused_media" => Ok(S::InProgress),
                E::Progress { .. } | E::TurnCaptured | E::Tick => Ok(S::Paused),
                E::InterviewFinished => Ok(S::Completed),
                E::ParticipantEnded => Ok(S::Abandoned),
                E::AdminEnd => Ok(S::AdminEnded),
                E::AdminRestart => Ok(S::Restarted),
                E::TechnicalFailure { .. } => Ok(S::Abandoned),
                E::MarkComplete | E::MarkAbandoned => Err(codes::NOT_STUCK),
                _ => Err(INVALID),
            },
            other => panic!("unknown situation {other}"),
        }
    }

    let mut checked = 0;
    for (name, l) in &situations {
        let name = *name;
        // Just after the last thing that happened: no timer is due in any situation.
        let last = [
            Some(l.created_at),
            l.consented_at,
            l.media_lost_at,
            l.last_activity,
            l.history.last().map(|c| c.at),
        ];
        let now = last.into_iter().flatten().max().unwrap().plus_secs(1);
        assert!(next_deadline(l).is_none_or(|d| d > now), "{name}");
        for event in Event::samples() {
            let before = l.clone();
            let what = format!("{} in {name}", event.name());
            let got = step(l, event.clone(), now);
            assert_eq!(l, &before, "{what}: input untouched");
            match (expect(name, &event), got) {
                (Ok(state), Ok(t)) => {
                    assert_eq!(t.lifecycle.state, state, "{what}");
                    let changed = (state != l.state).then_some((l.state, state));
                    assert_eq!(t.changed_state, changed, "{what}");
                    if state.is_terminal() {
                        assert!(t.lifecycle.end_reason.is_some(), "{what}");
                        // An ended session restarted keeps its end.
                        let end = if l.state.is_terminal() {
                            l.ended_at
                        } else {
                            Some(now)
                        };
                        assert_eq!(t.lifecycle.ended_at, end, "{what}");
                        assert_eq!(next_deadline(&t.lifecycle), None, "{what}");
                    }
                }
                (Err(code), Err(r)) => {
                    assert_eq!(r.code, code, "{what}: {}", r.message);
                    assert!(!r.message.is_empty());
                }
                (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, situations.len() * Event::samples().len());
}

#[test]
fn early_ticks_change_nothing() {
    for l in [created(), consented(), running(), paused()] {
        let t = ok(&l, Event::Tick, at(101.0));
        assert_eq!(t.lifecycle, l);
        assert!(t.effects.is_empty());
        assert_eq!(t.changed_state, None);
    }
}

#[test]
fn a_clock_that_steps_back_never_makes_negative_durations() {
    let l = running();
    let t = ok(&l, Event::PauseRequested, at(-10.0));
    assert_eq!(t.lifecycle.active_duration_ms(at(-20.0)), 0);
    assert_eq!(t.lifecycle.total_duration_ms(at(-20.0)), Some(0));
}

mod admin_marks;
mod never_started;
mod server_restart;
