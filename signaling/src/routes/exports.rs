//! Export routes (the `export` permission, audited): one session's PDF transcript, raw JSON and audio ZIP, and bulk
//! exports of every session matching the filters (state, campaign, creation date range) as
//! CSV, JSON Lines or a ZIP of PDFs. Bulk exports stream page by page from the store; the
//! client reading slowly slows the export, and closing the connection cancels it. A bulk
//! export holds only the sessions of the campaigns the caller may export.

use super::auth::Caller;
use super::extract::path_or_not_found;
use super::state::AppState;
use super::views::export_view;
use crate::access::Permission;
use crate::audit::Outcome;
use crate::error::ApiError;
use crate::exports::zip_stream::{ByteStream, zip_stream};
use crate::exports::{self, CSV_COLUMNS};
use crate::lifecycle::State as LifecycleState;
use crate::store::{ExportFilter, SessionRow};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use earshot_vocab::Format;
use futures_util::StreamExt;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/export.pdf", get(session_pdf))
        .route("/v1/sessions/{id}/export.json", get(session_json))
        .route("/v1/sessions/{id}/audio.zip", get(session_audio))
        .route("/v1/exports/sessions.csv", get(bulk_csv))
        .route("/v1/exports/sessions.jsonl", get(bulk_jsonl))
        .route("/v1/exports/transcripts.zip", get(bulk_pdfs))
}

/// How many sessions a bulk export holds, sent before its body so a client can show
/// progress as the rows (or PDFs) arrive.
const TOTAL_COUNT: &str = "x-total-count";

/// A bulk export's answer: the attachment with its [`TOTAL_COUNT`].
fn bulk_attachment(total: i64, content_type: &str, file_name: &str, body: Body) -> Response {
    let mut r = attachment(content_type, file_name, body);
    r.headers_mut().insert(TOTAL_COUNT, total.into());
    r
}

fn attachment(content_type: &str, file_name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn no_fonts() -> ApiError {
    ApiError::internal("PDF export", "no fonts for PDF transcripts in this server")
}

async fn session_pdf(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Export, "export.pdf")
        .await?;
    caller
        .audit(&app, "export.pdf", &id, Some(&campaign), Outcome::Ok)
        .await;
    let export = app.service.session_export(&id).await?;
    let fonts = app.service.pdf_fonts().cloned().ok_or_else(no_fonts)?;
    // Subsetting fonts and laying out pages is CPU work: off the async workers.
    let pdf = tokio::task::spawn_blocking(move || exports::transcript_pdf(&export).render(&fonts))
        .await
        .map_err(|e| ApiError::internal("PDF export", e))?
        .map_err(|e| ApiError::internal("PDF export", e))?;
    Ok(attachment(
        "application/pdf",
        &format!("{id}-transcript.pdf"),
        Body::from(pdf),
    ))
}

async fn session_json(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Export, "export.json")
        .await?;
    caller
        .audit(&app, "export.json", &id, Some(&campaign), Outcome::Ok)
        .await;
    let export = app.service.session_export(&id).await?;
    let body = export_view(&export, app.service.public_url()).to_string();
    Ok(attachment(
        "application/json",
        &format!("{id}.json"),
        Body::from(body),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioQuery {
    format: Option<String>,
}

async fn session_audio(
    caller: Caller,
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<AudioQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = path_or_not_found(id, "session_not_found")?;
    let campaign = caller
        .audited_session(&app, &id, Permission::Export, "export.audio")
        .await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    caller
        .audit(&app, "export.audio", &id, Some(&campaign), Outcome::Ok)
        .await;
    let format = match q.format.as_deref() {
        None | Some("wav") => Format::Wav,
        Some("mp3") => Format::Mp3,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format must be wav or mp3, got {other:?}"),
            ));
        }
    };
    let files = app.service.recordings_for_zip(&id, format).await?;
    if files.is_empty() {
        return Err(ApiError::not_found(
            "recording_not_found",
            format!("the session has no {format} recordings"),
        ));
    }
    let stream = zip_stream("audio.zip", move |zip| {
        for (name, blob) in files {
            zip.add_stream(&name, blob.body)?;
        }
        Ok(())
    });
    Ok(attachment(
        "application/zip",
        &format!("{id}-audio-{format}.zip"),
        Body::from_stream(stream),
    ))
}

/// The filters of a bulk export. Unknown parameters are refused, as in the session list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkQuery {
    state: Option<String>,
    campaign: Option<String>,
    /// Created at or after: RFC 3339, or a date (`2026-11-30`, its start in UTC).
    from: Option<String>,
    /// Created before: RFC 3339, or a date (through the end of that day, UTC).
    to: Option<String>,
    /// A selection: comma-separated session ids (at most 1000).
    ids: Option<String>,
}

/// Most sessions a selection (`ids=`) may name.
const MAX_SELECTION: usize = 1000;

/// Unix ms of an RFC 3339 time or a `YYYY-MM-DD` date (UTC midnight, plus `days`).
fn parse_time(key: &str, v: &str, days: i64) -> Result<i64, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let invalid = || {
        ApiError::bad_request(
            "invalid_query",
            format!("{key} must be an RFC 3339 time or a YYYY-MM-DD date, got {v:?}"),
        )
    };
    let at = match time::OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let fmt = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
                .map_err(|e| ApiError::internal("date format", e))?;
            let date = time::Date::parse(v, &fmt).map_err(|_| invalid())?;
            date.midnight().assume_utc() + time::Duration::days(days)
        }
    };
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| invalid())
}

impl BulkQuery {
    fn into_filter(self) -> Result<ExportFilter, ApiError> {
        let state = match &self.state {
            None => None,
            Some(s) => Some(s.parse::<LifecycleState>().map_err(|_| {
                let known: Vec<&str> = LifecycleState::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(
                    "invalid_query",
                    format!("state must be one of {}, got {s:?}", known.join(", ")),
                )
            })?),
        };
        let from = self.from.map(|v| parse_time("from", &v, 0)).transpose()?;
        let to = self.to.map(|v| parse_time("to", &v, 1)).transpose()?;
        let ids = match self.ids {
            None => None,
            Some(list) => {
                let ids: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if ids.is_empty() || ids.len() > MAX_SELECTION {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("ids must name 1..={MAX_SELECTION} sessions"),
                    ));
                }
                if let Some(bad) = ids.iter().find(|id| !crate::ids::is_valid_id("ses", id)) {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("ids: {bad:?} is not a session id"),
                    ));
                }
                Some(ids)
            }
        };
        // `sessions.campaign_id` is the campaign filter (every session belongs to one).
        Ok(ExportFilter {
            campaign: self.campaign,
            state,
            from,
            to,
            ids,
            campaigns: None,
        })
    }
}

fn bulk_filter(query: Result<Query<BulkQuery>, QueryRejection>) -> Result<ExportFilter, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    q.into_filter()
}

/// Every matching session, page by page, each page turned into bytes by `encode`; `head`
/// comes first. A store failure ends the stream with an error (a cut download; the log says
/// why).
fn paged(
    app: AppState,
    filter: ExportFilter,
    head: Option<Bytes>,
    encode: impl Fn(&AppState, &[SessionRow]) -> Result<Bytes, ApiError> + Send + Sync + 'static,
) -> ByteStream {
    struct Cursor {
        after: Option<(i64, String)>,
        done: bool,
    }
    let head = futures_util::stream::iter(head.map(Ok));
    let encode = std::sync::Arc::new(encode);
    let pages = futures_util::stream::unfold(
        Cursor {
            after: None,
            done: false,
        },
        move |mut cur| {
            let app = app.clone();
            let filter = filter.clone();
            let encode = encode.clone();
            async move {
                if cur.done {
                    return None;
                }
                let page = match app.service.export_page(&filter, cur.after.take()).await {
                    Ok(p) => p,
                    Err(e) => {
                        cur.done = true;
                        return Some((Err(std::io::Error::other(e.message)), cur));
                    }
                };
                let last = page.last()?;
                cur.after = Some((last.created_at, last.id.clone()));
                cur.done = page.len() < crate::service::exports::EXPORT_PAGE as usize;
                let bytes = encode(&app, &page).map_err(|e| std::io::Error::other(e.message));
                Some((bytes, cur))
            }
        },
    );
    head.chain(pages).boxed()
}

/// Audits a bulk export, naming its filter as the resource.
async fn audit_bulk(caller: &Caller, app: &AppState, action: &str, f: &ExportFilter) {
    let resource = format!(
        "campaign={} state={} from={} to={} ids={}",
        f.campaign.as_deref().unwrap_or("*"),
        f.state.map_or("*", |s| s.as_str()),
        f.from.map_or("*".into(), |v| v.to_string()),
        f.to.map_or("*".into(), |v| v.to_string()),
        f.ids.as_ref().map_or(0, Vec::len),
    );
    caller
        .audit(app, action, &resource, f.campaign.as_deref(), Outcome::Ok)
        .await;
}

fn csv_bytes(rows: impl IntoIterator<Item = [String; 7]>) -> Result<Bytes, ApiError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for r in rows {
        w.write_record(&r)
            .map_err(|e| ApiError::internal("CSV export", e))?;
    }
    let buf = w
        .into_inner()
        .map_err(|e| ApiError::internal("CSV export", e))?;
    Ok(Bytes::from(buf))
}

async fn bulk_csv(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut filter = bulk_filter(query)?;
    filter.campaigns = caller.campaigns_with(Permission::Export);
    audit_bulk(&caller, &app, "export.bulk.csv", &filter).await;
    let total = app.service.export_count(&filter).await?;
    let head = csv_bytes([CSV_COLUMNS.map(String::from)])?;
    let stream = paged(app, filter, Some(head), |app, page| {
        let base = app.service.public_url();
        let now = app.service.clock_now();
        csv_bytes(page.iter().map(|s| exports::csv_row(s, base, now)))
    });
    let body = Body::from_stream(stream);
    Ok(bulk_attachment(
        total,
        "text/csv; charset=utf-8",
        "sessions.csv",
        body,
    ))
}

async fn bulk_jsonl(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut filter = bulk_filter(query)?;
    filter.campaigns = caller.campaigns_with(Permission::Export);
    audit_bulk(&caller, &app, "export.bulk.jsonl", &filter).await;
    let total = app.service.export_count(&filter).await?;
    let stream = paged(app, filter, None, |app, page| {
        let base = app.service.public_url();
        let mut out = Vec::new();
        for s in page {
            let mut v = super::views::public_view(s);
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("links".into(), crate::webhooks::session_links(base, &s.id));
            }
            out.extend_from_slice(v.to_string().as_bytes());
            out.push(b'\n');
        }
        Ok(Bytes::from(out))
    });
    let body = Body::from_stream(stream);
    Ok(bulk_attachment(
        total,
        "application/jsonl",
        "sessions.jsonl",
        body,
    ))
}

async fn bulk_pdfs(
    caller: Caller,
    State(app): State<AppState>,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut filter = bulk_filter(query)?;
    filter.campaigns = caller.campaigns_with(Permission::Export);
    audit_bulk(&caller, &app, "export.bulk.pdfs", &filter).await;
    let total = app.service.export_count(&filter).await?;
    let fonts = app.service.pdf_fonts().cloned().ok_or_else(no_fonts)?;
    let stream = zip_stream("transcripts.zip", move |zip| {
        let io = |e: ApiError| std::io::Error::other(e.message);
        let mut after = None;
        loop {
            let page = zip
                .block_on(app.service.export_page(&filter, after.take()))
                .map_err(io)?;
            for s in &page {
                let export = zip
                    .block_on(app.service.session_export(&s.id))
                    .map_err(io)?;
                let pdf = exports::transcript_pdf(&export)
                    .render(&fonts)
                    .map_err(std::io::Error::other)?;
                zip.add_bytes(&format!("{}.pdf", s.id), &pdf)?;
            }
            match page.last() {
                Some(last) if page.len() == crate::service::exports::EXPORT_PAGE as usize => {
                    after = Some((last.created_at, last.id.clone()));
                }
                _ => return Ok(()),
            }
        }
    });
    let body = Body::from_stream(stream);
    Ok(bulk_attachment(
        total,
        "application/zip",
        "transcripts.zip",
        body,
    ))
}
