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

#[tokio::test]
async fn a_peer_that_never_connected_gives_its_place_back() {
    let h = Harness::new().await;
    let service = service_over(
        Arc::new(h.store.clone()),
        h.clock.clone(),
        h.media.clone(),
        h.dir.path(),
    )
    .with_max_sessions(1);
    let a = consented_invite(&service).await;
    let b = consented_invite(&service).await;
    let c = consented_invite(&service).await;
    let stuck = service.start_media(&a, "v=0\r\n").await.expect("a");
    h.clock.advance(secs(30));
    assert!(
        service.start_media(&b, "v=0\r\n").await.is_err(),
        "a holds the place"
    );
    // The media plane has closed a's peer (never connected for 35 s): b gets the place.
    h.clock.advance(secs(11));
    let started = service.start_media(&b, "v=0\r\n").await.expect("b");
    let Err(e) = service
        .trickle(&a, &stuck.peer_id, Default::default())
        .await
    else {
        panic!("a's released peer still answers");
    };
    assert_eq!(e.code, "peer_not_found");
    // b connects: a connected session keeps its place however long it lasts.
    service
        .handle_media_event(MediaEvent::Connected {
            session_id: started.session_id.clone(),
        })
        .await;
    h.clock.advance(secs(600));
    let Err(e) = service.start_media(&c, "v=0\r\n").await else {
        panic!("c was admitted while b is connected");
    };
    assert_eq!(e.code, "server_busy");
}

/// Readiness (`/readyz`): ready with the store answering and room on disk; not ready, saying
/// why, when the recordings' storage has less room than asked for.
#[tokio::test]
async fn readiness_checks_the_store_and_the_room_for_recordings() {
    let h = Harness::new().await;
    let r = h.service.readiness(1).await;
    assert!(r.is_ready(), "{r:?}");
    let free = r
        .disk
        .expect("disk")
        .expect("a local disk knows its free space");
    assert!(free > 1, "{free}");
    let r = h.service.readiness(u64::MAX).await;
    assert!(!r.is_ready());
    assert!(r.store.is_ok());
    let why = r.disk.expect_err("not enough room");
    assert!(why.contains("MiB free for recordings"), "{why}");
}

#[tokio::test]
async fn a_draining_node_admits_no_new_session_and_keeps_its_own() {
    let h = Harness::new().await;
    let switch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let service = service_over(
        Arc::new(h.store.clone()),
        h.clock.clone(),
        h.media.clone(),
        h.dir.path(),
    )
    .with_drain_switch(switch.clone());
    let a = consented_invite(&service).await;
    let b = consented_invite(&service).await;
    let started = service.start_media(&a, "v=0\r\n").await.expect("a");
    switch.store(true, std::sync::atomic::Ordering::Relaxed);
    let Err(err) = service.start_media(&b, "v=0\r\n").await else {
        panic!("a new session was admitted while draining");
    };
    assert_eq!((err.status.as_u16(), err.code), (503, "node_draining"));
    assert_eq!(err.retry_after, Some(30));
    // The live session may reconnect (a new offer replaces its peer).
    service.start_media(&a, "v=0\r\n").await.expect("a again");
    assert_eq!(h.media.calls_for(&started.session_id), ["open", "open"]);
    // Drain off: new sessions come in again.
    switch.store(false, std::sync::atomic::Ordering::Relaxed);
    service.start_media(&b, "v=0\r\n").await.expect("b now");
}
