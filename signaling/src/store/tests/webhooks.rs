//! The webhook outbox on either store: fan-out to the endpoints that want an event, claims
//! with a lease that two processes never share, attempts and their outcome.

use super::{Fixture, on_both_stores};
use crate::store::webhooks::{AttemptOutcome, AttemptRow, EndpointRow, OutboxEvent};
use std::collections::BTreeSet;

on_both_stores!(events_fan_out_and_each_delivery_is_claimed_by_one_process_per_lease,);

fn event(n: usize) -> OutboxEvent {
    OutboxEvent {
        id: format!("msg_{n}"),
        kind: "session.completed".into(),
        session_id: Some(format!("ses_{n}")),
        campaign_id: Some("cmp_a".into()),
        payload: format!(r#"{{"n":{n}}}"#),
        created_at: 100 + n as i64,
    }
}

async fn events_fan_out_and_each_delivery_is_claimed_by_one_process_per_lease(store: Fixture) {
    for (id, events, campaign) in [
        ("whk_all", r#"["session.completed"]"#, None),
        ("whk_b", r#"["session.completed"]"#, Some("cmp_b")),
        ("whk_other", r#"["session.abandoned"]"#, None),
    ] {
        store
            .insert_endpoint(&EndpointRow {
                id: id.into(),
                url: format!("http://127.0.0.1:9/{id}"),
                secret: "whsec_x".into(),
                events: events.into(),
                campaign_id: campaign.map(String::from),
                created_at: 0,
            })
            .await
            .unwrap();
    }
    for n in 0..20 {
        assert_eq!(store.enqueue(&event(n)).await.unwrap(), 1, "only whk_all");
    }
    assert_eq!(
        crate::store::webhooks::WebhookStore::next_due(&*store.store)
            .await
            .unwrap(),
        Some(100)
    );
    // Two processes claim at once, in small batches, until nothing is left.
    let other = store.second_handle().await;
    let claim_all = |s: std::sync::Arc<dyn crate::store::Store>| async move {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_due(1_000, 5_000, 3).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|d| (d.event_id, d.payload, d.url)));
        }
    };
    let (a, b) = tokio::join!(claim_all(store.store.clone()), claim_all(other));
    assert_eq!(a.len() + b.len(), 20, "a: {a:?}, b: {b:?}");
    let events: BTreeSet<String> = a.iter().chain(&b).map(|(e, _, _)| e.clone()).collect();
    assert_eq!(events.len(), 20, "each delivery claimed once");
    assert!(
        a.iter()
            .chain(&b)
            .all(|(e, payload, url)| url == "http://127.0.0.1:9/whk_all"
                && payload == &format!(r#"{{"n":{}}}"#, &e[4..]))
    );
    // Leased: nothing is due until the lease is over; then all are again.
    assert!(store.claim_due(5_999, 5_000, 100).await.unwrap().is_empty());
    let again = store.claim_due(6_000, 5_000, 100).await.unwrap();
    assert_eq!(again.len(), 20);
    // Attempts: one delivered, one retried later, one given up.
    let attempt = |id: &str| AttemptRow {
        delivery_id: id.into(),
        at: 6_000,
        status_code: Some(200),
        response_ms: 12,
        error: None,
    };
    let (d0, d1, d2) = (&again[0].id, &again[1].id, &again[2].id);
    store
        .record_attempt(&attempt(d0), &AttemptOutcome::Delivered)
        .await
        .unwrap();
    store
        .record_attempt(&attempt(d1), &AttemptOutcome::Retry { at: 60_000 })
        .await
        .unwrap();
    store
        .record_attempt(&attempt(d2), &AttemptOutcome::Failed)
        .await
        .unwrap();
    assert_eq!(
        store.count_deliveries_by_status().await.unwrap(),
        [
            ("delivered".to_string(), 1),
            ("failed".to_string(), 1),
            ("pending".to_string(), 18)
        ]
    );
    let got = store.get_delivery(d1).await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_str(), got.attempts, got.next_attempt_at),
        ("pending", 1, Some(60_000))
    );
    let attempts = store.attempts(&[d0.clone(), d2.clone()]).await.unwrap();
    assert_eq!(attempts, vec![attempt(d0), attempt(d2)]);
    assert_eq!(store.deliveries("whk_all", 100).await.unwrap().len(), 20);
    assert!(store.deliveries("whk_b", 100).await.unwrap().is_empty());
    // Events whose deliveries are all done go; msg_0 (delivered) and msg_2 (failed).
    assert_eq!(store.prune(1_000).await.unwrap(), 2);
    assert!(store.get_delivery(d0).await.unwrap().is_none());
}
