//! `/metrics` as a Prometheus server reads it: the text parses with a Prometheus parser (every
//! line a sample, a HELP/TYPE comment or empty), and the series move during a real session:
//! HTTP requests by route template and status, the participant's connect time, ticks and
//! packets, and the end-of-session work with the bytes it wrote. No id or token leaks into it.

mod support;

use std::time::Duration;

use earshot_media::codec::OpusSettings;
use prometheus_parse::{LineInfo, Scrape, Value};
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server, audio, fixture};

async fn scrape(server: &Server) -> (String, Scrape) {
    let r = server
        .admin(server.http.get(server.url("/metrics")))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/plain; version=0.0.4"))
    );
    let text = r.text().await.expect("text");
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Ignored => panic!("not Prometheus text: {line:?}"),
            LineInfo::Sample { value, .. } => assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "not a number: {line:?}"
            ),
            _ => {}
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    (text, scrape)
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_during_a_session() {
    let server = Server::start(&[]).await;
    for (path, admin) in [
        ("/healthz", false),
        ("/no/such/route", false),
        ("/v1/sessions", false),
    ] {
        let req = server.http.get(server.url(path));
        let req = if admin { server.admin(req) } else { req };
        req.send().await.expect("request");
    }
    let (_, before) = scrape(&server).await;
    let http = "earshot_http_requests_total";
    // The test server's start polls /healthz too.
    assert!(
        value(&before, http, &[("route", "/healthz"), ("status", "200")]).is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        value(&before, http, &[("route", "unmatched"), ("status", "404")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &before,
            http,
            &[
                ("route", "/v1/sessions"),
                ("status", "401"),
                ("method", "GET")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&before, "earshot_media_connect_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&before, "earshot_media_recorded_bytes_total", &[]),
        Some(0.0)
    );

    // A participant connects, talks for three seconds and hangs up.
    let (_, speech) = audio::read_wav(&fixture("participant_speech.wav"));
    let pcm: Vec<i16> = speech
        .iter()
        .take(3 * 48_000)
        .map(|s| (s * 32767.0) as i16)
        .collect();
    let mut p = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let packets = encode(&pcm, OpusSettings::default());
    p.stream(&packets).await;
    let (during_text, during) = scrape(&server).await;
    assert_eq!(
        value(&during, "earshot_media_connect_seconds", &[]),
        Some(1.0)
    );
    // The client's candidate of the selected pair: a host candidate, over UDP.
    assert_eq!(
        value(
            &during,
            "earshot_media_peer_paths_total",
            &[("type", "host"), ("protocol", "udp")]
        ),
        Some(1.0),
        "{during_text}"
    );
    // Seconds of the participant's stream, with their loss (none here) and jitter.
    assert!(
        value(&during, "earshot_media_participant_loss_ratio", &[]).is_some_and(|n| n >= 1.0),
        "{during_text}"
    );
    assert!(during_text.contains("earshot_media_participant_jitter_seconds_count"));
    assert!(value(&during, "earshot_media_ticks_total", &[]).is_some_and(|v| v > 50.0));
    assert!(
        value(&during, "earshot_media_participant_packets_total", &[]).is_some_and(|v| v > 100.0)
    );
    assert!(
        value(
            &during,
            http,
            &[("route", "/v1/invites/:token/whip"), ("status", "201")]
        ) == Some(1.0),
        "{during_text}"
    );
    p.hang_up().await;
    let dir = tempfile::tempdir().expect("tmp");
    p.download("participant", dir.path()).await;
    server
        .wait_session(&p.session_id, Duration::from_secs(60), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    let (after_text, after) = scrape(&server).await;
    assert!(
        value(&after, "earshot_media_recorded_bytes_total", &[]).is_some_and(|b| b > 100_000.0),
        "{after_text}"
    );
    assert!(value(&after, "earshot_media_finalize_seconds", &[]).is_some_and(|n| n >= 1.0));
    assert!(
        !after_text.contains(&p.session_id) && !after_text.contains(&p.token),
        "an id or a token in /metrics"
    );
}
