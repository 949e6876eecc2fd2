//! A short real interview for the exports and webhooks tests: a built-in-interviewer script
//! of two of the default prompts (a question whose text the test chooses, then the goodbye),
//! taken by a Rust WebRTC participant streaming the test speech until the server ends the
//! session. With `EARSHOT_INTERVIEWER_SILENCE_MS` short it completes in about 15 s.

use super::participant::{Participant, encode};
use super::{ADMIN_TOKEN, Server, audio, fixture};
use earshot_media::codec::OpusSettings;
use serde_json::{Value, json};
use std::time::Duration;

/// Creates the script; returns its id.
pub async fn create_script(server: &Server, question: &str) -> String {
    let r = server
        .admin(server.http.post(server.url("/v1/scripts")))
        .json(&json!({"name": "Short interview", "prompts": [
            {"id": "q1", "text": question, "audio": "default/q1.wav"},
            {"id": "bye", "text": "Thank you, goodbye.", "audio": "default/goodbye.wav"},
        ]}))
        .send()
        .await
        .expect("create script");
    assert_eq!(r.status(), 201, "create script");
    let v: Value = r.json().await.expect("script json");
    v["id"].as_str().expect("script id").to_string()
}

/// Runs one interview of `script` to its end; returns the participant (its session id,
/// invite token) once the session is `completed` with `recordings` recordings (6, or 2 with
/// `[recording] derive = "on_request"`).
pub async fn run(server: &Server, script: &str, recordings: usize) -> Participant {
    let (_, speech) = audio::read_wav(&fixture("participant_speech.wav"));
    let pcm: Vec<i16> = speech
        .iter()
        .cycle()
        .take(60 * 48_000)
        .map(|s| (s * 32767.0) as i16)
        .collect();
    let mut p = Participant::join_invite(
        server.http.clone(),
        &server.base,
        ADMIN_TOKEN,
        json!({"script_id": script}),
        None,
    )
    .await;
    let streamed = p.stream(&encode(&pcm, OpusSettings::default())).await;
    assert!(streamed.ended_by_server, "the interview ended by itself");
    let done = server
        .wait_session(&p.session_id, Duration::from_secs(60), |s| {
            s["state"] == "completed"
                && s["recordings"]
                    .as_array()
                    .is_some_and(|r| r.len() == recordings)
        })
        .await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", server.log());
    p
}
