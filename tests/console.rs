//! End to end, the researcher console (issue 14) in headless Chromium against a real server:
//! sign in with the admin token, create a campaign and a script, bulk-create invites, run an
//! interview through one of them (the participant in a second browser), find the session in
//! the list by a word of its transcript, open it, click a turn and hear the mix play from
//! there (the audio element's currentTime moves to the turn), see the waveform from stored
//! peaks, the analysis, the metadata, the exports (PDF and audio ZIP links) and the aggregate
//! analytics; bulk exports from the list (CSV, JSON Lines of a selection, ZIP of PDFs, saved
//! as downloads; one cancelled mid-stream) and a campaign's webhook endpoint (its secret
//! shown once, its delivery log, redelivery, deletion). Screenshots
//! of every page at 1280x800 and at a phone's 390x844 go to `CONSOLE_SHOTS_DIR` (default
//! `/tmp/console-shots`). The API's authorization rules (missing, wrong and participant
//! tokens refused on every console route) are in `signaling/tests/console_api.rs`.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use support::browser::Browser;
use support::{ADMIN_TOKEN, Server, fixture, join_interview};

fn shots_dir() -> PathBuf {
    let dir = std::env::var("CONSOLE_SHOTS_DIR").unwrap_or_else(|_| "/tmp/console-shots".into());
    let dir = PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Screenshots of the page as it is, wide and narrow.
async fn shoot(b: &mut Browser, name: &str) {
    let dir = shots_dir();
    b.set_viewport(390, 844, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.screenshot(&dir.join(format!("{name}-phone.png"))).await;
    b.set_viewport(1280, 800, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.screenshot(&dir.join(format!("{name}-1280.png"))).await;
}

/// As [`shoot`], with the element `selector` scrolled into view (its end at the bottom).
async fn shoot_at(b: &mut Browser, name: &str, selector: &str) {
    let dir = shots_dir();
    let scroll = format!(
        "document.querySelector({}).scrollIntoView({{ block: 'end' }}); true",
        serde_json::to_string(selector).unwrap()
    );
    for (w, h, mobile, tag) in [(390, 844, true, "phone"), (1280, 800, false, "1280")] {
        b.set_viewport(w, h, mobile).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.eval(&scroll).await;
        b.screenshot(&dir.join(format!("{name}-{tag}.png"))).await;
    }
}

/// Sets an input's value as typing would (the page reads `.value`).
async fn fill(b: &mut Browser, selector: &str, value: &str) {
    let js = format!(
        "(() => {{ const e = document.querySelector({sel}); e.value = {val}; e.dispatchEvent(new Event('change')); return true; }})()",
        sel = serde_json::to_string(selector).unwrap(),
        val = serde_json::to_string(value).unwrap()
    );
    assert_eq!(b.eval(&js).await, Value::Bool(true), "fill {selector}");
}

async fn click(b: &mut Browser, selector: &str) {
    let js = format!(
        "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
        serde_json::to_string(selector).unwrap()
    );
    assert_eq!(b.eval(&js).await, Value::Bool(true), "click {selector}");
}

/// Waits until `expr` is truthy (an exception, e.g. while the page loads, counts as false).
async fn wait(b: &mut Browser, expr: &str, what: &str) {
    let safe =
        format!("(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()");
    assert!(
        b.wait_for(&safe, Duration::from_secs(20)).await,
        "{what}: {expr}"
    );
}

async fn text(b: &mut Browser, selector: &str) -> String {
    let js = format!(
        "(document.querySelector({}) || {{}}).textContent || ''",
        serde_json::to_string(selector).unwrap()
    );
    b.eval(&js).await.as_str().unwrap_or_default().to_string()
}

/// The text of the file with extension `ext` the browser saved into `dir` (waits for it).
async fn downloaded(dir: &std::path::Path, ext: &str) -> String {
    String::from_utf8(downloaded_bytes(dir, ext).await).expect("a text download")
}

/// The bytes of the file with extension `ext` the browser saved into `dir` (waits for it).
async fn downloaded_bytes(dir: &std::path::Path, ext: &str) -> Vec<u8> {
    for _ in 0..100 {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext));
        if let Some(f) = file {
            return std::fs::read(f).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no .{ext} download in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_researcher_runs_a_campaign_and_reviews_its_session_in_the_console() {
    let server = Server::start(&[("EARSHOT_INTERVIEWER_SILENCE_MS", "1000")]).await;
    let mut console = Browser::launch(&server.url("/console"), None).await;
    console.set_viewport(1280, 800, false).await;

    // Sign in: the page asks for the token; a wrong one is refused, the right one works.
    wait(
        &mut console,
        "!document.querySelector('#signin').hidden",
        "sign-in shown",
    )
    .await;
    shoot(&mut console, "01-signin").await;
    fill(&mut console, "#token", "not-the-token").await;
    click(&mut console, "#signin-form button").await;
    wait(
        &mut console,
        "document.querySelector('#signin-error').textContent.includes('not the admin token')",
        "wrong token refused",
    )
    .await;
    fill(&mut console, "#token", ADMIN_TOKEN).await;
    click(&mut console, "#signin-form button").await;
    wait(
        &mut console,
        "document.querySelector('#signin').hidden && !!document.querySelector('#sessions')",
        "signed in, sessions list",
    )
    .await;
    // The token is nowhere the page can read: not in a cookie (HttpOnly), the URL or storage.
    let leaks = console
        .eval("document.cookie + location.href + JSON.stringify(sessionStorage) + JSON.stringify(localStorage)")
        .await;
    assert!(
        !leaks.as_str().unwrap_or_default().contains(ADMIN_TOKEN),
        "{leaks}"
    );

    // A campaign and a script.
    console.navigate(&server.url("/console#/campaigns")).await;
    wait(
        &mut console,
        "!!document.querySelector('#campaign-form')",
        "campaigns page",
    )
    .await;
    fill(&mut console, "#c-name", "Garden study").await;
    fill(&mut console, "#c-desc", "How people garden, spring wave").await;
    click(&mut console, "#campaign-form button").await;
    wait(
        &mut console,
        "location.hash.startsWith('#/campaigns/cmp_') && !!document.querySelector('#script-form')",
        "campaign page",
    )
    .await;
    let campaign_id = console
        .eval("location.hash.split('/')[2]")
        .await
        .as_str()
        .unwrap()
        .to_string();
    fill(&mut console, "#s-name", "Three garden questions").await;
    fill(
        &mut console,
        "#s-prompts",
        "greeting | Hello and welcome to our garden study | default/greeting.wav\n\
         q1 | Which vegetables grow best in your garden | default/q1.wav\n\
         goodbye | Thank you and goodbye | default/goodbye.wav",
    )
    .await;
    click(&mut console, "#script-form button").await;
    wait(&mut console, "document.querySelector('#i-script') && document.querySelector('#i-script').options.length === 1", "script created").await;

    // Editing loads the script back into the form, audio named relative to the prompts.
    click(&mut console, "#script-form ~ * button, .table-wrap button").await;
    wait(&mut console, "document.querySelector('#s-name').value === 'Three garden questions' && document.querySelector('#s-prompts').value.includes('| default/q1.wav')", "script loaded for editing").await;
    click(&mut console, "#script-form button.secondary").await;
    wait(
        &mut console,
        "document.querySelector('#i-script') && document.querySelector('#s-name').value === ''",
        "edit cancelled",
    )
    .await;

    // Bulk invites: three.
    fill(&mut console, "#i-count", "3").await;
    click(&mut console, "#make-invites").await;
    wait(
        &mut console,
        "document.querySelectorAll('#invites tbody tr').length === 3",
        "three invites listed",
    )
    .await;
    shoot(&mut console, "02-campaign").await;

    // A webhook endpoint of the campaign: the secret is shown once, the endpoint listed. It
    // points at this server, which answers 404: the attempts show in its delivery log.
    let hook_url = server.url("/hook-receiver");
    fill(&mut console, "#w-url", &hook_url).await;
    click(&mut console, "#make-webhook").await;
    wait(
        &mut console,
        "(document.querySelector('#webhook-secret') || {}).textContent.startsWith('whsec_')",
        "webhook secret shown",
    )
    .await;
    wait(
        &mut console,
        &format!(
            "document.querySelector('#webhooks tbody').textContent.includes({})",
            serde_json::to_string(&hook_url).unwrap()
        ),
        "webhook listed",
    )
    .await;
    shoot_at(&mut console, "02b-webhook-created", "#webhook-form").await;
    let url = console
        .eval("document.querySelector('#invites tbody a').href")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with(&server.url("/i/")), "{url}");

    // The participant takes the interview in a second browser.
    let speech = fixture("participant_speech.wav");
    let mut participant = Browser::launch(&url, Some(&speech)).await;
    let session_id = join_interview(&mut participant, &server).await;
    let done = server
        .wait_session(&session_id, Duration::from_secs(120), |s| {
            s["state"] == "completed"
                && s["recordings"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|r| r["track"] == "mix" && r["format"] == "wav")
                })
        })
        .await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    drop(participant);
    // The campaign's invite list shows the state (via another page: a same-hash navigation
    // would not reload it).
    console.navigate(&server.url("/console#/analytics")).await;
    wait(
        &mut console,
        "!!document.querySelector('#aggregate')",
        "analytics page",
    )
    .await;
    console
        .navigate(&server.url(&format!("/console#/campaigns/{campaign_id}")))
        .await;
    wait(&mut console, "[...document.querySelectorAll('#invites .state')].some(e => e.textContent === 'completed')", "invite state completed").await;
    // The endpoint's delivery log: the session.completed attempt answered 404; redeliver it.
    click(&mut console, "#webhooks tbody button.secondary").await;
    wait(
        &mut console,
        "!!document.querySelector('#deliveries h3')",
        "delivery log shown",
    )
    .await;
    let attempted = format!(
        "document.querySelector('#delivery-log') && document.querySelector('#delivery-log').textContent.includes('HTTP 404') && document.querySelector('#delivery-log').textContent.includes({})",
        serde_json::to_string(&session_id).unwrap()
    );
    let mut logged = false;
    for _ in 0..20 {
        let shown = console
            .eval(&format!(
                "(() => {{ try {{ return !!({attempted}); }} catch (e) {{ return false; }} }})()"
            ))
            .await;
        if shown == Value::Bool(true) {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Refresh the log (the first attempt may still be under way).
        click(&mut console, "#deliveries .actions button").await;
    }
    assert!(logged, "delivery log with the 404 attempt");
    click(&mut console, "#delivery-log button").await;
    wait(
        &mut console,
        "document.querySelector('#deliveries').textContent.includes('Redelivery queued')",
        "redelivered",
    )
    .await;
    // The page's "Webhooks" link moves there (focus on the section's heading).
    click(&mut console, ".meta a[href^='#/campaigns/cmp_']").await;
    wait(
        &mut console,
        "document.activeElement && document.activeElement.id === 'webhooks-title'",
        "jumped to the webhooks",
    )
    .await;
    shoot(&mut console, "02c-webhook-deliveries").await;
    // Deleted after a confirmation (answered no, then yes).
    console.eval("window.confirm = () => false; true").await;
    click(&mut console, "#webhooks tbody button.danger").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        console
            .eval("document.querySelectorAll('#webhooks tbody button.danger').length")
            .await,
        1,
        "kept when the confirmation is answered no"
    );
    console.eval("window.confirm = () => true; true").await;
    click(&mut console, "#webhooks tbody button.danger").await;
    wait(
        &mut console,
        "document.querySelector('#webhooks tbody').textContent.includes('No endpoints yet') && !document.querySelector('#delivery-log')",
        "webhook deleted",
    )
    .await;

    // Found in the list by a word of its transcript.
    console.navigate(&server.url("/console#/campaigns")).await;
    wait(
        &mut console,
        "!!document.querySelector('#campaign-form')",
        "campaigns again",
    )
    .await;
    shoot(&mut console, "03-campaigns").await;
    console.navigate(&server.url("/console#/sessions")).await;
    wait(
        &mut console,
        "!!document.querySelector('#f-q')",
        "sessions page",
    )
    .await;
    fill(&mut console, "#f-q", "vegetables").await;
    click(&mut console, "#filters button[type=submit]").await;
    wait(&mut console, "location.hash.includes('q=vegetables') && document.querySelectorAll('#sessions tbody a').length === 1", "one session found").await;
    assert_eq!(text(&mut console, "#sessions tbody a").await, session_id);
    shoot(&mut console, "04-sessions").await;

    // Bulk export of the campaign's sessions as CSV: streamed with progress, saved as a
    // download that holds the session's row.
    console
        .navigate(&server.url(&format!("/console#/sessions?campaign={campaign_id}")))
        .await;
    wait(
        &mut console,
        "document.querySelectorAll('#sessions tbody a').length === 1 && !!document.querySelector('#export-all')",
        "the campaign's sessions",
    )
    .await;
    let downloads_dir = tempfile::tempdir().unwrap();
    console.allow_downloads(downloads_dir.path()).await;
    click(&mut console, "#export-all").await;
    wait(
        &mut console,
        "!!document.querySelector('#export-file') && document.querySelector('#export-status').textContent.includes('1 of 1 rows')",
        "CSV export complete",
    )
    .await;
    // The page saved it as a download (a blob: URL, which the page's CSP keeps even the
    // page itself from fetching).
    let csv = downloaded(downloads_dir.path(), "csv").await;
    assert!(
        csv.starts_with("session_id,campaign,") && csv.contains(&session_id),
        "{csv}"
    );
    shoot_at(&mut console, "04b-export", "#sessions").await;
    // Cancel: the export's body stalls after its first chunk (a stand-in for a large one),
    // the progress shows what arrived, and Cancel aborts it.
    console
        .eval(
            "(() => { const real = window.fetch; window.fetch = async (url, opts) => { window.fetch = real; \
             const res = await real(url, opts); const reader = res.body.getReader(); \
             const body = new ReadableStream({ async start(c) { const { value } = await reader.read(); c.enqueue(value); \
             opts.signal.addEventListener('abort', () => { reader.cancel(); c.error(new DOMException('aborted', 'AbortError')); }); } }); \
             return new Response(body, { status: res.status, headers: res.headers }); }; return true; })()",
        )
        .await;
    click(&mut console, "#export-all").await;
    wait(
        &mut console,
        "document.querySelector('#export-status').textContent.includes('received') && !document.querySelector('#export-cancel').hidden && !document.querySelector('#export-file')",
        "export under way",
    )
    .await;
    shoot_at(&mut console, "04c-export-progress", "#sessions").await;
    click(&mut console, "#export-cancel").await;
    wait(
        &mut console,
        "document.querySelector('#export-result').textContent === 'Export cancelled.' && !document.querySelector('#export-all').disabled",
        "export cancelled",
    )
    .await;
    // A selection (the row's checkbox) as JSON Lines.
    click(&mut console, "#sessions tbody input[type=checkbox]").await;
    console
        .eval("(() => { const s = document.querySelector('#x-format'); s.value = 'jsonl'; return true; })()")
        .await;
    click(&mut console, "#export-selected").await;
    wait(
        &mut console,
        "document.querySelector('#export-status').textContent.includes('JSON Lines') && document.querySelector('#export-status').textContent.includes('complete')",
        "selection exported",
    )
    .await;
    let jsonl = downloaded(downloads_dir.path(), "jsonl").await;
    let line: Value = serde_json::from_str(jsonl.trim()).expect("one JSON line");
    assert_eq!(line["id"], session_id.as_str(), "{line}");
    // The ZIP of PDFs: its progress counts the PDFs as their entries arrive.
    console
        .eval("(() => { const s = document.querySelector('#x-format'); s.value = 'zip'; return true; })()")
        .await;
    click(&mut console, "#export-all").await;
    wait(
        &mut console,
        "document.querySelector('#export-status').textContent.includes('1 of 1 PDFs') && document.querySelector('#export-status').textContent.includes('complete')",
        "ZIP of PDFs exported",
    )
    .await;
    let zip = downloaded_bytes(downloads_dir.path(), "zip").await;
    assert!(zip.starts_with(b"PK\x03\x04"), "a ZIP");
    assert!(
        zip.windows(session_id.len() + 4)
            .any(|w| w == format!("{session_id}.pdf").as_bytes()),
        "the session's PDF in the ZIP"
    );
    fill(&mut console, "#f-q", "cucumbers").await;
    click(&mut console, "#filters button[type=submit]").await;
    wait(&mut console, "location.hash.includes('q=cucumbers') && document.querySelector('#sessions tbody').textContent.includes('No sessions match')", "nothing for another word").await;

    // The session: click a turn, the mix plays from there.
    console
        .navigate(&server.url(&format!("/console#/sessions/{session_id}")))
        .await;
    wait(&mut console, "document.querySelectorAll('#turns .turn').length >= 3 && document.querySelector('#player').readyState >= 1", "session page with turns and audio").await;
    let turn = console
        .eval("(() => { const t = [...document.querySelectorAll('#turns .turn.ai')].filter(b => Number(b.dataset.start) > 2000); return t.length ? Number(t[0].dataset.start) : null; })()")
        .await;
    let start_ms = turn.as_f64().expect("an AI turn after the start");
    let start_ms = start_ms as i64;
    click(
        &mut console,
        &format!("#turns .turn.ai[data-start='{start_ms}']"),
    )
    .await;
    let at = start_ms as f64 / 1000.0;
    let js = format!(
        "(() => {{ const a = document.querySelector('#player'); return a.src.endsWith('/mix.wav') && a.currentTime >= {at} - 0.05 && a.currentTime < {at} + 5; }})()"
    );
    wait(&mut console, &js, "the mix plays from the clicked turn").await;
    // It really plays (time moves on) and the browser could seek the WAV (range requests).
    let t0 = console
        .eval("document.querySelector('#player').currentTime")
        .await
        .as_f64()
        .unwrap_or(0.0);
    wait(
        &mut console,
        &format!("document.querySelector('#player').currentTime > {t0} + 0.3"),
        "playback moves on",
    )
    .await;
    assert!(
        t0 >= at - 0.05,
        "currentTime {t0} after clicking the turn at {at}"
    );
    let seekable = console
        .eval("(() => { const s = document.querySelector('#player').seekable; return s.length ? s.end(s.length - 1) : 0; })()")
        .await;
    assert!(
        seekable.as_f64().unwrap_or(0.0) > at,
        "seekable to {seekable}"
    );
    wait(
        &mut console,
        "!!document.querySelector('.turn.playing')",
        "the playing turn is marked",
    )
    .await;
    console
        .eval("document.querySelector('#player').pause(); true")
        .await;
    shoot(&mut console, "05-transcript").await;

    // Audio: the waveform from the stored peaks.
    click(&mut console, "#tab-audio").await;
    wait(
        &mut console,
        "document.querySelector('#panel-audio').textContent.includes('peaks')",
        "peaks loaded",
    )
    .await;
    let lit = console
        .eval("(() => { const c = document.querySelector('#wave'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()")
        .await;
    assert!(
        lit.as_u64().unwrap_or(0) > 1000,
        "waveform drawn: {lit} pixels"
    );
    // Switching the track loads that track.
    console.eval("(() => { const s = document.querySelector('#track'); s.value = 'participant'; s.dispatchEvent(new Event('change')); return true; })()").await;
    wait(
        &mut console,
        "document.querySelector('#player').src.endsWith('/participant.wav')",
        "track switched",
    )
    .await;
    shoot(&mut console, "06-audio").await;

    // Analysis, metadata, exports.
    click(&mut console, "#tab-analysis").await;
    let analysis = text(&mut console, "#panel-analysis").await;
    assert!(
        analysis.contains("Talk ratio") && analysis.contains("AI response latency"),
        "{analysis}"
    );
    let api: Value = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/sessions/{session_id}/analytics"))),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["ai_turns"], 3, "{api}");
    assert!(
        analysis.contains(&format!(
            "{} / {}",
            api["words_ai"], api["words_participant"]
        )),
        "{analysis}"
    );
    assert!(
        console
            .eval("document.querySelectorAll('#panel-analysis svg').length >= 4")
            .await
            == Value::Bool(true)
    );
    shoot(&mut console, "07-analysis").await;
    click(&mut console, "#tab-metadata").await;
    let meta = text(&mut console, "#panel-metadata").await;
    assert!(
        meta.contains("Garden study") && meta.contains(&session_id) && meta.contains("completed"),
        "{meta}"
    );
    shoot(&mut console, "08-metadata").await;
    click(&mut console, "#tab-exports").await;
    let downloads = text(&mut console, "#downloads").await;
    assert!(
        downloads.contains("mix.wav") && downloads.contains("participant.mp3"),
        "{downloads}"
    );
    let exports = text(&mut console, "#panel-exports").await;
    assert!(
        exports.contains("Transcript (PDF)")
            && exports.contains("Audio ZIP (MP3)")
            && !exports.contains("exports feature"),
        "{exports}"
    );
    // The PDF link downloads a PDF (read from the page with its cookie), the ZIP a ZIP.
    let magic = console
        .eval("Promise.all(['#export-pdf', '#export-wav'].map(s => fetch(document.querySelector(s).href).then(r => r.arrayBuffer()).then(b => String.fromCharCode(...new Uint8Array(b.slice(0, 4))))))")
        .await;
    assert_eq!(
        magic,
        serde_json::json!(["%PDF", "PK\u{3}\u{4}"]),
        "{magic}"
    );
    shoot(&mut console, "09-exports").await;

    // Aggregate analytics of the campaign: one session, completed.
    console
        .navigate(&server.url(&format!("/console#/analytics?campaign={campaign_id}")))
        .await;
    wait(
        &mut console,
        "!!document.querySelector('#aggregate')",
        "analytics page",
    )
    .await;
    let agg = text(&mut console, "#aggregate").await;
    assert!(
        agg.contains("Sessions1")
            && agg.contains("Completed1")
            && agg.contains("Completion rate100.0 %"),
        "{agg}"
    );
    shoot(&mut console, "10-analytics").await;
    // Restart from the console after the session ended: it stays, marked restarted, and
    // the invite gets a new session (the confirmation is answered yes).
    console
        .navigate(&server.url(&format!("/console#/sessions/{session_id}")))
        .await;
    wait(
        &mut console,
        "!!document.querySelector('.actions button.secondary')",
        "session page again",
    )
    .await;
    console.eval("window.confirm = () => true; true").await;
    click(&mut console, ".actions button.secondary").await;
    wait(
        &mut console,
        "[...document.querySelectorAll('.state')].some(e => e.textContent === 'restarted')",
        "restarted shown",
    )
    .await;
    let old = server.session(&session_id).await;
    assert_eq!(old["state"], "restarted", "{old:#}");
    assert_eq!(
        old["end_reason"], "completed",
        "the old session keeps its end: {old:#}"
    );
    let invites: Value = server
        .admin(
            server
                .http
                .get(server.url(&format!("/v1/campaigns/{campaign_id}/invites"))),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let restarted_invite = invites["invites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["url"] == url.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(restarted_invite["state"], "created", "{invites:#}");
    assert_ne!(restarted_invite["session_id"], session_id.as_str());
}

/// Roles in the console: the admin token makes a user and an API key (shown once) on the
/// Access page, gives a user the owner role on the campaign's page; a viewer signs in with
/// email and password (a wrong password is refused), sees its role, and no roles section
/// on a campaign it does not own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_manages_users_keys_and_roles_and_users_sign_in_with_a_password() {
    let server = Server::start(&[]).await;
    // A POST that must succeed (with the admin token when `admin`); one field of
    // its JSON answer.
    let call = |path: String, body: Value, admin: bool, key: &'static str| {
        let req = server.http.post(server.url(&path)).json(&body);
        let req = if admin { server.admin(req) } else { req };
        async move {
            let res = req.send().await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            res.json::<Value>().await.unwrap()[key]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let cid = call(
        "/v1/campaigns".into(),
        serde_json::json!({"name": "Study A"}),
        true,
        "id",
    )
    .await;
    let viewer = call(
        "/v1/users".into(),
        serde_json::json!({"email": "viewer@example.org", "password": "viewer password 1"}),
        true,
        "id",
    )
    .await;
    // A consented session of the campaign, for the viewer to review.
    let script = serde_json::json!({"name": "S", "campaign_id": cid,
        "prompts": [{"id": "q1", "text": "Hi?", "audio": "default/q1.wav"}]});
    let sid = call("/v1/scripts".into(), script, true, "id").await;
    let invite = serde_json::json!({"campaign_id": cid, "script_id": sid});
    let token = call("/v1/invites".into(), invite, true, "token").await;
    let consent = serde_json::json!({"accept": true});
    let session = call(
        format!("/v1/invites/{token}/consent"),
        consent,
        false,
        "session_id",
    )
    .await;
    let mut console = Browser::launch(&server.url("/console"), None).await;
    console.set_viewport(1280, 800, false).await;
    wait(
        &mut console,
        "!document.querySelector('#signin').hidden",
        "sign-in shown",
    )
    .await;
    shoot(&mut console, "20-signin-email").await;
    fill(&mut console, "#token", ADMIN_TOKEN).await;
    click(&mut console, "#signin-form button").await;
    wait(
        &mut console,
        "document.querySelector('#signin').hidden",
        "signed in",
    )
    .await;

    // Access: a new user and an API key, shown once.
    console.navigate(&server.url("/console#/access")).await;
    wait(
        &mut console,
        "!!document.querySelector('#user-form')",
        "access page",
    )
    .await;
    fill(&mut console, "#u-email", "owner@example.org").await;
    fill(&mut console, "#u-name", "Olga Owner").await;
    fill(&mut console, "#u-password", "owner password 12").await;
    click(&mut console, "#user-form button").await;
    wait(
        &mut console,
        "document.querySelector('#users').textContent.includes('owner@example.org')",
        "user listed",
    )
    .await;
    fill(&mut console, "#k-name", "nightly export").await;
    let owner_option = "[...document.querySelectorAll('#k-user option')].find(o => o.textContent === 'owner@example.org').value";
    let owner_id = console
        .eval(owner_option)
        .await
        .as_str()
        .unwrap()
        .to_string();
    fill(&mut console, "#k-user", &owner_id).await;
    click(&mut console, "#make-key").await;
    wait(
        &mut console,
        "!!document.querySelector('#api-key')",
        "key shown",
    )
    .await;
    let key = text(&mut console, "#api-key").await;
    assert!(key.starts_with("ek_") && key.len() == 43, "{key}");
    assert!(text(&mut console, "#keys").await.contains("nightly export"));
    assert!(
        !text(&mut console, "#keys").await.contains(&key),
        "the list never shows the key"
    );
    let audit = text(&mut console, "#audit").await;
    assert!(
        audit.contains("user.create") && audit.contains("key.create"),
        "{audit}"
    );
    shoot_at(&mut console, "21-access-key-created", "#key-form").await;
    assert!(
        text(&mut console, "#keys")
            .await
            .contains("owner@example.org")
    );
    shoot_at(&mut console, "21b-access", "#me").await;

    // The campaign's roles: the new user becomes its owner, the viewer its viewer.
    console
        .navigate(&server.url(&format!("/console#/campaigns/{cid}")))
        .await;
    wait(
        &mut console,
        "!!document.querySelector('#grant-form')",
        "roles section",
    )
    .await;
    let owner_option = "[...document.querySelectorAll('#g-user option')].find(o => o.textContent === 'owner@example.org').value";
    let owner_id = console
        .eval(owner_option)
        .await
        .as_str()
        .unwrap()
        .to_string();
    fill(&mut console, "#g-user", &owner_id).await;
    fill(&mut console, "#g-role", "owner").await;
    click(&mut console, "#grant-form button").await;
    wait(
        &mut console,
        "document.querySelector('#grants') && document.querySelector('#grants').textContent.includes('owner@example.org')",
        "owner granted",
    )
    .await;
    fill(&mut console, "#g-user", &viewer).await;
    fill(&mut console, "#g-role", "viewer").await;
    click(&mut console, "#grant-form button").await;
    wait(
        &mut console,
        "document.querySelector('#grants') && document.querySelector('#grants').textContent.includes('viewer@example.org')",
        "viewer granted",
    )
    .await;
    shoot_at(&mut console, "22-campaign-roles", "#roles-section").await;

    // The viewer signs in with a password: a wrong one is refused.
    click(&mut console, "#signout").await;
    wait(
        &mut console,
        "!document.querySelector('#signin').hidden",
        "signed out",
    )
    .await;
    fill(&mut console, "#email", "viewer@example.org").await;
    fill(&mut console, "#password", "not the password").await;
    click(&mut console, "#signin-form button").await;
    wait(
        &mut console,
        "document.querySelector('#signin-error').textContent.includes('Wrong email or password')",
        "wrong password refused",
    )
    .await;
    fill(&mut console, "#password", "viewer password 1").await;
    click(&mut console, "#signin-form button").await;
    wait(
        &mut console,
        "document.querySelector('#signin').hidden && !!document.querySelector('#page-title')",
        "viewer signed in",
    )
    .await;
    console.navigate(&server.url("/console#/access")).await;
    wait(
        &mut console,
        "!!document.querySelector('#me')",
        "viewer's access page",
    )
    .await;
    let me = text(&mut console, "#me").await;
    assert!(
        me.contains(&viewer) && me.contains("Study A") && me.contains("viewer"),
        "{me}"
    );
    assert_eq!(
        console
            .eval("!!document.querySelector('#users') || !!document.querySelector('#audit')")
            .await,
        Value::Bool(false),
        "a viewer sees neither users nor the audit log"
    );
    shoot(&mut console, "23-viewer-access").await;
    // The viewer reviews the session (its analysis included), read-only.
    console
        .navigate(&server.url(&format!("/console#/sessions/{session}")))
        .await;
    wait(
        &mut console,
        "document.querySelector('#view').textContent.includes('Talk ratio') && !!document.querySelector('#export-links')",
        "viewer's session page",
    )
    .await;
    assert!(text(&mut console, "#view").await.contains(&session));
    console
        .navigate(&server.url(&format!("/console#/campaigns/{cid}")))
        .await;
    wait(
        &mut console,
        "!!document.querySelector('#e-name')",
        "viewer's campaign page",
    )
    .await;
    assert_eq!(
        console
            .eval("!!document.querySelector('#roles-section')")
            .await,
        Value::Bool(false),
        "no roles section for a viewer"
    );
    // The monitoring pages use the console's sign-in: no token to paste. (A viewer has no
    // `listen`: the board is empty and the live stream is refused, but the pages open.)
    console.navigate(&server.url("/monitor")).await;
    wait(
        &mut console,
        "!document.querySelector('#board').hidden && document.querySelector('#signin').hidden \
         && !document.querySelector('#empty').hidden",
        "the live board by the console's sign-in",
    )
    .await;
    console
        .navigate(&server.url(&format!("/monitor/sessions/{session}")))
        .await;
    wait(
        &mut console,
        "!document.querySelector('#view').hidden && document.querySelector('#signin').hidden",
        "the session's monitor page by the console's sign-in",
    )
    .await;
    // Signing out there ends the console's sign-in too.
    click(&mut console, "#signout").await;
    wait(
        &mut console,
        "!document.querySelector('#signin').hidden",
        "signed out",
    )
    .await;
    console.navigate(&server.url("/monitor")).await;
    wait(
        &mut console,
        "!document.querySelector('#signin').hidden && document.querySelector('#board').hidden",
        "no sign-in left",
    )
    .await;
}
