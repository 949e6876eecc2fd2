//! The participant page across a cut network path (issue 10, item 3), with a real browser: the
//! server runs in a network namespace of the test's own, headless Chromium on the host reaches
//! it (HTTP and media) only over the namespace's link, and the test takes that link down.
//! A 3 s cut is ridden out within the disconnect grace: the session carries on with no pause.
//! A 15 s cut outlasts the grace: the session pauses as media lost and, when the path returns,
//! the page reconnects on its own and the same session resumes and completes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::netns::Netns;
use support::{Server, audio, fixture, join_interview};

const GRACE_SECS: &str = "10";

fn transitions(s: &Value) -> Vec<(String, String)> {
    s["transitions"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["from"].as_str().unwrap_or_default().to_owned(),
                        t["to"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Joins an interview from the host, lets it run, cuts the link for `cut`, and returns the
/// session once it has completed, with the page's connection counters.
async fn interview_with_a_cut(ns: &Netns, cut: Duration) -> (Value, Value, Server) {
    let server = Server::start_in_netns(
        ns,
        &[
            ("EARSHOT_LIFECYCLE_DISCONNECT_GRACE_SECS", GRACE_SECS),
            ("EARSHOT_INTERVIEWER_SILENCE_MS", "1000"),
        ],
    )
    .await;
    let (_token, url) = server.invite().await;
    // The page needs a secure context for the microphone (as https would give it).
    let flag = format!("--unsafely-treat-insecure-origin-as-secure={}", server.base);
    let mut b = Browser::launch_with(&url, Some(&fixture("participant_speech.wav")), &[flag]).await;
    let id = join_interview(&mut b, &server).await;
    server
        .wait_session(&id, Duration::from_secs(30), |s| {
            s["active_duration_ms"].as_i64().is_some_and(|a| a > 6_000)
        })
        .await;
    ns.set_link(false);
    tokio::time::sleep(cut).await;
    ns.set_link(true);
    assert!(
        b.wait_for(
            "window.earshot.state === 'connected'",
            Duration::from_secs(60)
        )
        .await,
        "the page did not reconnect after a {cut:?} cut: {}",
        b.eval("JSON.stringify(window.earshot, (k, v) => k === 'pc' ? undefined : v)")
            .await
    );
    let done = server
        .wait_session(&id, Duration::from_secs(180), |s| {
            s["state"] == "completed" && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    let counters = b
        .eval("({offers: window.earshot.offers, iceRestarts: window.earshot.iceRestarts, iceRestartsDone: window.earshot.iceRestartsDone})")
        .await;
    (done, counters, server)
}

/// The participant track holds the fed speech after the cut too.
async fn speech_after(server: &Server, id: &str, from_ms: i64) {
    let bytes = server.download(id, "participant.wav").await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("participant.wav");
    std::fs::write(&path, bytes).expect("write");
    let (rate, rec) = audio::read_wav(&path);
    let env = audio::envelope(rate, &rec);
    let from = (from_ms / 10) as usize;
    assert!(
        env.len() > from + 500,
        "the track ends before the cut's end"
    );
    let (_, fed) = audio::read_wav(&fixture("participant_speech.wav"));
    let (_, r) = audio::best_loop_lag(&audio::envelope(48_000, &fed), &env[from..]);
    eprintln!("participant track after the cut: r={r:.3}");
    assert!(r > 0.7, "no fed speech after the cut (r={r:.3})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_rides_out_a_short_cut_and_resumes_after_a_long_one() {
    let ns = Netns::create();

    // 3 s: within the grace. No pause; the session completes on its first timeline.
    let (done, counters, server) = interview_with_a_cut(&ns, Duration::from_secs(3)).await;
    let id = done["id"].as_str().expect("id").to_owned();
    eprintln!(
        "3 s cut: page {counters}, transitions {:?}",
        transitions(&done)
    );
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    assert_eq!(
        transitions(&done),
        [
            ("created".to_owned(), "in_progress".to_owned()),
            ("in_progress".to_owned(), "completed".to_owned())
        ],
        "a 3 s cut must not pause the session: {done:#}"
    );
    assert_eq!(done["pauses"].as_array().map(Vec::len), Some(0));
    speech_after(&server, &id, 12_000).await;
    drop(server);

    // 15 s: beyond the grace. Paused as media lost (none of the participant's doing), then
    // the page's own reconnection resumes the same session.
    let (done, counters, server) = interview_with_a_cut(&ns, Duration::from_secs(15)).await;
    let id = done["id"].as_str().expect("id").to_owned();
    eprintln!(
        "15 s cut: page {counters}, transitions {:?}",
        transitions(&done)
    );
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    let moves = transitions(&done);
    assert!(
        moves.contains(&("in_progress".to_owned(), "paused".to_owned()))
            && moves.contains(&("paused".to_owned(), "in_progress".to_owned())),
        "a 15 s cut pauses and resumes: {moves:?}"
    );
    let pauses = done["pauses"].as_array().expect("pauses");
    assert_eq!(pauses.len(), 1, "{done:#}");
    let cause = pauses[0]["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("media"), "pause cause {cause:?}");
    assert!(
        counters["offers"].as_i64().is_some_and(|n| n >= 2)
            || counters["iceRestartsDone"].as_i64().is_some_and(|n| n >= 1),
        "the page reconnected by itself: {counters}"
    );
    speech_after(&server, &id, 30_000).await;
}
