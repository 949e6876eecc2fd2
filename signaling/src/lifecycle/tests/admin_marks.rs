//! Admin actions on sessions that ended or hang: restart after an end keeps the old session's
//! end and data and issues a new one; mark complete / abandoned only on a stuck session.

use super::*;

fn effects_have_restart(t: &Transition) -> bool {
    t.effects.contains(&Effect::IssueRestart)
}

#[test]
fn an_admin_ended_session_can_be_restarted_and_keeps_its_end() {
    let ended = ok(&running(), Event::AdminEnd, at(50.0)).lifecycle;
    let t = ok(&ended, Event::AdminRestart, at(70.0));
    assert_eq!(t.lifecycle.state, State::Restarted);
    assert_eq!(t.changed_state, Some((State::AdminEnded, State::Restarted)));
    assert_eq!(t.lifecycle.ended_at, Some(at(50.0)), "the end stays");
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Admin));
    assert!(effects_have_restart(&t));
    // The media already stopped and the recordings were finalized at the end.
    assert!(!t.effects.contains(&Effect::StopMedia));
    assert!(!t.effects.contains(&Effect::FinalizeRecordings));
    assert_eq!(notifies(&t), [(State::AdminEnded, State::Restarted)]);
}

#[test]
fn a_technical_abandon_can_be_restarted_once() {
    let detail = "agent unreachable".to_string();
    let ended = ok(&running(), Event::TechnicalFailure { detail }, at(50.0)).lifecycle;
    let restarted = ok(&ended, Event::AdminRestart, at(60.0)).lifecycle;
    assert_eq!(
        restarted.end_reason,
        Some(EndReason::Technical("agent unreachable".into()))
    );
    let r = refused(&restarted, Event::AdminRestart, at(61.0));
    assert_eq!(r.code, codes::SESSION_ENDED);
}

#[test]
fn mark_complete_needs_a_stuck_session_with_a_turn() {
    let mut l = running();
    apply(&mut l, Event::TurnCaptured, at(10.0));
    let stuck_at = 10.0 + MARK_STUCK_AFTER_SECS as f64;
    let r = refused(&l, Event::MarkComplete, at(stuck_at - 1.0));
    assert_eq!(r.code, codes::NOT_STUCK);
    let t = ok(&l, Event::MarkComplete, at(stuck_at));
    assert_eq!(t.lifecycle.state, State::Completed);
    assert_eq!(t.lifecycle.end_reason, Some(EndReason::Admin));
    assert_eq!(t.lifecycle.ended_at, Some(at(stuck_at)));
    assert!(t.cause.contains("marked complete by admin"), "{}", t.cause);
    assert!(t.effects.contains(&Effect::FinalizeRecordings));
}

#[test]
fn mark_complete_without_a_turn_is_refused_but_abandoned_works() {
    let l = running();
    let later = at(MARK_STUCK_AFTER_SECS as f64);
    assert_eq!(
        refused(&l, Event::MarkComplete, later).code,
        codes::NO_TRANSCRIPT
    );
    let t = ok(&l, Event::MarkAbandoned, later);
    assert_eq!(t.lifecycle.state, State::Abandoned);
}

#[test]
fn marks_are_refused_outside_in_progress() {
    let far = at(10_000.0);
    for l in [created(), consented(), paused()] {
        for e in [Event::MarkComplete, Event::MarkAbandoned] {
            // A paused session's expiry fires first at `far`: use a time before it.
            let now = if l.state == State::Paused {
                at(200.0)
            } else {
                far
            };
            assert_eq!(refused(&l, e, now).code, codes::NOT_STUCK);
        }
    }
    let ended = ok(&running(), Event::AdminEnd, at(1.0)).lifecycle;
    assert_eq!(
        refused(&ended, Event::MarkAbandoned, far).code,
        codes::SESSION_ENDED
    );
}
