//! Privacy (issue 16) against the real router on loopback (real HTTP, SQLite on a
//! temporary file, real files on disk, a media plane test double whose transcript events
//! the test sends): a campaign's PII policy on the live stream, the stored transcript, the
//! search index and the JSON export; sealed originals; the settings' validation; the
//! retention sweep with a clock the test moves; participants' deletion requests; and every
//! new route refusing the wrong caller.

mod support;

use earshot_signaling::clock::ManualClock;
use earshot_signaling::lifecycle::Millis;
use earshot_signaling::media_port::MediaEvent;
use earshot_signaling::pii::{KeyRingVault, RefuseVault, TextVault};
use earshot_signaling::store::privacy::PrivacyStore;
use earshot_signaling::store::{RecordingRow, SessionStore, TurnRow};
use earshot_vocab::{Format, Role, Track};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::{HANG, TestServer, json_of};

const DAY: Duration = Duration::from_secs(86_400);
const EMAIL: &str = "jane.doe@example.com";

/// The production vault: originals sealed with a master key ring (`earshot-sealed`).
fn key_ring_vault() -> Arc<dyn TextVault> {
    Arc::new(KeyRingVault(Arc::new(
        earshot_sealed::KeyRing::generate("test-key").expect("key ring"),
    )))
}

/// A campaign with `privacy` fields and a script; returns (campaign id, script id).
async fn campaign(srv: &TestServer, privacy: Value) -> (String, String) {
    let mut body = json!({"name": "Privacy study"});
    body.as_object_mut()
        .unwrap()
        .extend(privacy.as_object().unwrap().clone());
    srv.campaign_with_script(body).await
}

async fn session_in(srv: &TestServer, cid: &str, sid: &str) -> (String, String) {
    srv.consented_session(json!({"campaign_id": cid, "script_id": sid}))
        .await
}

async fn end(srv: &TestServer, id: &str) {
    let res = srv
        .admin(Method::POST, &format!("/v1/sessions/{id}/end"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

fn line(session_id: &str, role: Role, text: &str, at: u64) -> MediaEvent {
    MediaEvent::Transcript {
        session_id: session_id.into(),
        role,
        text: text.into(),
        is_final: true,
        start_ms: at,
        end_ms: at + 900,
    }
}

/// The stored transcript once it has `n` turns.
async fn transcript(srv: &TestServer, id: &str, n: usize, query: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let t = json_of(
            srv.admin(Method::GET, &format!("/v1/sessions/{id}/transcript{query}"))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let turns = t["turns"].as_array().unwrap().clone();
        if turns.len() >= n {
            return turns;
        }
        assert!(tokio::time::Instant::now() < deadline, "turns never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn search(srv: &TestServer, q: &str) -> usize {
    let list = json_of(
        srv.admin(Method::GET, &format!("/v1/sessions?q={q}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    list["sessions"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_everywhere_with_the_original_sealed_for_owners() {
    let srv = TestServer::start_with(
        Arc::new(ManualClock::starting_at(Millis(1_780_000_000_000))),
        key_ring_vault(),
    )
    .await;
    let (cid, sid) = campaign(
        &srv,
        json!({"pii_action": "mask", "pii_keep_originals": true,
               "pii_patterns": [{"name": "EMPLOYEE_ID", "regex": "\\bE\\d{5}\\b"}]}),
    )
    .await;
    let (_, id) = session_in(&srv, &cid, &sid).await;
    let mut monitor = srv.monitor(&id).await;
    let said = format!("Sure, it's {EMAIL} or (555) 123-4567, badge E12345.");
    srv.send(line(&id, Role::Participant, &said, 1_000)).await;
    let live = monitor.next_of("transcript").await;
    assert_eq!(
        live["text"],
        "Sure, it's [EMAIL] or [PHONE], badge [EMPLOYEE_ID]."
    );
    let turns = transcript(&srv, &id, 1, "").await;
    assert_eq!(
        turns[0]["text"],
        "Sure, it's [EMAIL] or [PHONE], badge [EMPLOYEE_ID]."
    );
    // Stored: masked text; the original sealed beside it, never in plain.
    let rows = srv.store.turns(&id).await.unwrap();
    assert!(!rows[0].text.contains("jane"));
    let originals = srv.store.turn_originals(&id).await.unwrap();
    assert_eq!(originals.len(), 1);
    assert!(!String::from_utf8_lossy(&originals[0].1).contains(EMAIL));
    assert!(
        !originals[0].1.windows(4).any(|w| w == b"jane"),
        "no plaintext in the sealed original"
    );
    // The search index holds the masked line only.
    assert_eq!(search(&srv, "jane").await, 0);
    assert_eq!(search(&srv, "4567").await, 0);
    assert_eq!(search(&srv, "badge").await, 1);
    // The JSON export and a monitor's snapshot show the masked text.
    let export = json_of(
        srv.admin(Method::GET, &format!("/v1/sessions/{id}/export.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(!export.to_string().contains("jane"), "{export}");
    assert!(export.to_string().contains("[EMAIL]"));
    let mut late = srv.monitor(&id).await;
    let snapshot = late.next().await.unwrap();
    assert!(!snapshot.to_string().contains("jane"), "{snapshot}");
    // Owners get the original back through the vault.
    let original = transcript(&srv, &id, 1, "?original=true").await;
    assert_eq!(original[0]["text"], said.as_str());
    let bad = srv
        .admin(
            Method::GET,
            &format!("/v1/sessions/{id}/transcript?original=maybe"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(bad, 400).await["error"]["code"], "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_removes_and_the_refusing_vault_keeps_no_original() {
    let srv = TestServer::start_with(
        Arc::new(ManualClock::starting_at(Millis(1_780_000_000_000))),
        Arc::new(RefuseVault),
    )
    .await;
    let (cid, sid) = campaign(
        &srv,
        json!({"pii_action": "redact", "pii_keep_originals": true}),
    )
    .await;
    let (_, id) = session_in(&srv, &cid, &sid).await;
    let mut monitor = srv.monitor(&id).await;
    srv.send(line(
        &id,
        Role::Ai,
        &format!("I have {EMAIL} on file."),
        1_000,
    ))
    .await;
    assert_eq!(
        monitor.next_of("transcript").await["text"],
        "I have on file."
    );
    let turns = transcript(&srv, &id, 1, "").await;
    assert_eq!(turns[0]["text"], "I have on file.");
    assert!(srv.store.turn_originals(&id).await.unwrap().is_empty());
    let original = transcript(&srv, &id, 1, "?original=true").await;
    assert_eq!(original[0]["text"], "I have on file.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_settings_are_validated_and_shown() {
    let srv = TestServer::start().await;
    let (cid, _) = campaign(&srv, json!({})).await;
    let got = json_of(
        srv.admin(Method::GET, &format!("/v1/campaigns/{cid}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(got["pii_action"], "keep");
    assert_eq!(got["audio_retention_days"], 90);
    assert_eq!(got["deletion_requests"], "manual");
    for (body, code) in [
        (json!({"pii_action": "scramble"}), "invalid_pii_policy"),
        (json!({"pii_delay_days": -3}), "invalid_pii_policy"),
        (
            json!({"deletion_requests": "sometimes"}),
            "invalid_pii_policy",
        ),
        (json!({"audio_retention_days": 99999}), "invalid_retention"),
        (
            json!({"pii_patterns": [{"name": "ID", "regex": "(unclosed"}]}),
            "invalid_pii_pattern",
        ),
        (
            json!({"pii_patterns": [{"name": "lower", "regex": "x"}]}),
            "invalid_pii_pattern",
        ),
        (
            json!({"pii_patterns": [{"name": "ANY", "regex": ".*"}]}),
            "invalid_pii_pattern",
        ),
        (json!({"pii_patterns": "E\\d+"}), "invalid_pii_pattern"),
    ] {
        let res = srv
            .admin(Method::PATCH, &format!("/v1/campaigns/{cid}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(res, 400).await["error"]["code"], code, "{body}");
    }
    // A create with a bad setting makes no campaign.
    let campaigns = || async {
        let list = json_of(
            srv.admin(Method::GET, "/v1/campaigns")
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        list["campaigns"].as_array().unwrap().len()
    };
    let before = campaigns().await;
    let res = srv
        .admin(Method::POST, "/v1/campaigns")
        .json(&json!({"name": "Bad", "audio_retention_days": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(res, 400).await["error"]["code"],
        "invalid_retention"
    );
    assert_eq!(campaigns().await, before);
    // Nothing changed.
    let again = json_of(
        srv.admin(Method::GET, &format!("/v1/campaigns/{cid}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(again, got);
    let edited = json_of(
        srv.admin(Method::PATCH, &format!("/v1/campaigns/{cid}"))
            .json(
                &json!({"pii_action": "mask", "pii_delay_days": 7, "audio_retention_days": 0,
                          "deletion_requests": "automatic"}),
            )
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(edited["pii_action"], "mask");
    assert_eq!(edited["pii_delay_days"], 7);
    assert_eq!(edited["audio_retention_days"], 0);
    assert_eq!(edited["deletion_requests"], "automatic");
    assert_eq!(edited["name"], "Privacy study");
    // The participant's page learns the retention period for its consent step.
    let (cid2, sid2) = campaign(&srv, json!({"audio_retention_days": 30})).await;
    let res = srv
        .admin(Method::POST, "/v1/invites")
        .json(&json!({"campaign_id": cid2, "script_id": sid2}))
        .send()
        .await
        .unwrap();
    let token = json_of(res, 201).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let view = json_of(
        srv.http
            .get(format!("{}/v1/invites/{token}", srv.base))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(view["audio_retention_days"], 30);
}

/// Writes a session's recording files and rows as the media plane would.
async fn recorded(srv: &TestServer, id: &str) -> PathBuf {
    let folder = srv.dir.path().join("recordings").join(id);
    std::fs::create_dir_all(&folder).unwrap();
    for name in [
        "participant.wav",
        "ai.wav",
        "mix.wav",
        "mix.mp3",
        "participant.peaks.json",
    ] {
        std::fs::write(folder.join(name), b"data").unwrap();
    }
    for (track, format) in [
        (Track::Participant, Format::Wav),
        (Track::Ai, Format::Wav),
        (Track::Mix, Format::Wav),
        (Track::Mix, Format::Mp3),
    ] {
        srv.store
            .upsert_recording(&RecordingRow {
                session_id: id.into(),
                track,
                format,
                path: folder.join(track.file_name(format)).display().to_string(),
                duration_ms: 1000,
                bytes: 4,
                created_at: 0,
            })
            .await
            .unwrap();
    }
    folder
}

async fn said(srv: &TestServer, id: &str, text: &str) {
    srv.store
        .upsert_turns(
            id,
            &[TurnRow {
                seq: 1,
                role: Role::Participant,
                start_ms: 0,
                end_ms: Some(1000),
                text: text.into(),
                words: 5,
                response_ms: None,
                sentiment: None,
            }],
        )
        .await
        .unwrap();
}

async fn sweep(srv: &TestServer) -> Value {
    json_of(
        srv.admin(Method::GET, "/v1/retention")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_and_redacts_exactly_what_is_due() {
    let t0 = 1_780_000_000_000;
    let clock = Arc::new(ManualClock::starting_at(Millis(t0)));
    let srv = TestServer::start_with(clock.clone(), Arc::new(RefuseVault)).await;
    // A: audio 1 day, masked 2 days after the end. B: audio kept. Default: 90 days.
    let (a, a_script) = campaign(
        &srv,
        json!({"audio_retention_days": 1, "pii_action": "mask", "pii_delay_days": 2}),
    )
    .await;
    let (b, b_script) = campaign(&srv, json!({"audio_retention_days": 0})).await;
    let (d, d_script) = campaign(&srv, json!({})).await;
    let text = format!("write to {EMAIL} please");
    let mut sessions = Vec::new();
    for (cid, sid, ends) in [
        (&a, &a_script, true),
        (&a, &a_script, false), // still live: never touched
        (&b, &b_script, true),
        (&d, &d_script, true),
    ] {
        let (_, id) = session_in(&srv, cid, sid).await;
        let folder = recorded(&srv, &id).await;
        said(&srv, &id, &text).await;
        if ends {
            end(&srv, &id).await;
        }
        sessions.push((id, folder));
    }
    // One more in A that ends a day later.
    clock.advance(DAY);
    let (_, late) = session_in(&srv, &a, &a_script).await;
    let late_folder = recorded(&srv, &late).await;
    said(&srv, &late, &text).await;
    end(&srv, &late).await;
    let [
        (a_old, a_old_dir),
        (a_live, a_live_dir),
        (b_old, b_dir),
        (d_old, d_dir),
    ] = <[(String, PathBuf); 4]>::try_from(sessions).unwrap();

    // t0 + 1.5 days: only A's first session's audio is due.
    clock.advance(DAY / 2);
    let report = srv.app.service.sweep_retention().await.unwrap();
    assert_eq!(report.recordings_deleted, vec![a_old.clone()]);
    assert!(report.transcripts_redacted.is_empty());
    assert!(!a_old_dir.exists(), "every file and the folder are gone");
    for dir in [&a_live_dir, &b_dir, &d_dir, &late_folder] {
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            5,
            "{}",
            dir.display()
        );
    }
    assert!(srv.store.recordings(&a_old).await.unwrap().is_empty());
    assert_eq!(srv.store.recordings(&late).await.unwrap().len(), 4);
    assert_eq!(
        srv.store.recordings_deleted_at(&a_old).await.unwrap(),
        Some(t0 + 36 * 3_600_000)
    );
    // The session and its transcript stay, as said (the mask waits for its delay).
    assert_eq!(srv.store.turns(&a_old).await.unwrap()[0].text, text);
    let gone = srv
        .admin(
            Method::GET,
            &format!("/v1/sessions/{a_old}/recordings/participant.wav"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(gone, 410).await["error"]["code"],
        "recordings_deleted"
    );
    // Audited: what the sweep deleted, by `retention`.
    let deleted: Vec<String> = report.recordings_deleted.clone();
    assert!(!deleted.is_empty());
    let mut audited = Vec::new();
    for c in [&a, &b, &d] {
        audited.extend(
            audit_rows(&srv, c)
                .await
                .into_iter()
                .filter(|(actor, action, _)| actor == "retention" && action == "recordings.delete")
                .map(|(_, _, session)| session),
        );
    }
    audited.sort();
    let mut want = deleted.clone();
    want.sort();
    assert_eq!(
        audited, want,
        "one audit row per session whose recordings went"
    );
    // Idempotent: the same sweep again does nothing.
    let again = srv.app.service.sweep_retention().await.unwrap();
    assert!(again.recordings_deleted.is_empty() && again.transcripts_redacted.is_empty());
    let status = sweep(&srv).await;
    assert_eq!(status["next_recordings_due"], "2026-05-30T20:26:40Z");

    // t0 + 2.5 days: A's first session is masked, the late one loses its audio.
    clock.advance(DAY);
    let report = srv.app.service.sweep_retention().await.unwrap();
    assert_eq!(report.recordings_deleted, vec![late.clone()]);
    assert_eq!(report.transcripts_redacted, vec![a_old.clone()]);
    assert_eq!(report.turns_redacted, 1);
    assert_eq!(
        srv.store.turns(&a_old).await.unwrap()[0].text,
        "write to [EMAIL] please"
    );
    assert_eq!(srv.store.turns(&late).await.unwrap()[0].text, text);
    assert_eq!(
        search(&srv, "jane").await,
        4,
        "the masked line left the index"
    );
    // t0 + 200 days: the default campaign's audio (90 days) goes; B's and the live one stay.
    clock.advance(DAY * 200);
    let report = srv.app.service.sweep_retention().await.unwrap();
    assert_eq!(report.recordings_deleted, vec![d_old.clone()]);
    assert_eq!(report.transcripts_redacted, vec![late.clone()]);
    assert!(!d_dir.exists());
    assert_eq!(std::fs::read_dir(&b_dir).unwrap().count(), 5);
    assert_eq!(std::fs::read_dir(&a_live_dir).unwrap().count(), 5);
    assert_eq!(srv.store.turns(&a_live).await.unwrap()[0].text, text);
    assert_eq!(srv.store.turns(&b_old).await.unwrap()[0].text, text);
    let status = sweep(&srv).await;
    assert_eq!(status["last_sweep"]["recordings_deleted"], json!([d_old]));
    assert_eq!(status["next_recordings_due"], Value::Null);
    let metrics = srv.metrics_text().await;
    assert!(
        metrics.contains("earshot_retention_sweeps_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("earshot_retention_recordings_deleted_total 3"));
    assert!(metrics.contains("earshot_retention_transcripts_redacted_total 2"));
}

async fn deletion_token(srv: &TestServer, invite: &str) -> reqwest::Response {
    srv.http
        .post(format!("{}/v1/invites/{invite}/deletion-token", srv.base))
        .send()
        .await
        .unwrap()
}

async fn ask_deletion(srv: &TestServer, token: &str) -> reqwest::Response {
    srv.http
        .post(format!("{}/v1/deletion-requests", srv.base))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_request_removes_every_row_and_file() {
    let srv = TestServer::start().await;
    let (cid, sid) = campaign(&srv, json!({})).await;
    let (invite, id) = session_in(&srv, &cid, &sid).await;
    let folder = recorded(&srv, &id).await;
    said(&srv, &id, "my words").await;
    // Not before the interview ended.
    let early = deletion_token(&srv, &invite).await;
    assert_eq!(
        json_of(early, 409).await["error"]["code"],
        "session_not_ended"
    );
    end(&srv, &id).await;
    let issued = json_of(deletion_token(&srv, &invite).await, 201).await;
    let token = issued["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("dtk_") && !token.contains(&invite));
    assert!(
        issued["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/delete/{token}"))
    );
    let page = srv
        .http
        .get(format!("{}/delete/{token}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(page.text().await.unwrap().contains("Delete my interview"));
    // A form post (no JSON) is refused and files nothing.
    let form = srv
        .http
        .post(format!("{}/v1/deletion-requests", srv.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let filed = json_of(ask_deletion(&srv, &token).await, 202).await;
    assert_eq!(filed["state"], "pending");
    let rid = filed["id"].as_str().unwrap().to_string();
    // Asking twice gives the same request.
    let twice = json_of(ask_deletion(&srv, &token).await, 202).await;
    assert_eq!(twice["id"], rid.as_str());
    let list = json_of(
        srv.admin(Method::GET, "/v1/deletion-requests")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(list["deletion_requests"].as_array().unwrap().len(), 1);
    assert_eq!(list["deletion_requests"][0]["session_id"], id.as_str());
    assert!(
        folder.exists(),
        "nothing is deleted before an admin fulfils it"
    );
    let done = json_of(
        srv.admin(Method::POST, &format!("/v1/deletion-requests/{rid}/fulfil"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(done["state"], "fulfilled");
    assert_eq!(done["fulfilled_by"], "admin-token", "who fulfilled it");
    assert!(!folder.exists(), "the session's folder is gone");
    assert!(srv.store.get_session(&id).await.unwrap().is_none());
    assert!(srv.store.turns(&id).await.unwrap().is_empty());
    assert!(srv.store.recordings(&id).await.unwrap().is_empty());
    let gone = srv
        .admin(Method::GET, &format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    // Only the fact remains.
    let fact = srv.store.deletion_request(&rid).await.unwrap().unwrap();
    assert_eq!(fact.session_id, id);
    assert!(fact.fulfilled_at.is_some());
    let again = srv
        .admin(Method::POST, &format!("/v1/deletion-requests/{rid}/fulfil"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(again, 409).await["error"]["code"],
        "deletion_already_fulfilled"
    );
    let reused = ask_deletion(&srv, &token).await;
    assert_eq!(
        json_of(reused, 404).await["error"]["code"],
        "deletion_token_not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_campaign_deletes_on_request() {
    let srv = TestServer::start().await;
    let (cid, sid) = campaign(&srv, json!({"deletion_requests": "automatic"})).await;
    let (invite, id) = session_in(&srv, &cid, &sid).await;
    let folder = recorded(&srv, &id).await;
    end(&srv, &id).await;
    let token = json_of(deletion_token(&srv, &invite).await, 201).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let filed = json_of(ask_deletion(&srv, &token).await, 202).await;
    assert_eq!(filed["state"], "fulfilled");
    assert!(!folder.exists());
    assert!(srv.store.get_session(&id).await.unwrap().is_none());
    let rid = filed["id"].as_str().unwrap();
    let fact = srv.store.deletion_request(rid).await.unwrap().unwrap();
    assert_eq!(fact.fulfilled_by.as_deref(), Some("policy"));
    // The audit log keeps the facts (who, what, which), not the content.
    let rows = audit_rows(&srv, &cid).await;
    assert_eq!(
        rows,
        vec![
            (
                "policy".to_string(),
                "deletion.fulfil".to_string(),
                rid.to_string()
            ),
            (
                "participant".to_string(),
                "deletion.request".to_string(),
                id.clone()
            ),
            (
                "admin-token".to_string(),
                "session.end".to_string(),
                id.clone()
            ),
        ],
        "newest first"
    );
}

/// The audit rows of campaign `cid` as (actor, action, resource), newest first.
async fn audit_rows(srv: &TestServer, cid: &str) -> Vec<(String, String, String)> {
    let page = json_of(
        srv.admin(Method::GET, &format!("/v1/audit?campaign={cid}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("actor"), field("action"), field("resource"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_route_refuses_the_wrong_caller() {
    let srv = TestServer::start().await;
    let (cid, sid) = campaign(&srv, json!({})).await;
    let (invite, id) = session_in(&srv, &cid, &sid).await;
    end(&srv, &id).await;
    let token = json_of(deletion_token(&srv, &invite).await, 201).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let rid = json_of(ask_deletion(&srv, &token).await, 202).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_routes = [
        (Method::GET, "/v1/retention".to_string()),
        (Method::GET, "/v1/deletion-requests".to_string()),
        (Method::POST, format!("/v1/deletion-requests/{rid}/fulfil")),
        (
            Method::GET,
            format!("/v1/sessions/{id}/transcript?original=true"),
        ),
    ];
    for (method, path) in &admin_routes {
        let url = format!("{}{path}", srv.base);
        for bearer in [
            None,
            Some("adm_wrong"),
            Some(invite.as_str()),
            Some(token.as_str()),
        ] {
            let mut req = srv.http.request(method.clone(), &url);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{method} {path} with {bearer:?}");
        }
    }
    // Nothing was fulfilled by the refused calls.
    let fact = srv.store.deletion_request(&rid).await.unwrap().unwrap();
    assert!(fact.fulfilled_at.is_none());
    assert!(srv.store.get_session(&id).await.unwrap().is_some());
    // The participant's routes want their own token: not the invite's, not a made-up one.
    for wrong in [invite.as_str(), "dtk_madeup", "", "x"] {
        let res = ask_deletion(&srv, wrong).await;
        assert_eq!(
            json_of(res, 404).await["error"]["code"],
            "deletion_token_not_found",
            "{wrong:?}"
        );
    }
    let res = deletion_token(&srv, "nosuchinvite123").await;
    assert_eq!(json_of(res, 404).await["error"]["code"], "invite_not_found");
    let res = srv
        .admin(Method::POST, "/v1/deletion-requests/del_nosuch/fulfil")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(res, 404).await["error"]["code"],
        "deletion_request_not_found"
    );
    // Deleting the session the admin way fulfils its pending request too.
    let res = srv
        .admin(Method::DELETE, &format!("/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let fact = srv.store.deletion_request(&rid).await.unwrap().unwrap();
    assert_eq!(fact.fulfilled_by.as_deref(), Some("admin"));
}
