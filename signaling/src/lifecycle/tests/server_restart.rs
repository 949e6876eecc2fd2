//! A restart of the server is not the participant's pause (issue 10, item 9.1): the session
//! that was in progress is paused as `server_restart`, which uses none of their pauses and
//! never ends the session, while every other rule (resume, expiry) still applies.

use super::*;

fn restart_pause(l: &Lifecycle) -> Option<&Pause> {
    l.pauses
        .iter()
        .find(|p| p.cause == PauseCause::ServerRestart)
}

#[test]
fn a_server_restart_pauses_without_using_a_pause() {
    let t = ok(&running(), Event::ServerRestarted, at(30.0));
    let l = &t.lifecycle;
    assert_eq!(l.state, State::Paused);
    assert_eq!(t.changed_state, Some((State::InProgress, State::Paused)));
    assert_eq!(non_notify(&t), vec![Effect::PauseMedia]);
    assert_eq!(l.pauses.len(), 1, "listed with the pauses");
    assert_eq!(l.pauses[0].cause, PauseCause::ServerRestart);
    assert_eq!(l.pauses[0].started_at, at(30.0));
    assert_eq!(l.pause_count(), 0, "not counted");
    assert_eq!(l.pauses_remaining(), 3);
    assert!(
        l.history[1].cause.contains("not counted"),
        "{}",
        l.history[1].cause
    );
    assert_eq!(
        serde_json::to_value(PauseCause::ServerRestart).unwrap(),
        "server_restart"
    );
}

#[test]
fn with_no_pause_left_a_server_restart_pauses_instead_of_abandoning() {
    let mut l = exhausted();
    assert_eq!(l.pauses_remaining(), 0);
    let t = apply(&mut l, Event::ServerRestarted, at(400.0));
    assert_eq!(t.lifecycle.state, State::Paused, "{}", t.cause);
    assert_eq!(l.end_reason, None);
    assert_eq!(l.pause_count(), 3);
    // The participant comes back on the restarted server and carries on.
    apply(&mut l, Event::MediaStarted, at(420.0));
    assert_eq!(l.state, State::InProgress);
    assert!(restart_pause(&l).is_some_and(|p| p.ended_at == Some(at(420.0))));
    // Their own limit is what it was: no fourth pause, and a disconnect with none left ends.
    let r = refused(&l, Event::PauseRequested, at(430.0));
    assert_eq!(r.code, codes::PAUSE_LIMIT_REACHED);
    let t = ok(&l, Event::TabClosed, at(430.0));
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::PauseLimit));
}

#[test]
fn after_a_server_restart_every_pause_is_still_there() {
    let mut l = running();
    apply(&mut l, Event::ServerRestarted, at(10.0));
    apply(&mut l, Event::ResumeRequested, at(20.0));
    for i in 0..3 {
        let base = 100.0 * f64::from(i + 1);
        let t = apply(&mut l, Event::PauseRequested, at(base));
        assert!(
            t.cause.contains(&format!("pause {} of 3", i + 1)),
            "{}",
            t.cause
        );
        apply(&mut l, Event::ResumeRequested, at(base + 10.0));
    }
    assert_eq!(l.pauses.len(), 4);
    assert_eq!(l.pause_count(), 3);
    let r = refused(&l, Event::PauseRequested, at(500.0));
    assert_eq!(r.code, codes::PAUSE_LIMIT_REACHED);
}

#[test]
fn a_server_restart_replaces_a_running_grace_timer() {
    let mut l = exhausted();
    apply(&mut l, Event::MediaLost, at(400.0));
    let t = apply(&mut l, Event::ServerRestarted, at(405.0));
    assert_eq!(t.lifecycle.state, State::Paused);
    assert_eq!(l.media_lost_at, None);
    // The grace deadline (at 410) is gone: only the pause timers run.
    assert_eq!(next_deadline(&l), Some(at(405.0 + 120.0)));
}

#[test]
fn a_server_restart_pause_prompts_and_expires_like_any_pause() {
    let mut l = running();
    apply(&mut l, Event::ServerRestarted, at(10.0));
    let t = apply(&mut l, Event::Tick, at(130.0));
    assert_eq!(non_notify(&t), vec![Effect::EmitResumePrompt]);
    let t = apply(&mut l, Event::Tick, at(1810.0));
    assert_eq!(t.lifecycle.state, State::Abandoned);
    assert_eq!(l.end_reason, Some(EndReason::PauseExpired));
}

#[test]
fn only_a_session_in_progress_is_paused_by_a_restart() {
    for l in [created(), consented(), paused()] {
        let r = refused(&l, Event::ServerRestarted, at(200.0));
        assert_eq!(r.code, codes::INVALID_TRANSITION);
    }
}
