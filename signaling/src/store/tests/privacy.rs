//! The privacy port on either store: campaign settings, sealed originals, what the
//! retention sweep finds due, sweep reports, deletion tokens and requests.

use super::sessions::{seed, session};
use super::{Fixture, on_both_stores};
use crate::store::TurnRow;
use crate::store::privacy::{DeletionRequestRow, DueRow, PrivacyRow};
use earshot_vocab::{Role, State};

on_both_stores!(
    retention_and_redaction_fall_due_by_the_campaign_s_settings,
    originals_sweeps_tokens_and_deletion_requests_round_trip,
);

const DAY: i64 = 86_400_000;

async fn ended_session(store: &Fixture, id: &str, ended_at: i64) {
    let mut s = session(id, State::Completed, None);
    s.ended_at = Some(ended_at);
    store.insert_session(&s).await.unwrap();
}

async fn retention_and_redaction_fall_due_by_the_campaign_s_settings(store: Fixture) {
    seed(&*store).await;
    ended_session(&store, "ses_old", 0).await;
    ended_session(&store, "ses_new", 50 * DAY).await;
    store
        .insert_session(&session("ses_live", State::InProgress, None))
        .await
        .unwrap();
    // Defaults: audio kept 90 days, no delayed PII policy.
    assert_eq!(store.campaign_privacy("cmp_a").await.unwrap(), None);
    let due = store.recordings_due(90 * DAY, 10).await.unwrap();
    assert_eq!(
        due,
        [DueRow {
            session_id: "ses_old".into(),
            campaign_id: "cmp_a".into(),
            due_at: 90 * DAY
        }]
    );
    assert!(
        store
            .redactions_due(i64::MAX / 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let settings = PrivacyRow {
        pii_action: "mask".into(),
        pii_delay_days: 7,
        pii_keep_originals: true,
        pii_patterns: r#"[{"name":"ID","regex":"X\\d+"}]"#.into(),
        audio_retention_days: 30,
        auto_delete_requests: true,
    };
    store
        .set_campaign_privacy("cmp_a", &settings)
        .await
        .unwrap();
    assert_eq!(
        store.campaign_privacy("cmp_a").await.unwrap(),
        Some(settings)
    );
    let due: Vec<(String, i64)> = store
        .recordings_due(80 * DAY, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.session_id, d.due_at))
        .collect();
    assert_eq!(
        due,
        [
            ("ses_old".to_string(), 30 * DAY),
            ("ses_new".to_string(), 80 * DAY)
        ]
    );
    let redact = store.redactions_due(7 * DAY, 10).await.unwrap();
    assert_eq!(redact.len(), 1);
    assert_eq!(
        crate::store::privacy::PrivacyStore::next_due(&*store.store, 7 * DAY)
            .await
            .unwrap(),
        (Some(30 * DAY), Some(57 * DAY))
    );
    store
        .mark_recordings_deleted("ses_old", 31 * DAY)
        .await
        .unwrap();
    store.mark_pii_applied("ses_old", 31 * DAY).await.unwrap();
    assert_eq!(
        store.recordings_deleted_at("ses_old").await.unwrap(),
        Some(31 * DAY)
    );
    assert_eq!(store.recordings_due(80 * DAY, 10).await.unwrap().len(), 1);
    assert!(store.redactions_due(40 * DAY, 10).await.unwrap().is_empty());
}

async fn originals_sweeps_tokens_and_deletion_requests_round_trip(store: Fixture) {
    seed(&*store).await;
    ended_session(&store, "ses_a", 0).await;
    let turn = |seq| TurnRow {
        seq,
        role: Role::Participant,
        start_ms: seq * 1000,
        end_ms: None,
        text: "[EMAIL]".into(),
        words: 1,
        response_ms: None,
        sentiment: Some(0.25),
    };
    store
        .upsert_turns("ses_a", &[turn(1), turn(2)])
        .await
        .unwrap();
    store
        .set_turn_originals("ses_a", &[(2, vec![0, 159, 255, 1])])
        .await
        .unwrap();
    assert_eq!(
        store.turn_originals("ses_a").await.unwrap(),
        [(2, vec![0, 159, 255, 1])]
    );
    for at in 0..105 {
        store
            .insert_sweep(at, &format!(r#"{{"n":{at}}}"#))
            .await
            .unwrap();
    }
    assert_eq!(
        store.last_sweep().await.unwrap(),
        Some((104, r#"{"n":104}"#.to_string()))
    );
    // The newest 100 are kept: 0..5 went.
    assert_eq!(
        store
            .raw
            .execute("DELETE FROM retention_sweeps WHERE at < 5")
            .await,
        Ok(0)
    );
    assert_eq!(
        store
            .raw
            .execute("DELETE FROM retention_sweeps WHERE at < 6")
            .await,
        Ok(1)
    );
    store.set_deletion_token("ses_a", "hash_a").await.unwrap();
    assert_eq!(
        store.session_by_deletion_token("hash_a").await.unwrap(),
        Some(("ses_a".to_string(), "cmp_a".to_string()))
    );
    assert_eq!(store.session_by_deletion_token("nope").await.unwrap(), None);
    let request = DeletionRequestRow {
        id: "del_1".into(),
        session_id: "ses_a".into(),
        campaign_id: "cmp_a".into(),
        requested_at: 10,
        fulfilled_at: None,
        fulfilled_by: None,
    };
    store.insert_deletion_request(&request).await.unwrap();
    assert_eq!(
        store.pending_request_for("ses_a").await.unwrap(),
        Some(request.clone())
    );
    store.fulfil_requests("ses_a", 20, "policy").await.unwrap();
    assert_eq!(store.pending_request_for("ses_a").await.unwrap(), None);
    assert_eq!(
        store.deletion_request("del_1").await.unwrap(),
        Some(DeletionRequestRow {
            fulfilled_at: Some(20),
            fulfilled_by: Some("policy".into()),
            ..request
        })
    );
    assert_eq!(store.deletion_requests(10).await.unwrap().len(), 1);
}
