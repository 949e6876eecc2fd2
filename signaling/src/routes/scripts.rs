//! Admin routes for scripts (F5): what the interviewer does in the sessions of an invite —
//! the built-in interviewer's prompts, or an external AI agent dialed over WebSocket — and
//! how those sessions are recorded.

use super::auth::{Admin, Caller};
use super::extract::{body_rejection, path_or_not_found};
use super::state::AppState;
use crate::access::Permission;
use crate::error::ApiError;
use crate::media_port::PromptSpec;
use crate::prompt_dirs::PromptDirs;
use crate::script_definition::{AgentDefinition, ScriptDefinition};
use crate::service::SessionService;
use crate::service::scripts::NewScript;
use crate::store::{ScriptRow, parse_json};
use crate::timestamps::rfc3339;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use earshot_vocab::{AgentAudioFormat, Quality};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/scripts", post(create_script))
        .route("/v1/scripts/{id}", get(get_script).put(replace_script))
        .route("/v1/prompts/{name}", axum::routing::put(upload_prompt))
}

/// Longest script name (characters).
pub const MAX_NAME_CHARS: usize = 200;
/// Most prompts in one script.
pub const MAX_PROMPTS: usize = 200;
/// Longest prompt text (characters).
pub const MAX_PROMPT_TEXT_CHARS: usize = 10_000;
/// Longest agent URL (bytes).
pub const MAX_URL_BYTES: usize = 2048;
/// URL schemes an agent may be dialed with.
pub const AGENT_SCHEMES: [&str; 1] = ["ws"];

/// `POST /v1/scripts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateScript {
    pub name: String,
    pub campaign_id: Option<String>,
    pub prompts: Option<Vec<PromptBody>>,
    pub agent: Option<AgentBody>,
    pub recording: Option<RecordingBody>,
    /// Encoder settings of the AI audio, over the deployment's `[opus]`.
    pub codec: Option<crate::media_port::CodecSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    pub id: String,
    pub text: String,
    /// A WAV or FLAC file, named relative to the prompts directory (see [`PromptDirs`]).
    pub audio: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    pub url: String,
    pub audio_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingBody {
    pub enabled: Option<bool>,
    pub noise_suppression: Option<bool>,
    pub quality: Option<String>,
}

/// Recording settings a script gets when its body leaves them out.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingDefaults {
    pub enabled: bool,
    pub noise_suppression: bool,
    pub quality: Quality,
}

impl Default for RecordingDefaults {
    fn default() -> Self {
        RecordingDefaults {
            enabled: true,
            noise_suppression: true,
            quality: Quality::High,
        }
    }
}

/// `a, b, c`: the accepted spellings in an error message.
fn spellings<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_script", message)
}

/// Parses a request body: malformed JSON is `invalid_json`, JSON of the wrong shape is
/// `invalid_script`.
pub fn parse_body(body: &[u8]) -> Result<CreateScript, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "a script needs a body: {\"name\", \"prompts\" or \"agent\"}",
        ));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid(e.to_string()),
        _ => ApiError::bad_request("invalid_json", e.to_string()),
    })
}

/// Checks a script and turns it into its stored form (prompt audio names resolved in the
/// prompts directories to absolute paths). Everything but the campaign's existence is
/// checked here.
pub async fn validate(
    req: CreateScript,
    defaults: &RecordingDefaults,
    prompt_dirs: &PromptDirs,
) -> Result<(String, ScriptDefinition, RecordingDefaults), ApiError> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err(invalid("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name must not contain control characters"));
    }
    let definition = match (req.prompts, req.agent) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(invalid(
                "give exactly one of \"prompts\" (built-in interviewer) or \"agent\"",
            ));
        }
        (Some(prompts), None) => ScriptDefinition {
            prompts: validate_prompts(prompts, prompt_dirs).await?,
            ..ScriptDefinition::default()
        },
        (None, Some(agent)) => ScriptDefinition {
            agent: Some(validate_agent(agent)?),
            ..ScriptDefinition::default()
        },
    };
    let codec = req.codec.unwrap_or_default();
    codec.validate().map_err(invalid)?;
    let definition = ScriptDefinition {
        codec,
        ..definition
    };
    let rec = req.recording.unwrap_or_default();
    let quality = match rec.quality {
        None => defaults.quality,
        Some(q) => q.parse::<Quality>().map_err(|_| {
            invalid(format!(
                "recording.quality must be one of {}, got {q:?}",
                spellings(Quality::ALL.iter().map(|q| q.as_str()))
            ))
        })?,
    };
    let recording = RecordingDefaults {
        enabled: rec.enabled.unwrap_or(defaults.enabled),
        noise_suppression: rec.noise_suppression.unwrap_or(defaults.noise_suppression),
        quality,
    };
    Ok((name.to_string(), definition, recording))
}

fn validate_agent(agent: AgentBody) -> Result<AgentDefinition, ApiError> {
    if agent.url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "agent.url must be at most {MAX_URL_BYTES} bytes"
        )));
    }
    let url = url::Url::parse(agent.url.trim())
        .map_err(|e| invalid(format!("agent.url is not a valid URL: {e}")))?;
    if !AGENT_SCHEMES.contains(&url.scheme()) {
        return Err(invalid(format!(
            "agent.url must be a {} URL, got scheme {:?}",
            AGENT_SCHEMES.map(|s| format!("{s}://")).join(" or "),
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("agent.url has no host"));
    }
    let audio_format = match agent.audio_format {
        None => AgentAudioFormat::default(),
        Some(f) => f.parse::<AgentAudioFormat>().map_err(|_| {
            invalid(format!(
                "agent.audio_format must be one of {}, got {f:?}",
                spellings(AgentAudioFormat::ALL.iter().map(|f| f.as_str()))
            ))
        })?,
    };
    Ok(AgentDefinition {
        url: url.to_string(),
        audio_format,
    })
}

fn valid_prompt_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn validate_prompts(
    prompts: Vec<PromptBody>,
    prompt_dirs: &PromptDirs,
) -> Result<Vec<PromptSpec>, ApiError> {
    if prompts.is_empty() {
        return Err(invalid("prompts must not be empty"));
    }
    if prompts.len() > MAX_PROMPTS {
        return Err(invalid(format!("at most {MAX_PROMPTS} prompts")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.into_iter().enumerate() {
        if !valid_prompt_id(&p.id) {
            return Err(invalid(format!(
                "prompts[{i}].id must be 1-64 letters, digits, '_' or '-'"
            )));
        }
        if !seen.insert(p.id.clone()) {
            return Err(invalid(format!("prompts[{i}].id {:?} is used twice", p.id)));
        }
        let text = p.text.trim();
        if text.is_empty() || text.chars().count() > MAX_PROMPT_TEXT_CHARS {
            return Err(invalid(format!(
                "prompts[{i}].text must be 1-{MAX_PROMPT_TEXT_CHARS} characters"
            )));
        }
        // The message names the given name only, never where it was looked for.
        let audio = prompt_dirs
            .resolve(&p.audio)
            .await
            .map_err(|e| invalid(format!("prompts[{i}].audio {:?} {e}", p.audio)))?;
        out.push(PromptSpec {
            id: p.id,
            text: text.to_string(),
            audio,
        });
    }
    Ok(out)
}

/// The recording settings of the default script: the operator's `[recording]` config.
async fn recording_defaults(
    service: &SessionService,
    default_script_id: &str,
) -> RecordingDefaults {
    match service.script(default_script_id).await {
        Ok(s) => RecordingDefaults {
            enabled: s.recording_enabled,
            noise_suppression: s.noise_suppression,
            quality: s.quality,
        },
        _ => RecordingDefaults::default(),
    }
}

/// A script as the API shows it.
pub fn script_view(s: &ScriptRow) -> Result<Value, ApiError> {
    let def: ScriptDefinition = parse_json("scripts.definition", &s.definition)?;
    let mut view = json!({
        "id": s.id,
        "campaign_id": s.campaign_id,
        "name": s.name,
        "recording": {
            "enabled": s.recording_enabled,
            "noise_suppression": s.noise_suppression,
            "quality": s.quality,
        },
        "created_at": rfc3339(s.created_at),
    });
    if let Value::Object(m) = &mut view {
        match def.agent {
            Some(agent) => {
                m.insert("kind".into(), json!("agent"));
                m.insert("agent".into(), json!(agent));
            }
            None => {
                m.insert("kind".into(), json!("prompts"));
                m.insert("prompts".into(), json!(def.prompts));
            }
        }
        if !def.codec.is_default() {
            m.insert("codec".into(), json!(def.codec));
        }
    }
    Ok(view)
}

/// A request body checked into the script it describes; `campaign_id` left out is
/// `fallback_campaign`. An unknown campaign is reported before what is wrong with the script.
async fn checked_script(
    app: &AppState,
    body: Result<Bytes, BytesRejection>,
    fallback_campaign: &str,
) -> Result<NewScript, ApiError> {
    let body = body.map_err(body_rejection)?;
    let req = parse_body(&body)?;
    let campaign_id = req
        .campaign_id
        .clone()
        .unwrap_or_else(|| fallback_campaign.to_string());
    app.service.campaign(&campaign_id).await?;
    let defaults = recording_defaults(&app.service, &app.default_script_id).await;
    let (name, definition, recording) = validate(req, &defaults, &app.prompt_dirs).await?;
    Ok(NewScript {
        campaign_id,
        name,
        definition,
        recording_enabled: recording.enabled,
        noise_suppression: recording.noise_suppression,
        quality: recording.quality,
    })
}

async fn create_script(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let new = checked_script(&app, body, &app.default_campaign_id).await?;
    caller.may_in(Permission::Edit, &new.campaign_id)?;
    let row = app.service.create_script(new).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/scripts/{}", row.id))],
        axum::Json(script_view(&row)?),
    ))
}

/// `PUT /v1/scripts/{id}`: the script replaced by the body (the same shape as a new one; it
/// stays in its campaign). Sessions that start from then on use it.
async fn replace_script(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "script_not_found")?;
    let old = app.service.script(&id).await?;
    caller.may_in(Permission::Edit, &old.campaign_id)?;
    let new = checked_script(&app, body, &old.campaign_id).await?;
    if new.campaign_id != old.campaign_id {
        return Err(invalid(
            "a script stays in its campaign: campaign_id cannot change",
        ));
    }
    let row = app.service.replace_script(&id, new).await?;
    Ok(axum::Json(script_view(&row)?))
}

/// `PUT /v1/prompts/{name}`: prompt audio uploaded (the body, a WAV or FLAC file) ->
/// `201 {"audio": "uploads/<name>"}`, the name a script's prompt gives as `audio`.
async fn upload_prompt(
    _: Admin,
    State(app): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    use crate::prompt_dirs::UploadError;
    let name = path_or_not_found(name, "route_not_found")?;
    let body = body.map_err(body_rejection)?;
    match app.prompt_dirs.store_upload(&name, &body).await {
        Ok(audio) => Ok((StatusCode::CREATED, axum::Json(json!({"audio": audio})))),
        Err(e @ (UploadError::Name | UploadError::Content)) => {
            Err(ApiError::bad_request("invalid_audio", e.to_string()))
        }
        Err(e) => Err(ApiError::internal("storing prompt audio", e)),
    }
}

async fn get_script(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = path_or_not_found(id, "script_not_found")?;
    let row = app.service.script(&id).await?;
    caller.may_in(Permission::View, &row.campaign_id)?;
    Ok(axum::Json(script_view(&row)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(body: &str) -> Result<(String, ScriptDefinition, RecordingDefaults), ApiError> {
        check_in(body, &PromptDirs::default()).await
    }

    async fn check_in(
        body: &str,
        dirs: &PromptDirs,
    ) -> Result<(String, ScriptDefinition, RecordingDefaults), ApiError> {
        let req = parse_body(body.as_bytes())?;
        validate(req, &RecordingDefaults::default(), dirs).await
    }

    async fn code(body: &str) -> &'static str {
        match check(body).await {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[tokio::test]
    async fn codec_settings_are_checked_and_kept() {
        let (_, def, _) = check(
            r#"{"name":"b","agent":{"url":"ws://127.0.0.1:9000"},
                "codec":{"bitrate":64000,"complexity":10,"fec":false}}"#,
        )
        .await
        .unwrap();
        assert_eq!(def.codec.bitrate, Some(64_000));
        assert_eq!(def.codec.complexity, Some(10));
        assert_eq!(def.codec.fec, Some(false));
        assert_eq!(def.codec.dtx, None);
        for bad in [
            r#"{"bitrate":5}"#,
            r#"{"complexity":11}"#,
            r#"{"expected_loss_pct":101}"#,
            r#"{"bitrate":"fast"}"#,
            r#"{"ptime":40}"#,
        ] {
            let body =
                format!(r#"{{"name":"b","agent":{{"url":"ws://127.0.0.1:9000"}},"codec":{bad}}}"#);
            assert_eq!(code(&body).await, "invalid_script", "{bad}");
        }
        let err = check(r#"{"name":"b","agent":{"url":"ws://h"},"codec":{"bitrate":5}}"#)
            .await
            .unwrap_err();
        assert!(err.message.contains("codec.bitrate"), "{}", err.message);
    }

    #[tokio::test]
    async fn an_agent_script_is_accepted_with_defaults() {
        let (name, def, rec) =
            check(r#"{"name":" Bot ","agent":{"url":"ws://bot.example/ws?x=1"}}"#)
                .await
                .unwrap();
        assert_eq!(name, "Bot");
        let agent = def.agent.unwrap();
        assert_eq!(agent.url, "ws://bot.example/ws?x=1");
        assert_eq!(agent.audio_format, AgentAudioFormat::L16k16);
        assert!(def.prompts.is_empty());
        assert_eq!(rec, RecordingDefaults::default());
        let (_, def, rec) = check(
            r#"{"name":"b","agent":{"url":"ws://127.0.0.1:9000","audio_format":"mulaw/8000"},
                "recording":{"enabled":false,"quality":"ultra"}}"#,
        )
        .await
        .unwrap();
        assert_eq!(def.agent.unwrap().audio_format, AgentAudioFormat::Mulaw8k);
        assert!(!rec.enabled);
        assert!(rec.noise_suppression);
        assert_eq!(rec.quality, Quality::Ultra);
    }

    #[tokio::test]
    async fn a_prompt_script_needs_files_in_the_prompts_directory() {
        let dir = tempfile::tempdir().unwrap();
        let prompts = dir.path().join("prompts");
        std::fs::create_dir_all(prompts.join("sub")).unwrap();
        std::fs::write(prompts.join("q1.wav"), b"RIFF").unwrap();
        std::fs::write(dir.path().join("outside.wav"), b"RIFF").unwrap();
        let dirs = PromptDirs::new([prompts.clone()]);
        let code = |body: Value| {
            let dirs = dirs.clone();
            async move {
                match check_in(&body.to_string(), &dirs).await {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("{}: {}", e.code, e.message),
                }
            }
        };
        let body = json!({"name":"s","prompts":[{"id":"q1","text":"Hello?","audio": "q1.wav"}]});
        let (_, def, _) = check_in(&body.to_string(), &dirs).await.unwrap();
        assert_eq!(def.prompts.len(), 1);
        assert_eq!(
            def.prompts[0].audio,
            std::fs::canonicalize(prompts.join("q1.wav")).unwrap()
        );
        let outside = dir.path().join("outside.wav");
        for audio in [
            "nope.wav",
            "sub",
            "/etc/shadow",
            "../outside.wav",
            outside.to_str().unwrap(),
            "",
        ] {
            let body = json!({"name":"s","prompts":[{"id":"q1","text":"Hi","audio": audio}]});
            let got = code(body).await;
            assert!(
                got.starts_with("invalid_script: prompts[0].audio"),
                "{audio}: {got}"
            );
            let root = dir.path().to_str().unwrap();
            assert!(
                !got.contains(root) || audio.contains(root),
                "{got} names a server path"
            );
        }
        let twice = json!({"name":"s","prompts":[
            {"id":"q1","text":"Hi","audio": "q1.wav"},{"id":"q1","text":"Again","audio": "q1.wav"}]});
        assert!(code(twice).await.starts_with("invalid_script"));
        let bad_id = json!({"name":"s","prompts":[{"id":"../x","text":"Hi","audio": "q1.wav"}]});
        assert!(code(bad_id).await.starts_with("invalid_script"));
    }

    #[tokio::test]
    async fn bad_scripts_get_stable_codes() {
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let cases = [
            ("", "invalid_script"),
            ("{", "invalid_json"),
            (r#"{"name":"#, "invalid_json"),
            ("[]", "invalid_script"),
            (r#"{"agent":{"url":"ws://a"}}"#, "invalid_script"),
            (r#"{"name":"","agent":{"url":"ws://a"}}"#, "invalid_script"),
            (
                r#"{"name":"   ","agent":{"url":"ws://a"}}"#,
                "invalid_script",
            ),
            (
                r#"{"name":"a\u0007b","agent":{"url":"ws://a"}}"#,
                "invalid_script",
            ),
            (r#"{"name":"s"}"#, "invalid_script"),
            (
                r#"{"name":"s","agent":{"url":"ws://a"},"prompts":[]}"#,
                "invalid_script",
            ),
            (r#"{"name":"s","prompts":[]}"#, "invalid_script"),
            (
                r#"{"name":"s","agent":{"url":"http://a"}}"#,
                "invalid_script",
            ),
            (
                r#"{"name":"s","agent":{"url":"not a url"}}"#,
                "invalid_script",
            ),
            (r#"{"name":"s","agent":{"url":"ws://"}}"#, "invalid_script"),
            (
                r#"{"name":"s","agent":{"url":"ws://a","audio_format":"opus/48000"}}"#,
                "invalid_script",
            ),
            (
                r#"{"name":"s","agent":{"url":"ws://a","extra":1}}"#,
                "invalid_script",
            ),
            (
                r#"{"name":"s","agent":{"url":"ws://a"},"recording":{"quality":"max"}}"#,
                "invalid_script",
            ),
            (r#"{"name":7,"agent":{"url":"ws://a"}}"#, "invalid_script"),
            (
                r#"{"name":"s","agent":{"url":"ws://a"},"color":"red"}"#,
                "invalid_script",
            ),
            (r#"{"name":"s","agent":{"url":"ws://a"}}"#, "ok"),
        ];
        for (body, want) in cases {
            assert_eq!(code(body).await, want, "{body}");
        }
        for scheme in AGENT_SCHEMES {
            let body = json!({"name": "s", "agent": {"url": format!("{scheme}://a:9000/x")}});
            assert_eq!(code(&body.to_string()).await, "ok", "{scheme}");
        }
        let body = json!({"name": long, "agent": {"url": "ws://a"}});
        assert_eq!(code(&body.to_string()).await, "invalid_script");
        let url = format!("ws://a/{}", "p".repeat(MAX_URL_BYTES));
        let body = json!({"name": "s", "agent": {"url": url}});
        assert_eq!(code(&body.to_string()).await, "invalid_script");
    }
}
