//! The live fan-out hub: every subscriber gets every line in order; a subscriber that stops
//! reading delays no one and, when it resumes, is told it lagged and gets a fresh snapshot.
//! No timing thresholds: "not delayed" means the others received everything while the stuck
//! one had not read a single line.

use earshot_signaling::live::{self, Hub, Next, PumpEnd, Snapshot};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A guard against hangs only (never a measured threshold).
const HANG: Duration = Duration::from_secs(30);

struct FakeSnapshot {
    calls: AtomicUsize,
}

impl Snapshot for FakeSnapshot {
    async fn snapshot(&self) -> Option<(Arc<str>, bool)> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Some((format!(r#"{{"type":"snapshot","n":{n}}}"#).into(), false))
    }
}

fn line(i: usize) -> String {
    format!(r#"{{"type":"transcript","i":{i}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_each_get_every_line_in_order() {
    const SUBSCRIBERS: usize = 100;
    const LINES: usize = 500;
    let hub = Arc::new(Hub::new(live::DEFAULT_CAPACITY));
    let snapshot = Arc::new(FakeSnapshot {
        calls: AtomicUsize::new(0),
    });
    let mut tasks = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let sub = hub.subscribe("ses_a");
        let snapshot = snapshot.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = mpsc::unbounded_channel();
            let end = live::pump(sub, &*snapshot, &mut tx).await;
            drop(tx);
            let mut got = Vec::new();
            while let Some(l) = rx.recv().await {
                got.push(l.to_string());
            }
            (end, got)
        }));
    }
    for i in 0..LINES {
        assert_eq!(hub.publish_with("ses_a", || line(i)), SUBSCRIBERS);
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    hub.publish_last("ses_a", || r#"{"type":"state","to":"completed"}"#.into());
    let want: Vec<String> = (0..LINES)
        .map(line)
        .chain([r#"{"type":"state","to":"completed"}"#.to_string()])
        .collect();
    for t in tasks {
        let (end, got) = tokio::time::timeout(HANG, t).await.unwrap().unwrap();
        assert_eq!(end, PumpEnd::SessionEnded);
        assert_eq!(got, want);
    }
    assert_eq!(snapshot.calls.load(Ordering::SeqCst), 0, "nobody lagged");
    assert_eq!(
        hub.channel_count(),
        0,
        "the ended session's channel is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_delays_no_one_and_resyncs_when_it_resumes() {
    const OTHERS: usize = 20;
    const CAPACITY: usize = 16;
    const LINES: usize = CAPACITY * 10;
    let hub = Arc::new(Hub::new(CAPACITY));
    // Subscribed, but never polled while the lines go out.
    let stuck = hub.subscribe("ses_b");
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..OTHERS).map(|_| AtomicUsize::new(0)).collect());
    let mut others = Vec::new();
    for k in 0..OTHERS {
        let mut sub = hub.subscribe("ses_b");
        let progress = progress.clone();
        others.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < LINES {
                match sub.next().await {
                    Next::Line(l) => got.push(l.json.to_string()),
                    other => panic!("a reading subscriber saw {other:?}"),
                }
                progress[k].store(got.len(), Ordering::SeqCst);
            }
            (sub, got)
        }));
    }
    // The hub never waits for anyone. This test paces its publisher by the reading
    // subscribers only (so they never fall a whole ring behind); the stuck one is ignored.
    for i in 0..LINES {
        while progress
            .iter()
            .any(|p| p.load(Ordering::SeqCst) + CAPACITY / 2 <= i)
        {
            tokio::task::yield_now().await;
        }
        assert_eq!(hub.publish_with("ses_b", || line(i)), OTHERS + 1);
    }
    let mut subs = Vec::new();
    for t in others {
        let (sub, got) = tokio::time::timeout(HANG, t).await.unwrap().unwrap();
        assert_eq!(got, (0..LINES).map(line).collect::<Vec<_>>());
        subs.push(sub);
    }
    // Every other subscriber has every line; the stuck one has read nothing. Now it resumes.
    let snapshot = FakeSnapshot {
        calls: AtomicUsize::new(0),
    };
    let (mut tx, mut rx) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move { live::pump(stuck, &snapshot, &mut tx).await });
    let first = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let missed = LINES - CAPACITY;
    assert_eq!(&*first, format!(r#"{{"type":"lagged","missed":{missed}}}"#));
    let second = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*second, r#"{"type":"snapshot","n":0}"#);
    // Then it continues with what is still buffered, and with new lines.
    for i in missed..LINES {
        let l = tokio::time::timeout(HANG, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*l, *line(i));
    }
    hub.publish_last("ses_b", || line(LINES));
    let l = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*l, *line(LINES));
    assert_eq!(
        tokio::time::timeout(HANG, pump).await.unwrap().unwrap(),
        PumpEnd::SessionEnded
    );
    drop(subs);
}

#[tokio::test]
async fn channels_exist_only_while_watched() {
    let hub = Arc::new(Hub::default());
    assert_eq!(
        hub.publish_with("ses_c", || unreachable!("nobody watches")),
        0
    );
    let a = hub.subscribe("ses_c");
    let b = hub.subscribe("ses_c");
    assert_eq!(hub.channel_count(), 1);
    assert_eq!(hub.publish("ses_c", "{}"), 2);
    drop(a);
    assert_eq!(hub.channel_count(), 1);
    drop(b);
    assert_eq!(hub.channel_count(), 0);
    // A deleted session: subscribers see the end without a last line.
    let mut c = hub.subscribe("ses_d");
    hub.close("ses_d");
    assert!(matches!(c.next().await, Next::Closed));
}
