//! Webhook events from lifecycle steps: written with the step that ends a session, fanned out
//! to the endpoints that want the event and its campaign, once even when the step lost a
//! version race; and the outbox's delivery states (lease, retry, delivered, redelivery).

use super::races::raced_harness;
use super::*;
use crate::store::webhooks::{AttemptOutcome, AttemptRow, EndpointRow, WebhookStore};
use std::sync::atomic::Ordering;

on_both_stores!(
    an_ended_session_writes_its_event_for_the_endpoints_that_want_it,
    deliveries_are_leased_retried_delivered_and_redelivered,
    old_events_go_once_their_deliveries_are_done,
);

async fn endpoint(h: &Harness, id: &str, events: &str, campaign: Option<&str>) {
    h.store
        .insert_endpoint(&EndpointRow {
            id: id.into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: crate::webhooks::signature::new_secret(),
            events: events.into(),
            campaign_id: campaign.map(String::from),
            created_at: T0.0,
        })
        .await
        .expect("endpoint");
}

async fn delivery_count(h: &Harness, endpoint: &str) -> usize {
    h.store
        .deliveries(endpoint, 100)
        .await
        .expect("deliveries")
        .len()
}

async fn an_ended_session_writes_its_event_for_the_endpoints_that_want_it(h: Harness) {
    endpoint(&h, "whk_all", r#"["session.admin_ended"]"#, None).await;
    endpoint(
        &h,
        "whk_other",
        r#"["session.admin_ended"]"#,
        Some("cmp_other"),
    )
    .await;
    endpoint(
        &h,
        "whk_mine",
        r#"["session.admin_ended"]"#,
        Some("cmp_default"),
    )
    .await;
    endpoint(&h, "whk_done", r#"["session.completed"]"#, None).await;
    let p = h.participant_in_progress().await;
    h.service.admin_end(&p.session_id).await.expect("ended");

    assert_eq!(delivery_count(&h, "whk_all").await, 1);
    assert_eq!(delivery_count(&h, "whk_mine").await, 1);
    assert_eq!(delivery_count(&h, "whk_other").await, 0, "another campaign");
    assert_eq!(delivery_count(&h, "whk_done").await, 0, "another event");
    let d = &h.store.deliveries("whk_all", 10).await.expect("rows")[0];
    assert_eq!(d.event_type, "session.admin_ended");
    assert_eq!(d.session_id.as_deref(), Some(p.session_id.as_str()));
    assert_eq!(d.status, "pending");

    let due = h.store.claim_due(T0.0, 1000, 10).await.expect("due");
    assert_eq!(due.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&due[0].payload).expect("json");
    assert_eq!(body["type"], "session.admin_ended");
    assert_eq!(body["data"]["session_id"], p.session_id.as_str());
    assert_eq!(body["data"]["state"], "admin_ended");
    assert!(body["data"]["ended_at"].is_string(), "{body}");
    assert_eq!(
        due[0].event_id, due[1].event_id,
        "one event, two deliveries"
    );
}

#[tokio::test]
async fn an_end_that_loses_a_version_race_writes_its_event_once() {
    let (h, raced) = raced_harness().await;
    endpoint(&h, "whk_all", r#"["session.admin_ended"]"#, None).await;
    let p = h.participant_in_progress().await;
    raced.races_left.store(1, Ordering::SeqCst);
    h.service.admin_end(&p.session_id).await.expect("ended");
    assert_eq!(raced.conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(delivery_count(&h, "whk_all").await, 1);
}

async fn deliveries_are_leased_retried_delivered_and_redelivered(h: Harness) {
    endpoint(&h, "whk_all", r#"["session.admin_ended"]"#, None).await;
    let p = h.participant_in_progress().await;
    h.service.admin_end(&p.session_id).await.expect("ended");
    let now = T0.0 + 10_000;
    let first = h.store.claim_due(now, 5_000, 10).await.expect("due");
    assert_eq!(first.len(), 1);
    assert!(
        h.store
            .claim_due(now, 5_000, 10)
            .await
            .expect("due")
            .is_empty(),
        "a claimed delivery is leased"
    );
    // The attempt never finished (a crash): the lease runs out and it is due again.
    let again = h
        .store
        .claim_due(now + 5_000, 5_000, 10)
        .await
        .expect("due");
    assert_eq!(again.len(), 1);
    let attempt = |status: Option<i64>| AttemptRow {
        delivery_id: again[0].id.clone(),
        at: now + 5_000,
        status_code: status,
        response_ms: 12,
        error: status.is_none().then(|| "connection failed".to_string()),
    };
    h.store
        .record_attempt(&attempt(None), &AttemptOutcome::Retry { at: now + 6_000 })
        .await
        .expect("attempt");
    assert_eq!(
        WebhookStore::next_due(&*h.store).await.expect("next"),
        Some(now + 6_000)
    );
    h.store
        .record_attempt(&attempt(Some(200)), &AttemptOutcome::Delivered)
        .await
        .expect("attempt");
    assert_eq!(WebhookStore::next_due(&*h.store).await.expect("next"), None);
    let d = h
        .store
        .get_delivery(&again[0].id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 2));
    let attempts = h
        .store
        .attempts(std::slice::from_ref(&d.id))
        .await
        .expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        vec![None, Some(200)]
    );
    assert!(
        h.store
            .redeliver(&d.id, now + 9_000)
            .await
            .expect("redeliver")
    );
    let d = h
        .store
        .get_delivery(&d.id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        (d.status.as_str(), d.next_attempt_at),
        ("pending", Some(now + 9_000))
    );
}

async fn old_events_go_once_their_deliveries_are_done(h: Harness) {
    endpoint(&h, "whk_all", r#"["session.admin_ended"]"#, None).await;
    for _ in 0..2 {
        let p = h.participant_in_progress().await;
        h.service.admin_end(&p.session_id).await.expect("ended");
    }
    let due = h.store.claim_due(T0.0, 1000, 10).await.expect("due");
    assert_eq!(due.len(), 2);
    let done = AttemptRow {
        delivery_id: due[0].id.clone(),
        at: T0.0,
        status_code: Some(204),
        response_ms: 3,
        error: None,
    };
    h.store
        .record_attempt(&done, &AttemptOutcome::Delivered)
        .await
        .expect("attempt");
    assert_eq!(h.store.prune(T0.0).await.expect("prune"), 0, "not old yet");
    assert_eq!(
        h.store.prune(T0.0 + 1).await.expect("prune"),
        1,
        "the delivered one"
    );
    let left = h.store.deliveries("whk_all", 10).await.expect("rows");
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].id, due[1].id,
        "a pending delivery stays, however old"
    );
    assert!(
        h.store
            .attempts(std::slice::from_ref(&due[0].id))
            .await
            .expect("attempts")
            .is_empty()
    );
}
