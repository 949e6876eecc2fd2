//! The cap on sessions with media (issue 10, item 7): a WHIP offer for one more is
//! `503 server_busy`; a session that has a place keeps it; an ended one gives it back.

use super::*;

async fn consented_invite(service: &SessionService) -> InviteRow {
    let invite = service
        .create_invite("cmp_default".into(), "scr_default".into(), &BTreeMap::new())
        .await
        .expect("invite");
    service
        .open_invite(&invite, None, None, &BTreeMap::new())
        .await
        .expect("opened");
    service.consent(&invite, true).await.expect("consent");
    invite
}

#[tokio::test]
async fn offers_beyond_the_session_limit_are_refused_until_one_ends() {
    let h = Harness::new().await;
    let service = service_over(
        Arc::new(h.store.clone()),
        h.clock.clone(),
        h.media.clone(),
        h.dir.path(),
    )
    .with_max_sessions(2);
    let a = consented_invite(&service).await;
    let b = consented_invite(&service).await;
    let c = consented_invite(&service).await;
    let first = service.start_media(&a, "v=0\r\n").await.expect("a");
    service.start_media(&b, "v=0\r\n").await.expect("b");
    let Err(err) = service.start_media(&c, "v=0\r\n").await else {
        panic!("a third session was admitted");
    };
    assert_eq!((err.status.as_u16(), err.code), (503, "server_busy"));
    assert_eq!(err.retry_after, Some(30));
    assert_eq!(h.media.calls_for(&first.session_id), ["open"]);
    // A session with a place may offer again (a reconnect replaces its peer).
    service.start_media(&a, "v=0\r\n").await.expect("a again");
    // One ends: its place is free.
    service.admin_end(&first.session_id).await.expect("ended");
    let started = service.start_media(&c, "v=0\r\n").await.expect("c now");
    assert_eq!(h.media.calls_for(&started.session_id), ["open"]);
}
