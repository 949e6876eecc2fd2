//! End to end: the session lifecycle (F4, F8) with a real server process and headless Chromium:
//! pause and resume by button, tab close and resume at the same question, the pause limit,
//! pause expiry with its resume prompt, admin end / restart / delete, a paused session that
//! survives a SIGKILL of the server, and the participant's End interview button. Timers are
//! shortened through `EARSHOT_LIFECYCLE_*`.
//!
//! The scenarios run one at a time (a shared lock): each starts Chromium, and the machine has
//! two cores.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::audio;
use support::browser::Browser;
use support::interview::strip_ansi;
use support::{ADMIN_TOKEN, Server, fixture};

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Timers short enough for a test; each scenario may override some.
const BASE_ENV: [(&str, &str); 5] = [
    ("EARSHOT_INTERVIEWER_SILENCE_MS", "1000"),
    ("EARSHOT_LIFECYCLE_DISCONNECT_GRACE_SECS", "1"),
    ("EARSHOT_LIFECYCLE_RESUME_PROMPT_SECS", "2"),
    ("EARSHOT_LIFECYCLE_PAUSE_EXPIRY_SECS", "60"),
    ("EARSHOT_LIFECYCLE_PAUSE_LIMIT", "3"),
];

/// `BASE_ENV` with `overrides` replacing keys of the same name.
fn env<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = BASE_ENV
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    out.extend_from_slice(overrides);
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// JS: the element exists and neither it nor an ancestor is `hidden`.
use support::browser::visible;

fn text_of(selector: &str) -> String {
    format!("(document.querySelector('{selector}') || {{}}).textContent || ''")
}

async fn click(browser: &mut Browser, selector: &str) {
    browser.click(selector).await;
}

/// A participant with the speech fixture as microphone: consent, mic check, Start, connected.
/// Returns the browser and the session id the page reports.
async fn join(server: &Server, url: &str) -> (Browser, String) {
    let mut browser = Browser::launch(url, Some(&fixture("participant_speech.wav"))).await;
    assert!(
        browser
            .wait_for(&visible("#accept"), Duration::from_secs(20))
            .await,
        "consent screen shown"
    );
    click(&mut browser, "#accept").await;
    assert!(
        browser
            .wait_for(
                "window.earshot.state === 'mic' && !document.querySelector('#start').disabled",
                Duration::from_secs(20)
            )
            .await,
        "mic check screen with Start enabled"
    );
    click(&mut browser, "#start").await;
    assert!(
        browser
            .wait_for(
                "window.earshot.state === 'connected'",
                Duration::from_secs(25)
            )
            .await,
        "browser connected; server log:\n{}",
        server.log()
    );
    let id = browser
        .eval("window.earshot.sessionId")
        .await
        .as_str()
        .expect("session id on the page")
        .to_string();
    (browser, id)
}

/// A page opened on a paused session: the "Welcome back" mic screen, microphone on, then
/// "Resume interview"; waits until connected.
async fn resume_in_page(browser: &mut Browser, server: &Server) {
    assert!(
        browser
            .wait_for(
                "window.earshot && window.earshot.state === 'mic'",
                Duration::from_secs(20)
            )
            .await,
        "a page loaded on a paused session goes straight to the mic screen (state {:?})",
        browser.eval("window.earshot && window.earshot.state").await
    );
    let label = browser.eval(&text_of("#start")).await;
    assert_eq!(
        label,
        json!("Resume interview"),
        "the start button offers to resume"
    );
    assert_eq!(
        browser.eval(&visible("#accept")).await,
        json!(false),
        "no second consent for a session in progress"
    );
    if browser.eval(&visible("#mic-on")).await == json!(true) {
        click(browser, "#mic-on").await;
    }
    assert!(
        browser
            .wait_for(
                "!document.querySelector('#start').disabled",
                Duration::from_secs(20)
            )
            .await,
        "microphone on, Resume enabled"
    );
    click(browser, "#start").await;
    assert!(
        browser
            .wait_for(
                "window.earshot.state === 'connected'",
                Duration::from_secs(25)
            )
            .await,
        "resumed page connected; server log:\n{}",
        server.log()
    );
}

/// (status, JSON body or Null) of a request.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn participant_post(
    server: &Server,
    token: &str,
    action: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/{action}")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

async fn invite_view(server: &Server, token: &str) -> Value {
    let (status, v) = send(server.http.get(server.url(&format!("/v1/invites/{token}")))).await;
    assert_eq!(status, 200, "invite view: {v}");
    v
}

async fn wait_state(server: &Server, id: &str, state: &str, timeout: Duration) -> Value {
    let s = server
        .wait_session(id, timeout, |s| s["state"] == state)
        .await;
    assert_eq!(
        s["state"],
        state,
        "session {id} did not reach {state}: {s:#}\nserver log:\n{}",
        server.log()
    );
    s
}

fn i64_of(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// `(from, to)` of each stored transition, in order.
fn transitions(s: &Value) -> Vec<(String, String)> {
    s["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or_default().to_string(),
                t["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_string(), to.to_string())
}

/// Downloads the six recordings of a session through the admin API, checks each is
/// playable (hound reads the WAVs; the MP3s decode to their WAV's length) and returns the
/// WAV paths by track with their durations in ms.
async fn fetch_recordings(server: &Server, id: &str, dir: &Path) -> Vec<(String, PathBuf, f64)> {
    let mut wavs = Vec::new();
    for track in ["participant", "ai", "mix"] {
        let mut wav_ms = 0.0;
        for fmt in ["wav", "mp3"] {
            let r = server
                .admin(
                    server
                        .http
                        .get(server.url(&format!("/v1/sessions/{id}/recordings/{track}.{fmt}"))),
                )
                .send()
                .await
                .expect("download");
            assert_eq!(r.status(), 200, "{track}.{fmt} downloadable");
            let bytes = r.bytes().await.expect("body");
            let p = dir.join(format!("{track}.{fmt}"));
            std::fs::write(&p, &bytes).expect("write download");
            if fmt == "wav" {
                let (rate, samples) = audio::read_wav(&p);
                assert_eq!(rate, 48_000, "{track}.wav rate");
                wav_ms = samples.len() as f64 * 1000.0 / 48_000.0;
                wavs.push((track.to_string(), p, wav_ms));
            } else {
                let mp3_ms = audio::mp3_duration_ms(&p);
                assert!(
                    (mp3_ms - wav_ms).abs() <= 100.0,
                    "{track}.mp3 decodes to {mp3_ms:.0} ms, its wav is {wav_ms:.0} ms"
                );
            }
        }
    }
    wavs
}

/// (start, length) in ms of the longest run of exactly-zero samples in a WAV.
fn longest_zero_run_ms(path: &Path) -> (f64, f64) {
    let (rate, samples) = audio::read_wav(path);
    let (mut best, mut best_start, mut run) = (0usize, 0usize, 0usize);
    for (i, s) in samples.iter().enumerate() {
        if *s == 0.0 {
            run += 1;
            if run > best {
                best = run;
                best_start = i + 1 - run;
            }
        } else {
            run = 0;
        }
    }
    let ms = |n: usize| n as f64 * 1000.0 / f64::from(rate);
    (ms(best_start), ms(best))
}

fn wav_ms(wavs: &[(String, PathBuf, f64)], track: &str) -> f64 {
    wavs.iter()
        .find(|(t, _, _)| t == track)
        .map(|(_, _, ms)| *ms)
        .expect("track downloaded")
}

/// Polls `drop_off` until it differs from `from`, collecting every value seen.
async fn next_drop_off(server: &Server, id: &str, from: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let s = server.session(id).await;
        let d = s["drop_off"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&d) {
            seen.push(d.clone());
        }
        if d != from || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const PROMPTS: [&str; 5] = ["greeting", "q1", "q2", "q3", "goodbye"];

fn prompt_index(id: &str) -> usize {
    PROMPTS
        .iter()
        .position(|p| *p == id)
        .unwrap_or_else(|| panic!("unknown prompt id {id:?}"))
}

// ---------------------------------------------------------------------------------------------

/// 1. Pause with the button, stay paused, resume with the button, finish. The recordings hold
///    no paused time and stay playable; the pause is listed with its start and end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_by_button_then_complete_without_paused_audio() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&env(&[])).await;
    let (_token, url) = server.invite().await;
    let (mut b, id) = join(&server, &url).await;

    // Pause mid-interview: once the first question has been reached.
    let s = server
        .wait_session(&id, Duration::from_secs(60), |s| s["drop_off"] == "q1")
        .await;
    assert_eq!(s["drop_off"], "q1", "interview reached q1: {s:#}");
    assert!(
        b.wait_for(&visible("#pause"), Duration::from_secs(10))
            .await,
        "Pause button shown while in progress"
    );
    click(&mut b, "#pause").await;
    assert!(
        b.wait_for(
            &format!(
                "window.earshot.sessionState === 'paused' && {}",
                visible("#resume")
            ),
            Duration::from_secs(10)
        )
        .await,
        "page shows the pause with a Resume button"
    );
    let paused = server.session(&id).await;
    assert_eq!(paused["state"], "paused", "{paused:#}");
    assert_eq!(paused["pauses_remaining"], 2, "{paused:#}");
    assert_eq!(paused["pause_count"], 1, "{paused:#}");
    assert_eq!(paused["pauses"][0]["cause"], "button", "{paused:#}");
    assert!(paused["pauses"][0]["ended_at"].is_null(), "{paused:#}");
    assert_eq!(
        b.eval(&text_of("#pauses-remaining")).await,
        json!("2 pauses left."),
        "page counts the pauses left"
    );
    assert_eq!(b.eval(&visible("#pause")).await, json!(false));

    // While paused, the active time does not grow.
    let active_before = i64_of(&paused["active_duration_ms"], "active_duration_ms");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = server.session(&id).await;
    assert_eq!(still["state"], "paused");
    assert_eq!(
        i64_of(&still["active_duration_ms"], "active_duration_ms"),
        active_before,
        "active time grew while paused"
    );

    click(&mut b, "#resume").await;
    assert!(
        b.wait_for(
            "window.earshot.sessionState === 'in_progress'",
            Duration::from_secs(10)
        )
        .await,
        "page back in progress"
    );
    let resumed = server.session(&id).await;
    assert_eq!(resumed["state"], "in_progress", "{resumed:#}");
    let pause = &resumed["pauses"][0];
    let (p_start, p_end) = (
        i64_of(&pause["started_at"], "pause start"),
        i64_of(&pause["ended_at"], "pause end"),
    );
    let pause_ms = p_end - p_start;
    assert!(
        pause_ms >= 3_500,
        "pause lasted {pause_ms} ms, expected at least the 4 s waited"
    );

    let done = server
        .wait_session(&id, Duration::from_secs(150), |s| {
            s["state"] == "completed" && s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["state"],
        "completed",
        "{done:#}\nserver log:\n{}",
        server.log()
    );
    assert_eq!(done["end_reason"], "completed");
    assert_eq!(
        done["recordings"].as_array().map(Vec::len),
        Some(6),
        "{done:#}"
    );
    assert!(
        b.wait_for("window.earshot.state === 'ended'", Duration::from_secs(10))
            .await,
        "page shows the end"
    );
    let pauses = done["pauses"].as_array().expect("pauses");
    assert_eq!(pauses.len(), 1, "one pause listed: {done:#}");
    assert_eq!(pauses[0]["started_at"], p_start);
    assert_eq!(pauses[0]["ended_at"], p_end);
    let t = transitions(&done);
    assert_eq!(
        t,
        vec![
            pair("created", "in_progress"),
            pair("in_progress", "paused"),
            pair("paused", "in_progress"),
            pair("in_progress", "completed"),
        ],
        "{done:#}"
    );

    let active = i64_of(&done["active_duration_ms"], "active_duration_ms") as f64;
    let total = i64_of(&done["total_duration_ms"], "total_duration_ms") as f64;
    assert!(
        (total - active - pause_ms as f64).abs() <= 200.0,
        "total {total} = active {active} + pause {pause_ms}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let wavs = fetch_recordings(&server, &id, dir.path()).await;
    let participant = wav_ms(&wavs, "participant");
    let participant_path = &wavs
        .iter()
        .find(|w| w.0 == "participant")
        .expect("participant")
        .1;
    let (silence_at, silence_ms) = longest_zero_run_ms(participant_path);
    let diagnosis = format!(
        "participant.wav {participant:.0} ms, ai.wav {:.0} ms, mix.wav {:.0} ms; active {active} ms, \
         total {total} ms, pause {pause_ms} ms starting at active time {active_before} ms; longest \
         run of digital silence in participant.wav: {silence_ms:.0} ms at {silence_at:.0} ms",
        wav_ms(&wavs, "ai"),
        wav_ms(&wavs, "mix")
    );
    let (_, p_samples) = audio::read_wav(participant_path);
    let env = audio::envelope(48_000, &p_samples);
    let from = (active_before / 10) as usize;
    let to = ((active_before + pause_ms) / 10) as usize;
    let window = &env[from.min(env.len())..to.min(env.len())];
    let log = server.log();
    let stats: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("participant audio statistics") || l.contains("session state changed")
        })
        .map(str::trim)
        .collect::<Vec<_>>();
    let stats: Vec<String> = stats.into_iter().map(strip_ansi).collect();
    let diagnosis = format!(
        "{diagnosis}; participant.wav from {active_before} ms for the pause's length: {} frames \
         of 10 ms, {} above -60 dBFS, loudest {:.1} dBFS\nserver log excerpt:\n{}",
        window.len(),
        window.iter().filter(|v| **v > -60.0).count(),
        window.iter().copied().fold(f32::MIN, f32::max),
        stats.join("\n")
    );
    eprintln!("{diagnosis}");
    assert!(
        (participant - active).abs() <= 1_000.0,
        "participant.wav is not as long as the active time (paused time recorded?): {diagnosis}"
    );
    assert!(
        participant <= total - pause_ms as f64 + 1_000.0 && participant < total - 2_500.0,
        "participant.wav ({participant:.0} ms) holds the pause: total {total} ms, pause {pause_ms} ms"
    );
    for track in ["ai", "mix"] {
        let ms = wav_ms(&wavs, track);
        assert!(
            ms <= active + 1_000.0,
            "{track}.wav is {ms:.0} ms, longer than the active time {active} ms"
        );
    }
    assert!(
        (wav_ms(&wavs, "mix") - participant.max(wav_ms(&wavs, "ai"))).abs() < 1.0,
        "mix spans both tracks"
    );
}

/// 2. Closing the tab mid-interview pauses the session; the same invite link resumes the same
///    session at the question it was cut off at, and the interview goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tab_pauses_and_the_invite_link_resumes_at_the_same_question() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&env(&[])).await;
    let (token, url) = server.invite().await;
    let (mut b, id) = join(&server, &url).await;

    let s = server
        .wait_session(&id, Duration::from_secs(60), |s| s["drop_off"] == "q1")
        .await;
    assert_eq!(s["drop_off"], "q1", "interview reached q1: {s:#}");
    let before = s["drop_off"].as_str().expect("drop_off").to_string();

    b.close_tab().await;
    let paused = wait_state(&server, &id, "paused", Duration::from_secs(15)).await;
    let cause = paused["pauses"][0]["cause"].as_str().unwrap_or_default();
    eprintln!("closing the tab paused the session with cause {cause}");
    assert!(
        cause == "tab_closed" || cause == "media_lost",
        "pause cause {cause:?}: {paused:#}"
    );
    assert_eq!(
        paused["drop_off"].as_str(),
        Some(before.as_str()),
        "{paused:#}"
    );
    assert_eq!(paused["pauses_remaining"], 2, "{paused:#}");
    let view = invite_view(&server, &token).await;
    assert_eq!(view["session"]["id"], id.as_str());
    assert_eq!(view["session"]["state"], "paused");

    // Same link, new page.
    b.navigate(&url).await;
    resume_in_page(&mut b, &server).await;
    assert_eq!(
        b.eval("window.earshot.sessionId").await,
        json!(id),
        "the page resumes the same session"
    );
    let resumed = wait_state(&server, &id, "in_progress", Duration::from_secs(15)).await;
    assert_eq!(
        resumed["drop_off"].as_str(),
        Some(before.as_str()),
        "resumed at the point it was cut off: {resumed:#}"
    );
    let view = invite_view(&server, &token).await;
    assert_eq!(
        view["session"]["id"],
        id.as_str(),
        "no new session: {view:#}"
    );
    let (status, list) = send(server.admin(server.http.get(server.url("/v1/sessions")))).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["sessions"].as_array().map(Vec::len),
        Some(1),
        "one session only: {list:#}"
    );

    // The interview goes on from there: the next new point follows the cut-off one.
    let seen = next_drop_off(&server, &id, &before, Duration::from_secs(60)).await;
    eprintln!("drop_off after resuming: {seen:?}");
    assert!(
        !seen.iter().any(|d| d == "greeting"),
        "the interview went back to the greeting: {seen:?}"
    );
    let next = seen.last().expect("a value");
    assert_ne!(
        next,
        &before,
        "no progress after resuming within 60 s; log:\n{}",
        server.log()
    );
    assert_eq!(
        prompt_index(next),
        prompt_index(&before) + 1,
        "after {before} the interview went on with {next}"
    );
    let s = server.session(&id).await;
    let t = transitions(&s);
    assert_eq!(
        t,
        vec![
            pair("created", "in_progress"),
            pair("in_progress", "paused"),
            pair("paused", "in_progress"),
        ],
        "{s:#}"
    );
    assert_eq!(s["state"], "in_progress");
}

/// 3. With a limit of three, the fourth pause is refused and changes nothing; the page
///    explains it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fourth_pause_is_refused() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&env(&[])).await;
    let (token, url) = server.invite().await;
    let (mut b, id) = join(&server, &url).await;

    for i in 1..=3u32 {
        let (status, v) =
            participant_post(&server, &token, "pause", Some(json!({"cause": "button"}))).await;
        assert_eq!(status, 200, "pause {i}: {v}");
        assert_eq!(v["state"], "paused", "pause {i}: {v}");
        assert_eq!(v["pauses_remaining"], 3 - i, "pause {i}: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, v) = participant_post(&server, &token, "resume", None).await;
        assert_eq!(status, 200, "resume {i}: {v}");
        assert_eq!(v["state"], "in_progress", "resume {i}: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, v) =
        participant_post(&server, &token, "pause", Some(json!({"cause": "button"}))).await;
    assert_eq!(status, 409, "fourth pause: {v}");
    assert_eq!(v["error"]["code"], "pause_limit_reached", "{v}");

    let s = server.session(&id).await;
    assert_eq!(s["state"], "in_progress", "{s:#}");
    assert_eq!(s["pause_count"], 3, "{s:#}");
    assert_eq!(s["pauses_remaining"], 0, "{s:#}");
    let pauses = s["pauses"].as_array().expect("pauses");
    assert_eq!(pauses.len(), 3, "{s:#}");
    assert!(pauses.iter().all(|p| p["ended_at"].is_i64()), "{s:#}");
    let t = transitions(&s);
    assert_eq!(
        t.iter()
            .filter(|x| **x == pair("in_progress", "paused"))
            .count(),
        3,
        "{s:#}"
    );
    assert_eq!(t.last(), Some(&pair("paused", "in_progress")), "{s:#}");

    // The page: no Pause button, "No pauses left."; pressing Pause anyway explains why not.
    assert!(
        b.wait_for(
            &format!(
                "{} && ({}) === 'No pauses left.' && window.earshot.pausesRemaining === 0",
                visible("#pauses-remaining"),
                text_of("#pauses-remaining")
            ),
            Duration::from_secs(10)
        )
        .await,
        "page shows no pauses left (text {:?})",
        b.eval(&text_of("#pauses-remaining")).await
    );
    assert!(
        b.wait_for(
            "window.earshot.sessionState === 'in_progress'",
            Duration::from_secs(10)
        )
        .await,
        "page back in progress after the API resumes"
    );
    assert_eq!(
        b.eval(&visible("#pause")).await,
        json!(false),
        "Pause button hidden"
    );
    click(&mut b, "#pause").await;
    assert!(
        b.wait_for(
            &format!(
                "({}).includes('used all your pauses')",
                text_of("#call-message")
            ),
            Duration::from_secs(10)
        )
        .await,
        "page explains the refusal (message {:?})",
        b.eval(&text_of("#call-message")).await
    );
    let s = server.session(&id).await;
    assert_eq!(s["state"], "in_progress", "{s:#}");
    assert_eq!(s["pause_count"], 3, "{s:#}");
    assert_eq!(
        b.eval("window.earshot.sessionState").await,
        json!("in_progress")
    );
}

/// 4. A pause that is not resumed shows the resume prompt after `resume_prompt_secs`, then
///    expires to `abandoned` (`pause_expired`) with its drop-off point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresumed_pause_prompts_then_expires() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&env(&[
        ("EARSHOT_LIFECYCLE_RESUME_PROMPT_SECS", "2"),
        ("EARSHOT_LIFECYCLE_PAUSE_EXPIRY_SECS", "8"),
    ]))
    .await;
    let (token, url) = server.invite().await;
    let (mut b, id) = join(&server, &url).await;
    let s = server
        .wait_session(&id, Duration::from_secs(30), |s| s["drop_off"].is_string())
        .await;
    assert!(s["drop_off"].is_string(), "interviewer started: {s:#}");
    assert!(
        b.wait_for(&visible("#pause"), Duration::from_secs(10))
            .await,
        "Pause button shown"
    );
    click(&mut b, "#pause").await;
    let paused = wait_state(&server, &id, "paused", Duration::from_secs(10)).await;
    let started = i64_of(&paused["pauses"][0]["started_at"], "pause start");
    let drop_off = paused["drop_off"].clone();
    assert!(drop_off.is_string(), "{paused:#}");
    let early = invite_view(&server, &token).await;
    if now_ms() < started + 1_500 {
        assert_eq!(
            early["session"]["resume_prompt"], false,
            "no prompt right after pausing: {early:#}"
        );
    }
    assert_eq!(
        b.eval(&visible("#resume-prompt")).await,
        json!(false),
        "no prompt shown right after pausing"
    );

    // The prompt flag.
    let deadline = Instant::now() + Duration::from_secs(8);
    let prompted_at = loop {
        let v = invite_view(&server, &token).await;
        if v["session"]["resume_prompt"] == true {
            assert_eq!(v["session"]["state"], "paused", "{v:#}");
            break now_ms();
        }
        assert!(
            Instant::now() < deadline,
            "no resume prompt within 8 s of pausing: {v:#}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = prompted_at - started;
    eprintln!("resume prompt {after} ms after the pause");
    assert!(
        after >= 1_900,
        "resume prompt {after} ms after the pause, before resume_prompt_secs (2 s)"
    );
    assert!(
        b.wait_for(&visible("#resume-prompt"), Duration::from_secs(5))
            .await,
        "page shows the resume prompt"
    );
    assert!(
        b.eval(&text_of("#resume-prompt"))
            .await
            .as_str()
            .is_some_and(|t| t.contains("still there")),
        "prompt text"
    );
    assert_eq!(b.eval(&visible("#resume")).await, json!(true));

    // The expiry.
    let ended = wait_state(&server, &id, "abandoned", Duration::from_secs(15)).await;
    let observed = now_ms() - started;
    eprintln!("abandoned observed {observed} ms after the pause");
    assert_eq!(ended["end_reason"], "pause_expired", "{ended:#}");
    assert_eq!(ended["drop_off"], drop_off, "drop-off kept: {ended:#}");
    assert_eq!(
        i64_of(&ended["pauses"][0]["ended_at"], "pause end") - started,
        8_000,
        "the pause ends at its expiry: {ended:#}"
    );
    assert!(
        (7_800..=11_000).contains(&observed),
        "expired {observed} ms after the pause (expiry 8 s)"
    );
    assert_eq!(
        transitions(&ended).last(),
        Some(&pair("paused", "abandoned")),
        "{ended:#}"
    );
    assert!(
        b.wait_for("window.earshot.state === 'ended'", Duration::from_secs(10))
            .await,
        "page shows the end"
    );
    let (status, v) = participant_post(&server, &token, "resume", None).await;
    assert_eq!(status, 409, "resume after expiry: {v}");
    assert_eq!(v["error"]["code"], "session_ended", "{v}");
    let done = server
        .wait_session(&id, Duration::from_secs(20), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["recordings"].as_array().map(Vec::len),
        Some(6),
        "recordings of an expired session finalized: {done:#}"
    );
}

/// 5. Admin end, restart and delete; a wrong or missing admin token changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_end_restart_and_delete() {
    let _serial = SERIAL.lock().await;
    let server = Server::start(&env(&[])).await;
    let bad_auth = |req: reqwest::RequestBuilder| req.bearer_auth("not-the-admin-token");
    assert_ne!(ADMIN_TOKEN, "not-the-admin-token");

    // --- end ---
    let (token_a, url_a) = server.invite().await;
    let (mut b, id_a) = join(&server, &url_a).await;
    server
        .wait_session(&id_a, Duration::from_secs(30), |s| {
            s["drop_off"].is_string()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_url = server.url(&format!("/v1/sessions/{id_a}/end"));
    for (what, req) in [
        ("wrong token", bad_auth(server.http.post(&end_url))),
        ("no token", server.http.post(&end_url)),
    ] {
        let (status, v) = send(req).await;
        assert_eq!(status, 401, "end with {what}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    assert_eq!(server.session(&id_a).await["state"], "in_progress");
    let (status, v) = send(server.admin(server.http.post(&end_url))).await;
    assert_eq!(status, 200, "admin end: {v}");
    assert_eq!(v["state"], "admin_ended", "{v}");
    let ended = server
        .wait_session(&id_a, Duration::from_secs(30), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(ended["state"], "admin_ended", "{ended:#}");
    assert_eq!(ended["end_reason"], "admin", "{ended:#}");
    assert_eq!(
        transitions(&ended).last(),
        Some(&pair("in_progress", "admin_ended")),
        "{ended:#}"
    );
    let mut listed: Vec<String> = ended["recordings"]
        .as_array()
        .expect("recordings")
        .iter()
        .map(|r| {
            format!(
                "{}.{}",
                r["track"].as_str().unwrap_or("?"),
                r["format"].as_str().unwrap_or("?")
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "ai.mp3",
            "ai.wav",
            "mix.mp3",
            "mix.wav",
            "participant.mp3",
            "participant.wav"
        ],
        "{ended:#}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let wavs = fetch_recordings(&server, &id_a, dir.path()).await;
    assert!(
        wav_ms(&wavs, "participant") > 1_000.0,
        "participant audio kept up to the end"
    );
    assert!(
        b.wait_for("window.earshot.state === 'ended'", Duration::from_secs(10))
            .await,
        "page shows the end"
    );
    assert!(
        b.eval(&text_of("#ended-message"))
            .await
            .as_str()
            .is_some_and(|t| t.contains("research team ended")),
        "page says the team ended it: {:?}",
        b.eval(&text_of("#ended-message")).await
    );
    let (status, v) = send(server.admin(server.http.post(&end_url))).await;
    assert_eq!(status, 409, "ending twice: {v}");
    assert_eq!(v["error"]["code"], "session_ended", "{v}");
    let view = invite_view(&server, &token_a).await;
    assert_eq!(view["session"]["state"], "admin_ended");

    // --- restart ---
    let (token_b, url_b) = server.invite().await;
    let (status, _) = send(server.http.get(&url_b)).await;
    assert_eq!(status, 200, "invite page");
    let (status, v) =
        participant_post(&server, &token_b, "consent", Some(json!({"accept": true}))).await;
    assert_eq!(status, 200, "consent: {v}");
    let id_b = v["session_id"].as_str().expect("session id").to_string();
    let restart_url = server.url(&format!("/v1/sessions/{id_b}/restart"));
    for (what, req) in [
        ("wrong token", bad_auth(server.http.post(&restart_url))),
        ("no token", server.http.post(&restart_url)),
    ] {
        let (status, v) = send(req).await;
        assert_eq!(status, 401, "restart with {what}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    assert_eq!(server.session(&id_b).await["state"], "created");
    assert_eq!(
        invite_view(&server, &token_b).await["session"]["id"],
        id_b.as_str(),
        "no new session after refused restarts"
    );
    let (status, v) = send(server.admin(server.http.post(&restart_url))).await;
    assert_eq!(status, 201, "restart: {v}");
    assert_eq!(v["restarted"]["id"], id_b.as_str(), "{v}");
    assert_eq!(v["restarted"]["state"], "restarted", "{v}");
    let new_id = v["session"]["id"]
        .as_str()
        .expect("new session id")
        .to_string();
    assert_ne!(new_id, id_b, "{v}");
    assert!(new_id.starts_with("ses"), "{v}");
    assert_eq!(v["session"]["state"], "created", "{v}");
    let old = server.session(&id_b).await;
    assert_eq!(old["state"], "restarted", "{old:#}");
    assert_eq!(old["end_reason"], "admin", "{old:#}");
    let new = server.session(&new_id).await;
    assert_eq!(new["state"], "created", "{new:#}");
    let view = invite_view(&server, &token_b).await;
    assert_eq!(view["session"]["id"], new_id.as_str(), "{view:#}");
    assert_eq!(view["session"]["state"], "created", "{view:#}");
    b.navigate(&url_b).await;
    assert!(
        b.wait_for(&visible("#accept"), Duration::from_secs(20))
            .await,
        "the invite link leads to the new session's consent page"
    );
    assert_eq!(b.eval("window.earshot.sessionId").await, json!(new_id));
    let (status, v) = send(server.admin(server.http.post(&restart_url))).await;
    assert_eq!(status, 409, "restarting a restarted session: {v}");

    // --- delete ---
    let rec_dir = server.data_path().join("recordings").join(&id_a);
    assert!(rec_dir.is_dir(), "recordings folder {}", rec_dir.display());
    let session_url = server.url(&format!("/v1/sessions/{id_a}"));
    for (what, req) in [
        ("wrong token", bad_auth(server.http.delete(&session_url))),
        ("no token", server.http.delete(&session_url)),
    ] {
        let (status, v) = send(req).await;
        assert_eq!(status, 401, "delete with {what}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    }
    assert_eq!(server.session(&id_a).await["state"], "admin_ended");
    assert!(rec_dir.is_dir(), "refused delete kept the recordings");
    let (status, v) = send(server.admin(server.http.delete(&session_url))).await;
    assert_eq!(status, 204, "delete: {v}");
    let (status, v) = send(server.admin(server.http.get(&session_url))).await;
    assert_eq!(status, 404, "deleted session: {v}");
    assert_eq!(v["error"]["code"], "session_not_found", "{v}");
    assert!(!rec_dir.exists(), "{} still exists", rec_dir.display());
    for track in ["participant", "ai", "mix"] {
        for fmt in ["wav", "mp3"] {
            let (status, v) = send(
                server.admin(
                    server
                        .http
                        .get(server.url(&format!("/v1/sessions/{id_a}/recordings/{track}.{fmt}"))),
                ),
            )
            .await;
            assert_eq!(status, 404, "{track}.{fmt} of a deleted session: {v}");
            assert_eq!(v["error"]["code"], "recording_not_found", "{v}");
        }
    }
    let (status, v) = send(server.admin(server.http.delete(&session_url))).await;
    assert_eq!(status, 404, "deleting twice: {v}");
    assert_eq!(v["error"]["code"], "session_not_found", "{v}");
    let (status, list) = send(server.admin(server.http.get(server.url("/v1/sessions")))).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&id_a.as_str()),
        "deleted session listed: {ids:?}"
    );
    assert!(
        ids.contains(&new_id.as_str()) && ids.contains(&id_b.as_str()),
        "{ids:?}"
    );
}

fn read_participant(dir: &Path, id: &str) -> Vec<f32> {
    let path = dir.join("recordings").join(id).join("participant.wav");
    let (rate, samples) = audio::read_wav(&path);
    assert_eq!(rate, 48_000);
    samples
}

/// Sleeps until the wall clock reaches `at_ms`.
async fn sleep_until_ms(at_ms: i64) {
    let left = at_ms - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// 6. A paused session survives a SIGKILL of the server: after a restart on the same data it
///    is still paused with its original pause start, can be resumed by a browser (same id,
///    recording continues after the audio already there), and a pause expires counted from
///    its original start, not from the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_session_survives_a_killed_server() {
    let _serial = SERIAL.lock().await;
    const EXPIRY_MS: i64 = 15_000;
    let vars = env(&[
        ("EARSHOT_LIFECYCLE_PAUSE_EXPIRY_SECS", "15"),
        ("EARSHOT_LIFECYCLE_RESUME_PROMPT_SECS", "60"),
        // The participant track is read from disk around the kill: a plain file.
        ("EARSHOT_ENCRYPTION_ENABLED", "false"),
    ]);
    let server = Server::start(&vars).await;
    let (token, _url) = server.invite().await;
    let url = server.url(&format!("/i/{token}"));
    let (mut b, id) = join(&server, &url).await;
    server
        .wait_session(&id, Duration::from_secs(30), |s| {
            s["active_duration_ms"].as_i64().is_some_and(|a| a > 6_000)
        })
        .await;
    click(&mut b, "#pause").await;
    let paused = wait_state(&server, &id, "paused", Duration::from_secs(10)).await;
    let t0 = i64_of(&paused["pauses"][0]["started_at"], "pause start");
    let drop_off = paused["drop_off"].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log1 = server.log();
    let dir = server.kill_keep_data();
    drop(b);
    let before = read_participant(dir.path(), &id);
    let before_ms = before.len() as f64 / 48.0;
    eprintln!("participant.wav after the first kill: {before_ms:.0} ms");
    assert!(
        before_ms > 3_000.0,
        "participant.wav holds {before_ms:.0} ms before the kill; log:\n{log1}"
    );
    let env_before = audio::envelope(48_000, &before);
    assert!(
        env_before.iter().filter(|v| **v > -40.0).count() > 50,
        "participant.wav before the kill holds speech"
    );

    // Restart ~3 s after the pause.
    sleep_until_ms(t0 + 3_000).await;
    let server = Server::start_in(dir, &vars).await;
    let s = server.session(&id).await;
    assert_eq!(s["state"], "paused", "after the restart: {s:#}");
    assert_eq!(s["pauses"][0]["started_at"], t0, "pause start kept: {s:#}");
    assert!(s["pauses"][0]["ended_at"].is_null(), "{s:#}");
    assert_eq!(s["pauses_remaining"], 2, "{s:#}");
    assert_eq!(s["drop_off"], drop_off, "{s:#}");
    let view = invite_view(&server, &token).await;
    assert_eq!(view["session"]["id"], id.as_str());
    assert_eq!(view["session"]["state"], "paused");

    // A browser on the new server resumes it.
    let mut b = Browser::launch(
        &url_of(&server, &token),
        Some(&fixture("participant_speech.wav")),
    )
    .await;
    resume_in_page(&mut b, &server).await;
    assert_eq!(b.eval("window.earshot.sessionId").await, json!(id));
    let resumed = wait_state(&server, &id, "in_progress", Duration::from_secs(10)).await;
    let resumed_after = now_ms() - t0;
    eprintln!("resumed on the restarted server {resumed_after} ms after the pause");
    assert!(
        resumed_after < EXPIRY_MS,
        "resumed only after the pause expiry; the test is too slow here"
    );
    assert_eq!(
        transitions(&resumed)
            .iter()
            .filter(|t| **t == pair("paused", "in_progress"))
            .count(),
        1,
        "{resumed:#}"
    );
    assert!(
        resumed["pauses"][0]["ended_at"].is_i64(),
        "first pause closed: {resumed:#}"
    );
    // Record a little more, then pause again and kill again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        b.wait_for(&visible("#pause"), Duration::from_secs(10))
            .await,
        "Pause button shown after resuming"
    );
    click(&mut b, "#pause").await;
    let paused = wait_state(&server, &id, "paused", Duration::from_secs(10)).await;
    let t1 = i64_of(&paused["pauses"][1]["started_at"], "second pause start");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let log2 = server.log();
    let dir = server.kill_keep_data();
    drop(b);

    let after = read_participant(dir.path(), &id);
    let after_ms = after.len() as f64 / 48.0;
    eprintln!("participant.wav after the second kill: {after_ms:.0} ms (was {before_ms:.0} ms)");
    assert!(
        after_ms > before_ms + 2_000.0,
        "participant.wav did not continue after the resume: {before_ms:.0} ms -> {after_ms:.0} ms; log:\n{log2}"
    );
    assert!(
        after[..before.len()] == before[..],
        "the audio recorded before the first kill changed"
    );
    let env_after = audio::envelope(48_000, &after[before.len()..]);
    assert!(
        env_after.iter().filter(|v| **v > -40.0).count() > 50,
        "the resumed part of participant.wav holds speech; log:\n{log2}"
    );

    // Restart ~4 s after the second pause: the pause must expire 15 s after its start.
    sleep_until_ms(t1 + 4_000).await;
    let server = Server::start_in(dir, &vars).await;
    let restarted_at = now_ms();
    let s = server.session(&id).await;
    assert_eq!(s["state"], "paused", "{s:#}");
    assert_eq!(s["pauses"][1]["started_at"], t1, "{s:#}");
    let ended = wait_state(&server, &id, "abandoned", Duration::from_secs(30)).await;
    let observed = now_ms();
    eprintln!(
        "expired {} ms after the pause, {} ms after the restart",
        observed - t1,
        observed - restarted_at
    );
    assert_eq!(ended["end_reason"], "pause_expired", "{ended:#}");
    assert_eq!(
        i64_of(&ended["pauses"][1]["ended_at"], "pause end") - t1,
        EXPIRY_MS,
        "{ended:#}"
    );
    assert!(
        observed <= t1 + EXPIRY_MS + 2_500,
        "expired {} ms after the original pause (expiry {EXPIRY_MS} ms)",
        observed - t1
    );
    assert!(
        observed < restarted_at + EXPIRY_MS - 1_000,
        "expiry counted from the restart"
    );
    assert_eq!(ended["id"], id.as_str());
    // The media of this session never ran on the restarted server: its tracks are finalized
    // from what the killed process had flushed (WAVs, mix and MP3s all listed).
    let s = server
        .wait_session(&id, Duration::from_secs(30), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        s["recordings"].as_array().map(Vec::len),
        Some(6),
        "recordings finalized after the expiry on the restarted server: {s:#}"
    );
    let participant_ms = s["recordings"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|f| f["track"] == "participant" && f["format"] == "wav")
        })
        .and_then(|f| f["duration_ms"].as_i64())
        .unwrap_or(0);
    assert!(
        participant_ms > 1_000,
        "participant track kept its audio: {participant_ms} ms"
    );
}

fn url_of(server: &Server, token: &str) -> String {
    server.url(&format!("/i/{token}"))
}

/// 7. The participant presses "End interview" (the page's WHIP DELETE of its peer resource):
///    the session ends at once as `abandoned` (`participant_ended`) with its drop-off point,
///    not half an hour later by the stuck rule, and what was said is recorded: participant.wav
///    holds the speech up to the end, every file playable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_button_ends_the_session_at_once_and_keeps_the_recordings() {
    let _serial = SERIAL.lock().await;
    // The default disconnect grace: closing the page's peer (just before its DELETE) must not
    // be what ends or pauses the session.
    let server = Server::start(&env(&[("EARSHOT_LIFECYCLE_DISCONNECT_GRACE_SECS", "10")])).await;
    let (token, url) = server.invite().await;
    let (mut b, id) = join(&server, &url).await;

    // The participant talks: the interviewer heard an answer to its greeting and went on.
    let s = server
        .wait_session(&id, Duration::from_secs(60), |s| s["drop_off"] == "q1")
        .await;
    assert_eq!(
        s["drop_off"],
        "q1",
        "interview reached q1: {s:#}\nserver log:\n{}",
        server.log()
    );
    let before = prompt_index("q1");
    assert!(
        b.wait_for(&visible("#end"), Duration::from_secs(5)).await,
        "End interview button shown"
    );
    // The page asks "End the interview now?" with window.confirm: the participant says yes.
    assert_eq!(
        b.eval("window.confirm = () => true; true").await,
        json!(true)
    );
    let clicked_at = now_ms();
    click(&mut b, "#end").await;

    let ended = wait_state(&server, &id, "abandoned", Duration::from_secs(5)).await;
    let after_ms = now_ms() - clicked_at;
    eprintln!("abandoned observed {after_ms} ms after End was clicked");
    assert_eq!(ended["end_reason"], "participant_ended", "{ended:#}");
    assert!(ended["ended_at"].is_string(), "{ended:#}");
    let drop_off = ended["drop_off"].as_str().expect("drop-off kept");
    assert!(
        prompt_index(drop_off) >= before,
        "drop-off {drop_off} kept from where the interview was: {ended:#}"
    );
    assert_eq!(
        transitions(&ended),
        vec![
            pair("created", "in_progress"),
            pair("in_progress", "abandoned")
        ],
        "{ended:#}"
    );
    assert_eq!(
        ended["transitions"][1]["cause"], "participant ended the interview",
        "{ended:#}"
    );
    assert_eq!(ended["pause_count"], 0, "{ended:#}");
    assert!(
        b.wait_for("window.earshot.state === 'ended'", Duration::from_secs(5))
            .await,
        "page shows its finished view"
    );
    assert_eq!(b.eval(&visible("#screen-ended")).await, json!(true));
    assert!(
        b.eval(&text_of("#ended-message"))
            .await
            .as_str()
            .is_some_and(|t| t.contains("You ended the interview")),
        "page says the participant ended it: {:?}",
        b.eval(&text_of("#ended-message")).await
    );
    let view = invite_view(&server, &token).await;
    assert_eq!(view["session"]["state"], "abandoned", "{view:#}");
    assert_eq!(
        view["session"]["end_reason"], "participant_ended",
        "{view:#}"
    );

    // The recordings are finalized now, not after the stuck rule.
    let done = server
        .wait_session(&id, Duration::from_secs(30), |s| {
            s["recordings"].as_array().is_some_and(|r| r.len() == 6)
        })
        .await;
    assert_eq!(
        done["recordings"].as_array().map(Vec::len),
        Some(6),
        "recordings of a session the participant ended: {done:#}\nserver log:\n{}",
        server.log()
    );
    let active = i64_of(&done["active_duration_ms"], "active_duration_ms") as f64;
    let dir = tempfile::tempdir().expect("tmp");
    let wavs = fetch_recordings(&server, &id, dir.path()).await;
    let participant = wav_ms(&wavs, "participant");
    eprintln!(
        "participant.wav {participant:.0} ms, ai.wav {:.0} ms, mix.wav {:.0} ms; active {active} ms",
        wav_ms(&wavs, "ai"),
        wav_ms(&wavs, "mix")
    );
    assert!(
        participant > 3_000.0,
        "participant.wav holds {participant:.0} ms"
    );
    assert!(
        (participant - active).abs() <= 1_000.0,
        "participant.wav ({participant:.0} ms) is not as long as the active time ({active} ms)"
    );
    let loud = |track: &str| {
        let path = &wavs.iter().find(|w| w.0 == track).expect("track").1;
        let (rate, samples) = audio::read_wav(path);
        let env = audio::envelope(rate, &samples);
        (env.iter().filter(|v| **v > -40.0).count(), env.len())
    };
    let (speech, frames) = loud("participant");
    eprintln!("participant.wav: {speech} of {frames} frames of 10 ms above -40 dBFS");
    // The fed speech is above -40 dBFS in 58 % of its frames (measured: 48 % recorded, the
    // browser's echo canceller ducking the microphone while the interviewer speaks).
    assert!(
        speech > 50 && speech * 5 > frames,
        "participant.wav holds speech: {speech} of {frames} frames above -40 dBFS"
    );
    let (spoken, frames) = loud("ai");
    assert!(
        spoken > 50,
        "ai.wav holds the interviewer's prompts: {spoken} of {frames} frames above -40 dBFS"
    );
    // Ended for good: a new offer for the invite does not revive it.
    let (status, v) = send(
        server
            .http
            .post(server.url(&format!("/v1/invites/{token}/whip")))
            .header("content-type", "application/sdp")
            .body("v=0\r\n"),
    )
    .await;
    assert_eq!(status, 409, "offer after the end: {v}");
    assert_eq!(v["error"]["code"], "session_ended", "{v}");
}

/// 8. An invite opened (its session created) but never consented expires after
///    `[lifecycle] never_started_secs` as abandoned, reason and drop-off `never_started`, by
///    the server's own timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_never_consented_expires_as_never_started() {
    let server = Server::start(&env(&[("EARSHOT_LIFECYCLE_NEVER_STARTED_SECS", "2")])).await;
    let (token, _url) = server.invite().await;
    let r = server
        .http
        .get(server.url(&format!("/i/{token}")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let view = invite_view(&server, &token).await;
    let id = view["session"]["id"].as_str().expect("session").to_owned();
    assert_eq!(view["session"]["state"], "created");
    let s = wait_state(&server, &id, "abandoned", Duration::from_secs(15)).await;
    assert_eq!(s["end_reason"], "never_started", "{s:#}");
    assert_eq!(s["drop_off"], "never_started", "{s:#}");
    // Ended by the timer at exactly its time (RFC 3339 times of day, in milliseconds).
    let ms_of_day = |v: &Value| -> i64 {
        let t = v
            .as_str()
            .and_then(|t| t.split_once('T'))
            .expect("RFC 3339")
            .1;
        let t = t.trim_end_matches('Z');
        let (hms, ms) = t.split_once('.').unwrap_or((t, "0"));
        let p: Vec<i64> = hms.split(':').map(|x| x.parse().expect("number")).collect();
        ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + ms.parse::<i64>().expect("ms")
    };
    assert_eq!(
        (ms_of_day(&s["ended_at"]) - ms_of_day(&s["created_at"])).rem_euclid(86_400_000),
        2_000,
        "{s:#}"
    );
}
