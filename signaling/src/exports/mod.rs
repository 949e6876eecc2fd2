//! Exports (F9): what a session's exports hold and how they are written. `pdf` draws the
//! transcript; `zip_stream` writes archives as streams; this module composes a session into
//! the PDF's header and turns, computes the per-session analytics of the JSON export, and
//! writes the bulk CSV's rows (RFC 4180, safe from spreadsheet formulas).

pub mod pdf;
pub mod zip_stream;

use crate::lifecycle::Millis;
use crate::service::exports::SessionExport;
use crate::store::SessionRow;
use crate::timestamps::rfc3339;
use crate::turns::Turn;
use earshot_vocab::Role;
use pdf::{PdfTurn, TranscriptPdf};
use serde_json::{Value, json};

/// The bulk CSV's columns, in order.
pub const CSV_COLUMNS: [&str; 7] = [
    "session_id",
    "campaign",
    "started_at",
    "completed_at",
    "duration",
    "status",
    "transcript_url",
];

/// How a speaker is named in transcripts.
pub fn speaker(role: Role) -> &'static str {
    match role {
        Role::Ai => "Interviewer",
        Role::Participant => "Participant",
    }
}

fn time_text(ms: Option<i64>) -> String {
    ms.map(rfc3339)
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// `1h 02m 03s`, `2m 03s`, `3s`.
pub fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The PDF transcript of a session: its metadata header and every turn in order.
pub fn transcript_pdf(e: &SessionExport) -> TranscriptPdf {
    let s = &e.detail.session;
    let named = |name: &Option<String>, id: &str| match name {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    };
    let mut header = vec![
        ("Session".to_string(), s.id.clone()),
        ("Campaign".into(), named(&e.campaign_name, &s.campaign_id)),
        ("Script".into(), named(&e.script_name, &s.script_id)),
        ("State".into(), s.state.as_str().to_string()),
        ("Created".into(), time_text(Some(s.created_at))),
        ("Started".into(), time_text(s.started_at)),
        ("Ended".into(), time_text(s.ended_at)),
        (
            "Duration".into(),
            duration_text(e.detail.lifecycle.active_duration_ms(e.detail.as_of)),
        ),
    ];
    if let Some(r) = &s.end_reason {
        header.push(("End reason".into(), r.clone()));
    }
    TranscriptPdf {
        title: "Interview transcript".into(),
        header,
        turns: e
            .turns
            .iter()
            .map(|t| PdfTurn {
                at_ms: t.start_ms,
                speaker: speaker(t.role).into(),
                text: t.text.clone(),
            })
            .collect(),
    }
}

/// Per-session analytics from the turn log: turns, words, response times, sentiment.
pub fn analytics(turns: &[Turn], active_duration_ms: i64) -> Value {
    let of = |role: Role| turns.iter().filter(move |t| t.role == role);
    let words = |role: Role| of(role).map(|t| u64::from(t.words)).sum::<u64>();
    let responses: Vec<i64> = of(Role::Participant)
        .filter_map(|t| t.response_ms)
        .collect();
    let sentiments: Vec<f64> = of(Role::Participant).filter_map(|t| t.sentiment).collect();
    let mean_i = |v: &[i64]| (!v.is_empty()).then(|| v.iter().sum::<i64>() / v.len() as i64);
    let mean_f = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    json!({
        "active_duration_ms": active_duration_ms,
        "turn_count": turns.len(),
        "ai_turns": of(Role::Ai).count(),
        "participant_turns": of(Role::Participant).count(),
        "word_count": words(Role::Ai) + words(Role::Participant),
        "participant_words": words(Role::Participant),
        "mean_response_ms": mean_i(&responses),
        "mean_sentiment": mean_f(&sentiments),
    })
}

/// A cell a spreadsheet will not run as a formula: one starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return gets a leading `'` (OWASP's advice for CSV injection).
pub fn formula_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// One session's bulk CSV row (see [`CSV_COLUMNS`]), formula-safe; `base` is the public URL,
/// `now` the end of the duration of a session that has not ended. The duration is the active
/// time (pauses excluded) in whole seconds.
pub fn csv_row(s: &SessionRow, base: &str, now: Millis) -> [String; 7] {
    let until = s.ended_at.map_or(now, Millis);
    let duration = s
        .lifecycle()
        .ok()
        .map(|lc| (lc.active_duration_ms(until) / 1000).to_string())
        .unwrap_or_default();
    [
        s.id.clone(),
        s.campaign_id.clone(),
        time_text(s.started_at),
        time_text(s.ended_at),
        duration,
        s.state.as_str().to_string(),
        format!("{base}/v1/sessions/{}/export.pdf", s.id),
    ]
    .map(|c| formula_safe(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(formula_safe(bad), format!("'{bad}"));
        }
        assert_eq!(formula_safe("ses_1"), "ses_1");
        assert_eq!(formula_safe(""), "");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(3_400), "3s");
        assert_eq!(duration_text(123_000), "2m 03s");
        assert_eq!(duration_text(3_723_000), "1h 02m 03s");
    }
}
