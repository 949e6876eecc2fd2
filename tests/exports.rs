//! Exports (issue 15) against a real server: the PDF transcript, raw JSON and audio ZIP of a
//! real interview (a Rust WebRTC participant, the built-in interviewer asking a question
//! with accents and CJK), checked with poppler's `pdftotext`/`pdftoppm` and `unzip`; the
//! bulk CSV of 10,000 sessions seeded into the server's database, parsed back with the `csv`
//! crate, with the server's memory read from /proc while it streams; JSON Lines; the ZIP of
//! PDFs. Every route refuses a missing or wrong token and a participant's invite token.

mod support;

use earshot_signaling::exports::{duration_text, pdf::timestamp};
use earshot_signaling::lifecycle::{Lifecycle, LifecycleConfig, Millis, State};
use earshot_signaling::store::sqlite::SqliteStore;
use earshot_signaling::store::{CampaignRow, InviteRow, SessionRow, SessionStore};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Server, short_interview};

/// The question of the real interview: accents and CJK must survive into the PDF.
const QUESTION: &str = "Café naïve? 你好世界, how was your week?";

/// Every export route refuses no token, a wrong one and a participant's invite token.
async fn refuses_non_admins(server: &Server, invite_token: &str, paths: &[String]) {
    for path in paths {
        for token in [None, Some("wrong-token"), Some(invite_token)] {
            let mut req = server.http.get(server.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            let v: Value = r.json().await.expect("error json");
            assert_eq!(v["error"]["code"], "unauthorized", "{path}");
        }
    }
}

async fn get_ok(server: &Server, path: &str) -> reqwest::Response {
    let r = server
        .admin(server.http.get(server.url(path)))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{path}");
    r
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-deps.sh --test installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Checks the audio ZIP with `unzip -t` and compares each entry with the recording
/// downloaded alone.
async fn check_audio_zip(server: &Server, id: &str, format: &str, dir: &Path) {
    let zip = get_ok(
        server,
        &format!("/v1/sessions/{id}/audio.zip?format={format}"),
    )
    .await
    .bytes()
    .await
    .expect("zip");
    let path = dir.join(format!("audio-{format}.zip"));
    std::fs::write(&path, &zip).expect("write zip");
    run(Command::new("unzip").arg("-tq").arg(&path));
    let listing = run(Command::new("unzip").arg("-Z1").arg(&path));
    let mut names = words(&String::from_utf8_lossy(&listing.stdout));
    names.sort();
    let mut want: Vec<String> = ["ai", "mix", "participant"]
        .iter()
        .map(|t| format!("{t}.{format}"))
        .collect();
    want.sort();
    assert_eq!(names, want);
    for name in &names {
        let entry = run(Command::new("unzip").arg("-p").arg(&path).arg(name)).stdout;
        let alone = server.download(id, name).await;
        assert!(alone.len() > 1000, "{name}");
        assert!(
            entry == alone,
            "{name}: the ZIP entry differs from the recording"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_of_a_real_interview_and_of_ten_thousand_sessions() {
    // The mix and MP3s are made on request: the audio ZIP must make them too.
    let server = Server::start(&[
        ("EARSHOT_INTERVIEWER_SILENCE_MS", "800"),
        ("EARSHOT_RECORDING_DERIVE", "on_request"),
    ])
    .await;
    let script = short_interview::create_script(&server, QUESTION).await;
    let p = short_interview::run(&server, &script, 2).await;
    let id = p.session_id.clone();
    let dir = tempfile::tempdir().expect("tmp");
    // For comparison with tests/webhooks.rs (the same interview with deliveries hanging).
    eprintln!(
        "interview without webhooks: {} of {} ticks missed their deadline",
        server.metric("earshot_media_deadline_missed_total").await,
        server.metric("earshot_media_ticks_total").await
    );

    let session_paths: Vec<String> = [
        "export.pdf",
        "export.json",
        "audio.zip",
        "audio.zip?format=mp3",
    ]
    .iter()
    .map(|f| format!("/v1/sessions/{id}/{f}"))
    .collect();
    let bulk_paths: Vec<String> = [
        "sessions.csv",
        "sessions.jsonl",
        "transcripts.zip",
        "sessions.csv?state=completed",
    ]
    .iter()
    .map(|f| format!("/v1/exports/{f}"))
    .collect();
    refuses_non_admins(&server, &p.token, &session_paths).await;
    refuses_non_admins(&server, &p.token, &bulk_paths).await;
    for (path, status, code) in [
        ("/v1/sessions/ses_nope/export.pdf", 404, "session_not_found"),
        (
            "/v1/sessions/ses_nope/export.json",
            404,
            "session_not_found",
        ),
        ("/v1/sessions/ses_nope/audio.zip", 404, "session_not_found"),
        (
            &format!("/v1/sessions/{id}/audio.zip?format=flac") as &str,
            400,
            "invalid_query",
        ),
        ("/v1/exports/sessions.csv?state=done", 400, "invalid_query"),
        (
            "/v1/exports/sessions.csv?from=yesterday",
            400,
            "invalid_query",
        ),
        ("/v1/exports/sessions.csv?colour=red", 400, "invalid_query"),
        (
            "/v1/exports/sessions.csv?ids=drop%20table",
            400,
            "invalid_query",
        ),
    ] {
        let r = server
            .admin(server.http.get(server.url(path)))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), status, "{path}");
        let v: Value = r.json().await.expect("error json");
        assert_eq!(v["error"]["code"], code, "{path}");
    }

    // Audio: both ZIPs pass `unzip -t` and hold the recordings byte for byte, the mix and
    // the MP3s made for them.
    check_audio_zip(&server, &id, "wav", dir.path()).await;
    check_audio_zip(&server, &id, "mp3", dir.path()).await;

    // Raw JSON: metadata, the turn log with times, recordings with URLs, analytics.
    let export: Value = get_ok(&server, &format!("/v1/sessions/{id}/export.json"))
        .await
        .json()
        .await
        .expect("export json");
    assert_eq!(export["id"], id.as_str());
    assert_eq!(export["state"], "completed");
    assert_eq!(export["campaign"]["name"], "Demo campaign");
    assert_eq!(export["script"]["name"], "Short interview");
    let turns = export["turns"].as_array().expect("turns").clone();
    assert!(turns.len() >= 3, "{export:#}");
    assert_eq!(turns[0]["role"], "ai");
    assert_eq!(turns[0]["text"], QUESTION);
    assert!(turns.iter().any(|t| t["role"] == "participant"));
    assert_eq!(export["recordings"].as_array().map(Vec::len), Some(6));
    for r in export["recordings"].as_array().into_iter().flatten() {
        let url = r["url"].as_str().expect("url");
        assert!(
            url.starts_with(&format!("/v1/sessions/{id}/recordings/")),
            "{url}"
        );
    }
    assert_eq!(
        export["analytics"]["turn_count"].as_u64(),
        Some(turns.len() as u64)
    );
    assert!(
        export["links"]["export_pdf"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/v1/sessions/{id}/export.pdf")))
    );

    // PDF: the text pdftotext reads back is the header and the transcript, in order.
    let r = get_ok(&server, &format!("/v1/sessions/{id}/export.pdf")).await;
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.expect("pdf");
    let pdf_path = dir.path().join("transcript.pdf");
    std::fs::write(&pdf_path, &pdf).expect("write pdf");
    let text = run(Command::new("pdftotext").arg(&pdf_path).arg("-"));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let s = |k: &str| export[k].as_str().unwrap_or_default().to_string();
    let mut want = vec![
        "Interview transcript".to_string(),
        format!("Session: {id}"),
        "Campaign: Demo campaign (cmp_default)".into(),
        format!("Script: Short interview ({script})"),
        "State: completed".into(),
        format!("Created: {}", s("created_at")),
        format!("Started: {}", s("started_at")),
        format!("Ended: {}", s("ended_at")),
        format!(
            "Duration: {}",
            duration_text(export["active_duration_ms"].as_i64().expect("active"))
        ),
    ];
    if let Some(r) = export["end_reason"].as_str() {
        want.push(format!("End reason: {r}"));
    }
    for t in &turns {
        let speaker = if t["role"] == "ai" {
            "Interviewer"
        } else {
            "Participant"
        };
        want.push(format!(
            "{} {speaker}",
            timestamp(t["start_ms"].as_u64().expect("start"))
        ));
        want.push(t["text"].as_str().unwrap_or_default().to_string());
    }
    want.push("Page 1 of 1".into());
    assert_eq!(words(&text), words(&want.join("\n")), "pdftotext:\n{text}");
    assert!(text.contains(QUESTION), "{text}");

    // One page as a picture, to look at (the path is printed).
    let png_prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exports-transcript");
    run(Command::new("pdftoppm")
        .args(["-png", "-r", "80", "-f", "1", "-l", "1"])
        .arg(&pdf_path)
        .arg(&png_prefix));
    eprintln!("transcript page 1: {}-1.png", png_prefix.display());

    // The ZIP of PDFs of the completed sessions of the demo campaign: this interview.
    let zip = get_ok(
        &server,
        "/v1/exports/transcripts.zip?campaign=cmp_default&state=completed",
    )
    .await
    .bytes()
    .await
    .expect("zip");
    let zip_path = dir.path().join("transcripts.zip");
    std::fs::write(&zip_path, &zip).expect("write zip");
    run(Command::new("unzip").arg("-tq").arg(&zip_path));
    let inner = run(Command::new("unzip")
        .arg("-p")
        .arg(&zip_path)
        .arg(format!("{id}.pdf")))
    .stdout;
    assert!(inner == pdf.as_ref(), "the ZIP's PDF is the session's PDF");

    bulk_csv_of_ten_thousand(&server, dir.path()).await;
}

/// Sessions seeded straight into the server's database: created in 2020 (so `to=2021-01-01`
/// selects exactly them), in three campaigns, one of whose ids is a spreadsheet formula.
const SEEDED: usize = 10_000;
const FORMULA_CAMPAIGN: &str = "=HYPERLINK(\"http://evil\",\"x\")";
const QUOTED_CAMPAIGN: &str = "cmp_a,\"quoted\"";
const T2020: i64 = 1_577_836_800_000;

async fn seed(server: &Server) -> Vec<Vec<String>> {
    let store = SqliteStore::open(&server.data_path().join("earshot.db"))
        .await
        .expect("open the server's database");
    for id in [FORMULA_CAMPAIGN, QUOTED_CAMPAIGN, "cmp_bulk"] {
        store
            .insert_campaign(&CampaignRow {
                id: id.into(),
                name: id.into(),
                description: String::new(),
                created_at: T2020,
            })
            .await
            .expect("campaign");
    }
    let mut rows = Vec::new();
    for i in 0..SEEDED {
        let campaign = match i % 100 {
            0 => FORMULA_CAMPAIGN,
            1 => QUOTED_CAMPAIGN,
            _ => "cmp_bulk",
        };
        let token = format!("bulk{i:06}");
        store
            .insert_invite(&InviteRow {
                token: token.clone(),
                campaign_id: campaign.into(),
                script_id: "scr_default".into(),
                metadata: "{}".into(),
                created_at: T2020,
            })
            .await
            .expect("invite");
        let created = T2020 + (i as i64) * 1000;
        let (state, ended) = if i % 3 == 0 {
            (State::Abandoned, None::<i64>)
        } else {
            (State::Completed, Some(created + 60_000 + i as i64))
        };
        let active_ms = (i as i64 % 600) * 1000 + 999;
        let mut lc =
            serde_json::to_value(Lifecycle::new(LifecycleConfig::default(), Millis(created)))
                .expect("lifecycle");
        lc["active_ms"] = active_ms.into();
        let id = format!("ses_bulk{i:06}");
        let ended = ended.or(Some(created + 5_000));
        store
            .insert_session(&SessionRow {
                id: id.clone(),
                invite_token: token,
                campaign_id: campaign.into(),
                script_id: "scr_default".into(),
                state,
                lifecycle: lc.to_string(),
                created_at: created,
                started_at: Some(created + 1000),
                ended_at: ended,
                end_reason: None,
                drop_off: None,
                user_agent: None,
                ip: None,
                metadata: "{}".into(),
                version: 1,
                next_deadline: None,
                summary: Default::default(),
            })
            .await
            .expect("session");
        let rfc = |ms: i64| {
            earshot_signaling::timestamps::rfc3339(ms)
                .as_str()
                .expect("time")
                .to_string()
        };
        let safe_campaign = if campaign.starts_with('=') {
            format!("'{campaign}")
        } else {
            campaign.to_string()
        };
        rows.push(vec![
            id.clone(),
            safe_campaign,
            rfc(created + 1000),
            ended.map(rfc).unwrap_or_default(),
            (active_ms / 1000).to_string(),
            state.as_str().to_string(),
            format!("{}/v1/sessions/{id}/export.pdf", server.base),
        ]);
    }
    rows
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn bulk_csv_of_ten_thousand(server: &Server, dir: &Path) {
    let t = std::time::Instant::now();
    let want = seed(server).await;
    eprintln!("seeded {SEEDED} sessions in {:?}", t.elapsed());

    // The export twice. The first run leaves the high-water mark of any large query (the
    // page cache of each pooled SQLite connection, up to 2 MiB each for the pool's 4,
    // allocator arenas of the threads that serve it, a page of rows); a second run may warm
    // another connection's cache but adds nothing that follows the export's size. Holding the
    // 10,000 rows instead (about 1 KB each with the lifecycle record) plus the CSV would take
    // more than 11 MiB at once. The figures are printed (README "Exports").
    let query = "/v1/exports/sessions.csv?to=2021-01-01";
    let mut body = Vec::new();
    let mut growth = Vec::new();
    for run in 0..2 {
        let before = rss_kib(server.pid());
        let mut during_max = before;
        let mut r = get_ok(server, query).await;
        assert_eq!(
            r.headers()["x-total-count"],
            "10000",
            "progress for the client"
        );
        assert!(
            r.headers()["content-type"]
                .to_str()
                .is_ok_and(|v| v.starts_with("text/csv"))
        );
        body.clear();
        let mut chunks = 0;
        while let Some(chunk) = r.chunk().await.expect("chunk") {
            body.extend_from_slice(&chunk);
            chunks += 1;
            during_max = during_max.max(rss_kib(server.pid()));
            // Read slowly, so the server holds its stream open while we look.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let after = rss_kib(server.pid());
        eprintln!(
            "bulk CSV of {SEEDED} sessions, run {}: {} bytes in {chunks} chunks; server RSS before {before} KiB, max during {during_max} KiB (+{} KiB), after {after} KiB",
            run + 1,
            body.len(),
            during_max - before
        );
        growth.push(during_max - before);
    }
    let export_kib = body.len() as u64 / 1024;
    assert!(
        growth[0] < 32 * 1024 && growth[1] < 8 * 1024,
        "RSS grew {growth:?} KiB while streaming {export_kib} KiB"
    );

    // Parsed back with a CSV parser: the header and every seeded row, in creation order.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_slice());
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("a CSV record").iter().map(String::from).collect())
        .collect();
    assert_eq!(
        rows[0],
        vec![
            "session_id",
            "campaign",
            "started_at",
            "completed_at",
            "duration",
            "status",
            "transcript_url"
        ]
    );
    assert_eq!(rows.len(), SEEDED + 1);
    assert_eq!(rows[1..], want[..]);
    // The formula campaign is text to a spreadsheet; the quoted one round-trips.
    assert!(rows.iter().any(|r| r[1] == format!("'{FORMULA_CAMPAIGN}")));
    assert!(!rows.iter().any(|r| r[1].starts_with('=')));
    assert!(rows.iter().any(|r| r[1] == QUOTED_CAMPAIGN));
    assert!(body.windows(2).any(|w| w == b"\r\n"), "RFC 4180 line ends");
    std::fs::write(dir.join("sessions.csv"), &body).expect("write csv");

    // Filters: state and a date range, and a campaign.
    let count = |body: &[u8]| {
        csv::Reader::from_reader(body)
            .records()
            .inspect(|r| assert!(r.is_ok(), "{r:?}"))
            .count()
    };
    let abandoned = get_ok(server, &format!("{query}&state=abandoned"))
        .await
        .bytes()
        .await
        .expect("csv");
    assert_eq!(count(&abandoned), SEEDED.div_ceil(3));
    let first_hour = get_ok(
        server,
        "/v1/exports/sessions.csv?from=2020-01-01T00:00:00Z&to=2020-01-01T01:00:00Z",
    )
    .await
    .bytes()
    .await
    .expect("csv");
    assert_eq!(count(&first_hour), 3600);
    let formula = get_ok(
        server,
        &format!(
            "/v1/exports/sessions.csv?campaign={}",
            url_encode(FORMULA_CAMPAIGN)
        ),
    )
    .await
    .bytes()
    .await
    .expect("csv");
    assert_eq!(count(&formula), SEEDED / 100);
    // A selection, whatever the order it is named in.
    let selection = get_ok(
        server,
        "/v1/exports/sessions.csv?ids=ses_bulk000007,ses_bulk000003,ses_nothere",
    )
    .await
    .bytes()
    .await
    .expect("csv");
    let picked: Vec<String> = csv::Reader::from_reader(selection.as_ref())
        .records()
        .map(|r| r.expect("record")[0].to_string())
        .collect();
    assert_eq!(picked, vec!["ses_bulk000003", "ses_bulk000007"]);

    // JSON Lines: one session a line, the same sessions in the same order.
    let jsonl = get_ok(server, "/v1/exports/sessions.jsonl?to=2021-01-01")
        .await
        .text()
        .await
        .expect("jsonl");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), SEEDED);
    assert_eq!(lines[0]["id"], "ses_bulk000000");
    assert_eq!(
        lines[SEEDED - 1]["id"],
        format!("ses_bulk{:06}", SEEDED - 1)
    );
    assert_eq!(lines[1]["campaign_id"], QUOTED_CAMPAIGN);

    // A ZIP of 10,000 PDFs, cancelled after its first bytes: the server stops making it.
    let mut r = get_ok(server, "/v1/exports/transcripts.zip?to=2021-01-01").await;
    let first = r.chunk().await.expect("chunk").expect("the first bytes");
    assert!(first.starts_with(b"PK"), "a ZIP");
    drop(r);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().contains("export cancelled by the client") {
        assert!(
            std::time::Instant::now() < deadline,
            "the export was not cancelled:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
