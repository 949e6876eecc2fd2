//! Sessions opened but never consented end after `never_started_secs` as abandoned, reason
//! and drop-off `never_started`; a consent stops that timer.

use super::*;

const DAYS_7: f64 = 7.0 * 24.0 * 3600.0;

#[test]
fn an_unconsented_session_ends_as_never_started_after_its_time() {
    // Created at at(-60).
    let mut l = created();
    assert_eq!(next_deadline(&l), Some(at(-60.0 + DAYS_7)));
    let t = apply(&mut l, Event::Tick, at(-60.0 + DAYS_7 - 0.001));
    assert_eq!(t.changed_state, None);
    assert_eq!(l.state, State::Created);
    let t = apply(&mut l, Event::Tick, at(-60.0 + DAYS_7));
    assert_eq!(t.changed_state, Some((State::Created, State::Abandoned)));
    assert_eq!(l.end_reason, Some(EndReason::NeverStarted));
    assert_eq!(l.drop_off.as_deref(), Some("never_started"));
    assert_eq!(l.ended_at, Some(at(-60.0 + DAYS_7)));
    assert_eq!(notifies(&t), [(State::Created, State::Abandoned)]);
    assert_eq!(
        serde_json::to_string(&EndReason::NeverStarted).unwrap(),
        "\"never_started\""
    );
}

#[test]
fn a_late_consent_after_the_time_is_refused_as_ended() {
    let l = created();
    let r = refused(&l, Event::ConsentAccepted, at(DAYS_7 + 1.0));
    assert_eq!(r.code, codes::SESSION_ENDED);
}

#[test]
fn consent_stops_the_timer() {
    let l = consented();
    assert_eq!(next_deadline(&l), None);
    let t = ok(&l, Event::Tick, at(10.0 * DAYS_7));
    assert_eq!(t.lifecycle.state, State::Created);
}

#[test]
fn the_time_is_configurable_and_must_be_positive() {
    let config = LifecycleConfig {
        never_started_secs: 30,
        ..LifecycleConfig::default()
    };
    let l = Lifecycle::new(config.clone(), at(0.0));
    assert_eq!(next_deadline(&l), Some(at(30.0)));
    let bad = LifecycleConfig {
        never_started_secs: 0,
        ..config
    };
    assert_eq!(bad.validate().unwrap_err().field, "never_started_secs");
}
