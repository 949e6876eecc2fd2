//! Admin actions through the service and the real store: restart after an admin end and
//! after a technical abandon (the old session keeps its data, a new one is issued for the
//! same invite), mark complete / abandoned only on a stuck session.

use super::*;

on_both_stores!(
    restart_after_an_admin_end_and_after_a_technical_abandon,
    marks_apply_only_to_stuck_sessions,
);

async fn restart_after_an_admin_end_and_after_a_technical_abandon(h: Harness) {
    let p = h.participant_in_progress().await;
    h.media_event(MediaEvent::TurnEnded {
        session_id: p.session_id.clone(),
        role: Role::Participant,
        start_ms: 1_000,
        end_ms: 2_000,
    })
    .await;
    h.service.admin_end(&p.session_id).await.expect("ended");
    let r = h
        .service
        .admin_restart(&p.session_id)
        .await
        .expect("restart");
    assert_eq!(r.restarted.state, State::Restarted);
    assert_eq!(r.restarted.end_reason.as_deref(), Some("admin"));
    assert_eq!(r.session.invite_token, p.invite.token);
    assert_eq!(r.session.state, State::Created);
    // The old one keeps its turns.
    assert_eq!(
        h.service.transcript(&p.session_id).await.expect("t").len(),
        1
    );
    // Restarting it again is refused: it is already restarted.
    let again = h.service.admin_restart(&p.session_id).await.unwrap_err();
    assert_eq!(again.code, "session_ended");

    let q = h.participant_in_progress().await;
    h.media_event(MediaEvent::AgentFailed {
        session_id: q.session_id.clone(),
        detail: "unreachable".into(),
    })
    .await;
    let row = h.row(&q.session_id).await;
    assert_eq!(row.state, State::Abandoned);
    let r = h
        .service
        .admin_restart(&q.session_id)
        .await
        .expect("restart");
    assert_eq!(r.restarted.state, State::Restarted);
    assert!(
        r.restarted
            .end_reason
            .unwrap_or_default()
            .starts_with("technical")
    );
    assert_eq!(r.session.invite_token, q.invite.token);
}

async fn marks_apply_only_to_stuck_sessions(h: Harness) {
    let p = h.participant_in_progress().await;
    let err = h.service.mark_abandoned(&p.session_id).await.unwrap_err();
    assert_eq!(err.code, "not_stuck");
    assert_eq!(err.status, axum::http::StatusCode::CONFLICT);
    h.advance(secs(lifecycle::MARK_STUCK_AFTER_SECS)).await;
    let err = h.service.mark_complete(&p.session_id).await.unwrap_err();
    assert_eq!(err.code, "no_transcript");
    let row = h
        .service
        .mark_abandoned(&p.session_id)
        .await
        .expect("marked");
    assert_eq!(row.state, State::Abandoned);
    assert_eq!(h.media.calls_for(&p.session_id), ["open", "finish"]);
    let err = h.service.mark_complete(&p.session_id).await.unwrap_err();
    assert_eq!(err.code, "session_ended");
}

/// SQLite only: a database file from before migration 0005 (PostgreSQL has no such past).
#[tokio::test]
async fn sessions_stored_before_summaries_get_theirs_in_the_background() {
    let h = Harness::on(Backend::Sqlite).await;
    let p = h.participant_in_progress().await;
    h.media_event(MediaEvent::TurnEnded {
        session_id: p.session_id.clone(),
        role: Role::Participant,
        start_ms: 1_000,
        end_ms: 2_000,
    })
    .await;
    h.service.admin_end(&p.session_id).await.expect("ended");
    // As a database from before migration 0005 has it: no summary.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        h.dir.path().join("earshot.db").display()
    ))
    .await
    .expect("second connection");
    sqlx::query("UPDATE sessions SET summarized = 0, turn_count = 0, active_ms = 0")
        .execute(&db)
        .await
        .expect("reset");
    assert_eq!(h.row(&p.session_id).await.summary.turn_count, 0);
    assert_eq!(h.service.backfill_summaries().await, 1);
    let row = h.row(&p.session_id).await;
    assert_eq!(row.summary.turn_count, 1);
    assert_eq!(h.service.backfill_summaries().await, 0, "once");
}
