//! The NATS event bus (issue 17, item 3) against a real `nats-server` started by each test on
//! a loopback port: two `NatsBus` instances on one server stand for two nodes. Then the same
//! through the real routes: two signaling stacks sharing one SQLite file, each with its own
//! bus and HTTP port; a monitor on node A follows a session driven on node B.

mod support;

use earshot_signaling::event_bus::nats::{NatsBus, NatsClient};
use earshot_signaling::event_bus::{EventBus, LiveDigest, LiveEvent, Next, Subscription};
use earshot_signaling::media_port::{MediaEvent, QualitySignals};
use earshot_signaling::turns::{Role, Speaking};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::nats::NatsServer;
use support::{HANG, TestServer, json_of, transcript, turn_ended, turn_started};

async fn node(server: &NatsServer, id: &str, capacity: usize) -> Arc<NatsBus> {
    let client = NatsClient::connect(&server.url(), id)
        .await
        .expect("connects");
    Arc::new(NatsBus::start(client, capacity).await.expect("starts"))
}

fn line(i: usize) -> String {
    format!("line {i}")
}

fn publish(bus: &NatsBus, session: &str, text: &str) {
    bus.publish_event(
        session,
        &LiveEvent::Transcript {
            role: Role::Participant,
            text,
            is_final: true,
            start_ms: 0,
            end_ms: 1,
        },
    );
}

/// The next delivery, within the hang guard.
async fn next(sub: &mut Subscription) -> Next {
    tokio::time::timeout(HANG, sub.next())
        .await
        .expect("nothing delivered")
}

/// The next line's transcript text and whether it is the last.
async fn next_text(sub: &mut Subscription) -> (String, bool) {
    match next(sub).await {
        Next::Line(l) => {
            let v: Value = serde_json::from_str(&l.json).unwrap();
            (v["text"].as_str().unwrap_or_default().to_string(), l.last)
        }
        other => panic!("expected a line, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sees_another_nodes_events_in_order_and_the_publisher_sees_each_once() {
    let server = NatsServer::start();
    let a = node(&server, "node-a", 1024).await;
    let b = node(&server, "node-b", 1024).await;
    let mut on_a = a.subscribe("ses_one");
    let mut on_b = b.subscribe("ses_one");
    a.wait_watching("ses_one").await;
    b.wait_watching("ses_one").await;
    for i in 0..300 {
        publish(&a, "ses_one", &line(i));
    }
    for i in 0..300 {
        assert_eq!(next_text(&mut on_b).await, (line(i), false));
        assert_eq!(next_text(&mut on_a).await, (line(i), false));
    }
    // B speaks after it saw all of A's lines: A's own lines, echoed by the server, would
    // reach A before B's (the bus must skip them), so A's next line is B's.
    publish(&b, "ses_one", "from b");
    assert_eq!(next_text(&mut on_a).await, ("from b".to_string(), false));
    assert_eq!(next_text(&mut on_b).await, ("from b".to_string(), false));
    // The last event ends the stream on both nodes.
    a.publish_last_event("ses_one", &LiveEvent::Speaking(Speaking::None));
    for sub in [&mut on_a, &mut on_b] {
        match next(sub).await {
            Next::Line(l) => {
                assert!(l.last);
                assert_eq!(&*l.json, r#"{"type":"speaking","who":"none"}"#);
            }
            other => panic!("expected the last line, got {other:?}"),
        }
        assert!(matches!(next(sub).await, Next::Closed));
    }
    assert_eq!(a.counters().dropped.load(Ordering::Relaxed), 0);
    assert_eq!(b.counters().gaps.load(Ordering::Relaxed), 0);
    assert_eq!(a.counters().sent.load(Ordering::Relaxed), 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stream_crosses_and_a_node_watches_only_while_it_has_subscribers() {
    let server = NatsServer::start();
    let a = node(&server, "node-a", 1024).await;
    let b = node(&server, "node-b", 1024).await;
    let mut on_b = b.subscribe("ses_two");
    let second = b.subscribe("ses_two");
    b.wait_watching("ses_two").await;
    assert_eq!(b.subscriber_count(), 2);
    // One NATS subscription for the node, however many watch there.
    assert_eq!(server.subscriptions_on("earshot.live.ses_two"), 1);
    drop(second);
    publish(&a, "ses_two", "still watched");
    assert_eq!(next_text(&mut on_b).await, ("still watched".into(), false));
    a.close_stream("ses_two");
    assert!(matches!(next(&mut on_b).await, Next::Closed));
    drop(on_b);
    assert_eq!(b.subscriber_count(), 0);
    server.wait_subscriptions("earshot.live.ses_two", 0);
    // Nobody watches on B any more: a new subscriber gets a new watch and only new lines.
    let mut again = b.subscribe("ses_two");
    b.wait_watching("ses_two").await;
    publish(&a, "ses_two", "after");
    assert_eq!(next_text(&mut again).await, ("after".into(), false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_on_another_node_gets_lagged_as_with_the_hub() {
    let server = NatsServer::start();
    let a = node(&server, "node-a", 1024).await;
    let b = node(&server, "node-b", 16).await;
    let mut fast = b.subscribe("ses_slow");
    let mut slow = b.subscribe("ses_slow");
    b.wait_watching("ses_slow").await;
    // In bursts of 10 the fast one reads before the next: it never falls 16 behind.
    for burst in 0..10 {
        for i in burst * 10..burst * 10 + 10 {
            publish(&a, "ses_slow", &line(i));
        }
        for i in burst * 10..burst * 10 + 10 {
            assert_eq!(next_text(&mut fast).await, (line(i), false));
        }
    }
    // The ring holds 16: the slow one lost the first 84 and goes on with the rest in order.
    assert!(matches!(next(&mut slow).await, Next::Lagged(84)));
    for i in 84..100 {
        assert_eq!(next_text(&mut slow).await, (line(i), false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_nats_is_down_neither_blocks_nor_panics_and_resumes_after() {
    let mut server = NatsServer::start();
    let a = node(&server, "node-a", 1024).await;
    let b = node(&server, "node-b", 1024).await;
    let mut on_b = b.subscribe("ses_down");
    b.wait_watching("ses_down").await;
    publish(&a, "ses_down", "before");
    assert_eq!(next_text(&mut on_b).await, ("before".into(), false));

    server.stop();
    let down = async {
        while a.client().client().connection_state() == async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, down)
        .await
        .expect("A sees NATS down");
    // More than the queue holds: nothing waits, the surplus is dropped and counted.
    let started = Instant::now();
    for i in 0..20_000 {
        publish(&a, "ses_down", &line(i));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "publishing waited: {took:?}");
    // Each is dropped, by the full queue or by the publisher task seeing NATS down.
    let all_dropped = async {
        while a.counters().dropped.load(Ordering::Relaxed) < 20_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, all_dropped)
        .await
        .expect("every line while down counted as dropped");
    assert_eq!(a.counters().dropped.load(Ordering::Relaxed), 20_000);

    server.restart();
    // Once A and B are back, A's lines reach B again, after a lag for what was lost.
    let resumed = async {
        let mut k = 0;
        loop {
            publish(&a, "ses_down", &format!("after {k}"));
            k += 1;
            tokio::select! {
                n = on_b.next() => return n,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(60), resumed)
        .await
        .expect("B got nothing after NATS came back");
    let Next::Lagged(missed) = first else {
        panic!("expected a lag for the lines lost while NATS was down, got {first:?}");
    };
    assert!(missed >= 20_000, "missed {missed}");
    let (text, last) = next_text(&mut on_b).await;
    assert!(text.starts_with("after "), "{text}");
    assert!(!last);
    assert!(b.counters().gaps.load(Ordering::Relaxed) >= 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_digests_reach_the_other_nodes_and_are_withdrawn() {
    let server = NatsServer::start();
    let a = node(&server, "node-a", 1024).await;
    let b = node(&server, "node-b", 1024).await;
    let digest = LiveDigest {
        speaking: Speaking::Ai,
        signals: Some(QualitySignals {
            loss: 0.25,
            ..Default::default()
        }),
        signals_at: Some(1234),
        listening: 2,
        progress: Some((1, 3)),
        caption: Some("And then?".into()),
    };
    a.share_live_state("ses_d", &digest);
    tokio::time::timeout(HANG, b.wait_digest("ses_d", |d| d == &digest))
        .await
        .expect("B holds A's digest");
    assert_eq!(b.remote_live_state("ses_d"), Some(digest.clone()));
    // A node started later asks, and gets what is live already.
    let c = node(&server, "node-c", 1024).await;
    tokio::time::timeout(HANG, c.wait_digest("ses_d", |d| d == &digest))
        .await
        .expect("C got A's digest at its start");
    // A node does not keep its own digests as another node's.
    assert_eq!(a.remote_live_state("ses_d"), None);
    a.forget_live_state("ses_d");
    let gone = async {
        while b.remote_live_state("ses_d").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, gone)
        .await
        .expect("withdrawn on B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_on_node_a_follows_a_session_driven_on_node_b() {
    let server = NatsServer::start();
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("earshot.db");
    let bus_a = node(&server, "node-a", 1024).await;
    let bus_b = node(&server, "node-b", 1024).await;
    let node_a = TestServer::start_node(&db, bus_a.clone()).await;
    let node_b = TestServer::start_node(&db, bus_b.clone()).await;

    let (_, id) = node_b.consented_session(json!({})).await;
    let mut monitor = node_a.monitor(&id).await;
    let snap = monitor.next().await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["session"]["id"], id.as_str());
    assert_eq!(snap["session"]["state"], "created");
    bus_a.wait_watching(&id).await;

    node_b
        .send(MediaEvent::Connected {
            session_id: id.clone(),
        })
        .await;
    for ev in [
        turn_started(&id, "ai", 0),
        transcript(&id, "ai", "How are you today?", true, 0, 1800),
        turn_ended(&id, "ai", 0, 2000),
        turn_started(&id, "participant", 2600),
        turn_ended(&id, "participant", 2600, 3600),
        transcript(&id, "participant", "Fine, thanks", true, 2600, 3500),
    ] {
        node_b.send(ev).await;
    }
    let want = [
        json!({"type":"state","from":"created","to":"in_progress","cause":"media started"}),
        json!({"type":"turn_start","role":"ai","at_ms":0}),
        json!({"type":"speaking","who":"ai"}),
        json!({"type":"transcript","role":"ai","text":"How are you today?","final":true,"start_ms":0,"end_ms":1800}),
        json!({"type":"turn_end","role":"ai","start_ms":0,"end_ms":2000}),
        json!({"type":"speaking","who":"none"}),
        json!({"type":"turn_start","role":"participant","at_ms":2600}),
        json!({"type":"speaking","who":"participant"}),
        json!({"type":"turn_end","role":"participant","start_ms":2600,"end_ms":3600}),
        json!({"type":"speaking","who":"none"}),
        json!({"type":"transcript","role":"participant","text":"Fine, thanks","final":true,"start_ms":2600,"end_ms":3500}),
    ];
    for w in &want {
        let mut got = monitor.next().await.expect("stream ended early");
        if got["type"] == "state" {
            got.as_object_mut().unwrap().remove("at");
        }
        assert_eq!(&got, w);
    }

    // The dashboard on A lists B's session with what B keeps about it.
    node_b
        .send(MediaEvent::Signals {
            session_id: id.clone(),
            signals: QualitySignals {
                loss: 0.12,
                jitter_ms: 7.5,
                ..Default::default()
            },
        })
        .await;
    assert_eq!(monitor.next_of("signals").await["jitter_ms"], 7.5);
    tokio::time::timeout(
        HANG,
        bus_a.wait_digest(&id, |d| {
            d.signals.as_ref().is_some_and(|s| s.jitter_ms == 7.5)
        }),
    )
    .await
    .expect("A holds B's digest");
    let list = json_of(
        node_a
            .admin(Method::GET, "/v1/monitor/sessions")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    assert_eq!(sessions[0]["id"], id.as_str());
    assert_eq!(sessions[0]["state"], "in_progress");
    assert_eq!(sessions[0]["signals"]["jitter_ms"], 7.5);
    assert_eq!(sessions[0]["attention"], json!(["loss"]));
    assert_eq!(sessions[0]["turns"], 2);

    // A second monitor on A starts from a snapshot holding B's stored turns.
    let mut late = node_a.monitor(&id).await;
    let snap = late.next().await.unwrap();
    assert_eq!(snap["session"]["state"], "in_progress");
    let texts: Vec<&str> = snap["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["How are you today?", "Fine, thanks"]);
    bus_a.wait_watching(&id).await;

    // Ended on B: both monitors on A get the final state, then the socket closes.
    let res = node_b
        .admin(Method::POST, &format!("/v1/sessions/{id}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for m in [&mut monitor, &mut late] {
        assert_eq!(m.next_of("state").await["to"], "admin_ended");
        assert!(m.next().await.is_none(), "the socket closes after the end");
    }
    // B's counters: every line went out, none was dropped; A followed the session.
    let metrics = node_b.metrics_text().await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(value("earshot_bus_dropped_total"), 0);
    assert!(value("earshot_bus_sent_total") >= want.len() as u64 + 2);
    // B withdrew its digest when the session ended.
    let gone = async {
        while bus_a.remote_live_state(&id).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, gone)
        .await
        .expect("B's digest withdrawn");
}
