//! What a campaign does with personal data in its transcripts: keep it, mask it (each
//! finding becomes `[EMAIL]`, `[PHONE]`, `[SSN]`, `[CARD]`, `[IP]` or `[<PATTERN NAME>]`)
//! or redact it (removed); at once or, with `delay_days`, by the retention sweep after that
//! many days (the stored text keeps its original until then). The live stream to monitors
//! and the participant's captions always get the policy at once.

use super::detect::{Detector, Finding};
use serde::{Deserialize, Serialize};

/// Most patterns of one campaign.
pub const MAX_PATTERNS: usize = 20;
/// Longest pattern source (characters).
pub const MAX_PATTERN_LEN: usize = 500;
/// Longest redaction delay (days): ten years.
pub const MAX_DELAY_DAYS: u32 = 3650;

/// The action on findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    #[default]
    Keep,
    Mask,
    Redact,
}

impl PiiAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiAction::Keep => "keep",
            PiiAction::Mask => "mask",
            PiiAction::Redact => "redact",
        }
    }

    pub fn parse(s: &str) -> Option<PiiAction> {
        match s {
            "keep" => Some(PiiAction::Keep),
            "mask" => Some(PiiAction::Mask),
            "redact" => Some(PiiAction::Redact),
            _ => None,
        }
    }
}

/// A campaign's own pattern: `[NAME]` replaces what `regex` matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    pub name: String,
    pub regex: String,
}

/// A campaign's policy on personal data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PiiPolicy {
    pub action: PiiAction,
    /// 0: applied as lines are stored; N: the sweep applies it N days after the session
    /// ended.
    pub delay_days: u32,
    /// Keep the original of a changed line, sealed, for the campaign's owners.
    pub keep_originals: bool,
    pub patterns: Vec<CustomPattern>,
}

/// Why a policy from outside was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("pii_patterns holds at most {MAX_PATTERNS} patterns")]
    TooManyPatterns,
    #[error("pattern name {0:?} must be 1-32 characters A-Z, 0-9 or _ starting with a letter")]
    BadName(String),
    #[error("pattern name {0:?} is used twice")]
    DuplicateName(String),
    #[error("pattern {name:?}: {reason}")]
    BadRegex { name: String, reason: String },
    #[error("pii_delay_days must be at most {MAX_DELAY_DAYS}")]
    DelayTooLong,
}

impl PiiPolicy {
    /// Checks the patterns (names, sources) and the delay.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.detector().map(|_| ())
    }

    /// The detector of this policy's patterns, checked.
    pub fn detector(&self) -> Result<Detector, PolicyError> {
        if self.delay_days > MAX_DELAY_DAYS {
            return Err(PolicyError::DelayTooLong);
        }
        if self.patterns.len() > MAX_PATTERNS {
            return Err(PolicyError::TooManyPatterns);
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let ok = p.name.len() <= 32
                && p.name.starts_with(|c: char| c.is_ascii_uppercase())
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(PolicyError::BadName(p.name.clone()));
            }
            if self.patterns[..i].iter().any(|q| q.name == p.name) {
                return Err(PolicyError::DuplicateName(p.name.clone()));
            }
            let bad = |reason: String| PolicyError::BadRegex {
                name: p.name.clone(),
                reason,
            };
            if p.regex.chars().count() > MAX_PATTERN_LEN {
                return Err(bad(format!("longer than {MAX_PATTERN_LEN} characters")));
            }
            let single = Detector::with_patterns([(p.name.as_str(), p.regex.as_str())])
                .map_err(|e| bad(e.to_string()))?;
            if single.matches_empty() {
                return Err(bad("matches the empty string".into()));
            }
        }
        Detector::with_patterns(
            self.patterns
                .iter()
                .map(|p| (p.name.as_str(), p.regex.as_str())),
        )
        .map_err(|e| PolicyError::BadRegex {
            name: String::new(),
            reason: e.to_string(),
        })
    }

    /// Whether the policy changes text at all.
    pub fn changes_text(&self) -> bool {
        self.action != PiiAction::Keep
    }
}

/// `text` with the findings masked or redacted (unchanged for `Keep`).
pub fn apply(action: PiiAction, text: &str, findings: &[Finding]) -> String {
    if action == PiiAction::Keep || findings.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.start]);
        if action == PiiAction::Mask {
            out.push_str(&f.kind.placeholder());
        }
        at = f.end;
    }
    out.push_str(&text[at..]);
    if action == PiiAction::Redact {
        // Removed spans leave doubled spaces and spaces before punctuation.
        let mut tidy = String::with_capacity(out.len());
        for word in out.split_whitespace() {
            if !tidy.is_empty() && !word.starts_with([',', '.', '!', '?', ';', ':']) {
                tidy.push(' ');
            }
            tidy.push_str(word);
        }
        return tidy;
    }
    out
}

impl Detector {
    /// Masks or redacts what this detector finds in `text`.
    pub fn scrub(&self, action: PiiAction, text: &str) -> String {
        if action == PiiAction::Keep {
            return text.to_string();
        }
        apply(action, text, &self.find(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_redacts() {
        let d = Detector::builtin();
        let text = "mail me at jane@example.com, or call 020 7946 0958.";
        assert_eq!(
            d.scrub(PiiAction::Mask, text),
            "mail me at [EMAIL], or call [PHONE]."
        );
        assert_eq!(d.scrub(PiiAction::Redact, text), "mail me at, or call.");
        assert_eq!(d.scrub(PiiAction::Keep, text), text);
    }

    #[test]
    fn custom_pattern_placeholder() {
        let policy = PiiPolicy {
            action: PiiAction::Mask,
            patterns: vec![CustomPattern {
                name: "EMPLOYEE_ID".into(),
                regex: r"\bE\d{5}\b".into(),
            }],
            ..PiiPolicy::default()
        };
        let d = policy.detector().unwrap();
        assert_eq!(
            d.scrub(PiiAction::Mask, "I am E12345."),
            "I am [EMPLOYEE_ID]."
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let with = |name: &str, regex: &str| PiiPolicy {
            patterns: vec![CustomPattern {
                name: name.into(),
                regex: regex.into(),
            }],
            ..PiiPolicy::default()
        };
        assert!(matches!(
            with("lower", "x").validate(),
            Err(PolicyError::BadName(_))
        ));
        assert!(matches!(
            with("X", "(").validate(),
            Err(PolicyError::BadRegex { .. })
        ));
        assert!(matches!(
            with("X", "a*").validate(),
            Err(PolicyError::BadRegex { .. })
        ));
        assert!(matches!(
            with("X", "(a{1000}){1000}").validate(),
            Err(PolicyError::BadRegex { .. })
        ));
        let long = PiiPolicy {
            delay_days: MAX_DELAY_DAYS + 1,
            ..PiiPolicy::default()
        };
        assert_eq!(long.validate(), Err(PolicyError::DelayTooLong));
    }
}
