//! Recovery after a restart of the process (issue 10, item 9.1): a session that was in
//! progress is paused as `server_restart`, which is not one of the participant's pauses.

use super::*;

on_both_stores!(
    a_restarted_process_pauses_sessions_in_progress_without_using_a_pause,
    a_restart_with_no_pause_left_keeps_the_session_and_its_limit,
    a_node_starting_beside_others_pauses_only_the_sessions_no_node_holds,
);

/// The process dies and a new one starts over the same database (and clock).
async fn restart(h: &Harness) -> SessionService {
    let restarted = service_over(
        h.store.clone(),
        h.clock.clone(),
        h.media.clone(),
        h.dir.path(),
    );
    restarted.recover_after_restart().await;
    restarted
}

async fn a_restarted_process_pauses_sessions_in_progress_without_using_a_pause(h: Harness) {
    let p = h.participant_in_progress().await;
    h.clock.advance(secs(30));
    let restarted = restart(&h).await;
    let lc = h.lifecycle(&p.session_id).await;
    assert_eq!(lc.state, State::Paused);
    let pause = lc.current_pause().expect("paused");
    assert_eq!(pause.cause, PauseCause::ServerRestart);
    assert_eq!(pause.started_at, Millis(T0.0 + 30_000));
    assert_eq!((lc.pause_count(), lc.pauses_remaining()), (0, 3));
    // Timers still run for it: the resume prompt, then the expiry.
    h.clock.advance(secs(1800));
    restarted.fire_due_timers().await;
    let row = h.row(&p.session_id).await;
    assert_eq!(row.state, State::Abandoned);
    assert_eq!(row.end_reason.as_deref(), Some("pause_expired"));
}

async fn a_restart_with_no_pause_left_keeps_the_session_and_its_limit(h: Harness) {
    let p = h.participant_in_progress().await;
    for _ in 0..3 {
        h.clock.advance(secs(10));
        h.service.pause(&p.invite, false).await.expect("paused");
        h.clock.advance(secs(10));
        h.service.resume(&p.invite).await.expect("resumed");
    }
    assert_eq!(h.lifecycle(&p.session_id).await.pauses_remaining(), 0);
    h.clock.advance(secs(30));
    let restarted = restart(&h).await;
    // Before the fix: media lost -> after the grace, abandoned (`pause_limit`).
    h.clock.advance(secs(60));
    restarted.fire_due_timers().await;
    let lc = h.lifecycle(&p.session_id).await;
    assert_eq!(lc.state, State::Paused, "not ended: {:?}", lc.end_reason);
    assert_eq!(lc.pause_count(), 3);
    // The participant returns on the restarted server: a new offer, the peer connects.
    restarted
        .start_media(&p.invite, "v=0\r\n")
        .await
        .expect("offer answered after the restart");
    restarted
        .handle_media_event(MediaEvent::Connected {
            session_id: p.session_id.clone(),
        })
        .await;
    assert_eq!(h.state(&p.session_id).await, State::InProgress);
    // Their own limit is unchanged: a fourth pause is still refused.
    let err = restarted
        .pause(&p.invite, false)
        .await
        .expect_err("no pause left");
    assert_eq!(err.code, "pause_limit_reached");
}

async fn a_node_starting_beside_others_pauses_only_the_sessions_no_node_holds(h: Harness) {
    let held = h.participant_in_progress().await;
    let orphan = h.participant_in_progress().await;
    h.clock.advance(secs(30));
    // A node starts beside others sharing the store: `held` runs on a live node (its
    // announcements list it), `orphan` was on the node that died.
    let started = service_over(
        h.store.clone(),
        h.clock.clone(),
        h.media.clone(),
        h.dir.path(),
    );
    started
        .recover_sessions_not_held(|id| id == held.session_id)
        .await;
    assert_eq!(h.state(&held.session_id).await, State::InProgress);
    let lc = h.lifecycle(&orphan.session_id).await;
    assert_eq!(lc.state, State::Paused);
    assert_eq!(
        lc.current_pause().expect("paused").cause,
        PauseCause::ServerRestart
    );
}
