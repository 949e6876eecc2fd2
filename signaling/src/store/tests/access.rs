//! Users' sign-ins and the append-only audit log on either store.

use super::{Fixture, on_both_stores};
use crate::store::access::{AuditRow, ConsoleSessionRow, UserRow};

on_both_stores!(
    a_sign_in_is_written_seen_at_most_once_a_minute_and_ends_when_idle,
    the_audit_log_refuses_update_and_delete,
    emails_are_unique_and_found_without_regard_to_case,
);

async fn a_sign_in_is_written_seen_at_most_once_a_minute_and_ends_when_idle(store: Fixture) {
    let user = UserRow {
        id: "usr_a".into(),
        email: "a@b.org".into(),
        name: String::new(),
        password_hash: String::new(),
        superuser: false,
        created_at: 0,
    };
    assert!(store.insert_user(&user).await.unwrap());
    let t0 = 1_000_000;
    let row = ConsoleSessionRow {
        id_hash: "h".into(),
        user_id: "usr_a".into(),
        created_at: t0,
        last_seen_at: t0,
        expires_at: t0 + 3_600_000,
    };
    store.insert_console_session(&row).await.unwrap();
    let seen = |now| {
        let store = store.store.clone();
        async move {
            store
                .touch_console_session("h", now, now - 1_800_000)
                .await
                .unwrap()
                .map(|r| r.last_seen_at)
        }
    };
    assert_eq!(
        seen(t0 + 30_000).await,
        Some(t0),
        "not written within the minute"
    );
    assert_eq!(seen(t0 + 61_000).await, Some(t0 + 61_000));
    // Idle for more than 30 minutes since it was last written: over, and deleted.
    assert_eq!(seen(t0 + 61_000 + 1_800_001).await, None);
    assert!(
        !store.delete_console_session("h").await.unwrap(),
        "already gone"
    );
}

async fn the_audit_log_refuses_update_and_delete(store: Fixture) {
    let row = AuditRow {
        seq: 0,
        at: 1,
        actor: "admin-token".into(),
        action: "session.delete".into(),
        resource: "ses_x".into(),
        campaign_id: Some("cmp_default".into()),
        client: Some("127.0.0.1".into()),
        outcome: "ok".into(),
    };
    let seq = store.append_audit(&row).await.unwrap();
    for sql in [
        "UPDATE audit_log SET outcome = 'denied'",
        "DELETE FROM audit_log",
    ] {
        let err = store.raw.execute(sql).await.unwrap_err();
        assert!(err.contains("audit_log is append-only"), "{err}");
    }
    let rows = store
        .list_audit(&crate::store::access::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows, vec![AuditRow { seq, ..row }]);
}

async fn emails_are_unique_and_found_without_regard_to_case(store: Fixture) {
    let user = |id: &str, email: &str| UserRow {
        id: id.into(),
        email: email.into(),
        name: String::new(),
        password_hash: "x".into(),
        superuser: id == "usr_a",
        created_at: 1,
    };
    assert!(
        store
            .insert_user(&user("usr_a", "Ann@Example.org"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_user(&user("usr_b", "ann@example.ORG"))
            .await
            .unwrap(),
        "the same email in other case is taken"
    );
    let found = store
        .user_by_email("ANN@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.email.as_str()),
        ("usr_a", "Ann@Example.org")
    );
    assert_eq!(store.count_superusers().await.unwrap(), 1);
    assert!(store.delete_user("usr_a").await.unwrap());
    assert!(
        store
            .user_by_email("ann@example.org")
            .await
            .unwrap()
            .is_none()
    );
}
