//! Finding personal data in one transcript line: e-mail addresses, phone numbers, US social
//! security numbers, payment card numbers, IP addresses and a campaign's own patterns, written
//! or spoken ("john dot smith at example dot com", "five five five ...").
//!
//! Every kind has a candidate regex (the `regex` crate) and a check of the candidate; where
//! candidates overlap, the first kind in [`PiiKind::priority`] order wins, then the longer.
//! The rules for the tricky cases:
//!
//! - Phone: digit groups with spaces, dots, dashes, slashes or parentheses, optionally after
//!   `+`. With `+`: 8-15 digits (E.164). Starting `00`: 10-15. Starting `0` (a national trunk
//!   prefix: UK, DE, FR, IN): 10-12, or 9 when grouped. Otherwise 10 digits (US, India) or
//!   11 starting with `1` (US with its country code). A candidate that starts like a date
//!   with a four-digit year and a valid day and month (`2024-03-15`, `15.03.2024`,
//!   `03/15/2024`; not after `+`), or is followed by `:`, `%` or a
//!   decimal part, is not a phone; neither is one after an order/invoice/version word
//!   ([`NUMBER_WORDS`]) unless written with `+`. Seven-digit local numbers are not detected.
//! - SSN: `AAA-GG-SSSS` or `AAA GG SSSS` with a valid area (not 000, 666, 900-999), group
//!   (not 00) and serial (not 0000); nine plain or spoken digits only within six words after
//!   "social" or "SSN".
//! - Card: 13-19 digits (plain, 4-4-4-4, or Amex 4-6-5 / 4-6-4) starting 2-6 that pass the
//!   Luhn check. Numbers failing Luhn are not cards (order numbers); nor are numbers after
//!   `+` (international phone numbers) or after "IMEI" (`DEVICE_WORDS`: IMEIs pass Luhn).
//! - IPv4: a dotted quad of 0-255 not part of a longer dotted number; after a version word
//!   ("version 1.2.3.4", "build", "release", "firmware", ...) it is a version number, not an
//!   address. IPv6: what [`std::net::Ipv6Addr`] parses, with at least one `::` or 7 colons.
//! - Spoken digits (`zero`/`oh` .. `nine`, `double`, `triple`, `plus`, numerals) are read as
//!   one digit string and checked as phone, SSN or card by the same rules; spoken IPv4 is four
//!   parts of digits joined by "dot" (each 0-255), with the same version-word rule; spoken
//!   e-mails need a spoken or written dot in the domain ending with a common top-level domain;
//!   their local part may end in spoken digits, must not start with a word that is no name
//!   ("worked", "lead"), and a possessive after the domain ("acme dot com's") is a company.

use super::spoken;
use regex::{Regex, RegexBuilder};
use std::net::Ipv6Addr;
use std::sync::LazyLock;

/// A kind of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    Ssn,
    Card,
    Ip,
    /// A campaign's own pattern, by its name.
    Custom(String),
}

impl PiiKind {
    /// The label of the kind: `EMAIL`, `PHONE`, `SSN`, `CARD`, `IP` or the pattern's name.
    pub fn label(&self) -> &str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Ssn => "SSN",
            PiiKind::Card => "CARD",
            PiiKind::Ip => "IP",
            PiiKind::Custom(name) => name,
        }
    }

    /// What a masked finding is replaced with: `[EMAIL]`, `[PHONE]`, ...
    pub fn placeholder(&self) -> String {
        format!("[{}]", self.label())
    }

    /// Which kind wins where candidates overlap (lower first): a campaign's own pattern
    /// first (the owner asked for it), then the kinds with the strictest checks.
    fn priority(&self) -> u8 {
        match self {
            PiiKind::Custom(_) => 0,
            PiiKind::Email => 1,
            PiiKind::Card => 2,
            PiiKind::Ssn => 3,
            PiiKind::Ip => 4,
            PiiKind::Phone => 5,
        }
    }
}

/// One finding: a kind and its byte range in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// Words that make the number after them an identifier of something else, not a phone
/// number (nor an IP address, for the version words).
pub const NUMBER_WORDS: &[&str] = &[
    "order",
    "invoice",
    "reference",
    "ref",
    "ticket",
    "tracking",
    "account",
    "confirmation",
    "booking",
    "case",
    "serial",
    "policy",
    "version",
    "build",
    "release",
    "firmware",
    "patch",
    "update",
    "upgrade",
    "upgraded",
    "model",
    "part",
    "receipt",
    "transaction",
    "isbn",
    "id",
];

/// Words after which a dotted quad is a version number.
const VERSION_WORDS: &[&str] = &[
    "version", "v", "build", "release", "firmware", "patch", "update", "upgrade", "upgraded",
    "updated", "versions", "ios", "android", "chrome", "firefox", "macos", "windows",
];

/// Words after which a Luhn-valid number identifies a device, not a card (IMEIs pass Luhn).
const DEVICE_WORDS: &[&str] = &["imei", "imeisv", "meid"];

/// Words after which nine digits are a social security number.
const SSN_WORDS: &[&str] = &["social", "ssn", "ss"];
/// How many words before nine digits [`SSN_WORDS`] may be (speech has fillers: "social
/// security, let me think, ...").
const SSN_WINDOW: usize = 6;

struct Builtin {
    email: Regex,
    ssn: Regex,
    nine: Regex,
    card: Regex,
    phone: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

static BUILTIN: LazyLock<Builtin> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("built-in PII pattern");
    Builtin {
        email: re(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
        ssn: re(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b"),
        nine: re(r"\b\d{9}\b"),
        card: re(r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{4}|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{13,19})\b"),
        phone: re(
            r"(?:\+ ?)?(?:\(\+?\d{1,5}\)|\d{1,5})(?:(?: ?[-./] ?| )?(?:\(\d{1,5}\)|\d{1,5})){1,7}",
        ),
        ipv4: re(
            r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
        ),
        ipv6: re(r"(?i)[0-9a-f:]*:[0-9a-f:]*:[0-9a-f:.]*"),
    }
});

static DATE_START: LazyLock<Regex> = LazyLock::new(|| {
    let (day, month, year) = (
        r"(?:0?[1-9]|[12]\d|3[01])",
        r"(?:0?[1-9]|1[0-2])",
        r"(?:19|20)\d{2}",
    );
    Regex::new(&format!(
        r"^(?:{year}[-/.]{month}[-/.]{day}|{day}[-/.]{month}[-/.]{year}|{month}[-/.]{day}[-/.]{year})(?:\D|$)"
    ))
    .expect("date pattern")
});

/// The detector of one campaign: the built-in kinds and the campaign's own patterns.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    custom: Vec<(String, Regex)>,
}

/// Largest compiled size of a campaign's pattern (bytes of the regex program).
pub const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

impl Detector {
    /// The built-in kinds only.
    pub fn builtin() -> Detector {
        Detector::default()
    }

    /// The built-in kinds and `patterns` (name, regex source), compiled with a size limit.
    pub fn with_patterns<'a>(
        patterns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Detector, regex::Error> {
        let custom = patterns
            .into_iter()
            .map(|(name, source)| {
                let re = RegexBuilder::new(source)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SIZE_LIMIT)
                    .build()?;
                Ok((name.to_string(), re))
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Detector { custom })
    }

    /// Some custom pattern matches the empty string (it would match everywhere).
    pub fn matches_empty(&self) -> bool {
        self.custom.iter().any(|(_, re)| re.is_match(""))
    }

    /// Every finding in `text`, in order, none overlapping.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let mut all = Vec::new();
        for (name, re) in &self.custom {
            for m in re.find_iter(text).filter(|m| !m.is_empty()) {
                all.push(finding(PiiKind::Custom(name.clone()), m.start(), m.end()));
            }
        }
        let b = &*BUILTIN;
        for m in b.email.find_iter(text) {
            all.push(finding(PiiKind::Email, m.start(), m.end()));
        }
        all.extend(spoken::emails(text));
        for c in b.ssn.captures_iter(text) {
            let whole = c.get(0).expect("whole match");
            if valid_ssn(&c[1], &c[2], &c[3]) && !glued(text, whole.start(), whole.end()) {
                all.push(finding(PiiKind::Ssn, whole.start(), whole.end()));
            }
        }
        for m in b.nine.find_iter(text) {
            let d = m.as_str();
            if preceded_by(text, m.start(), SSN_WORDS, SSN_WINDOW)
                && valid_ssn(&d[..3], &d[3..5], &d[5..])
            {
                all.push(finding(PiiKind::Ssn, m.start(), m.end()));
            }
        }
        for m in b.card.find_iter(text) {
            if is_card_at(text, m.start(), &digits(m.as_str())) && !glued(text, m.start(), m.end())
            {
                all.push(finding(PiiKind::Card, m.start(), m.end()));
            }
        }
        for m in b.ipv4.find_iter(text) {
            if !dotted_neighbour(text, m.start(), m.end())
                && !preceded_by(text, m.start(), VERSION_WORDS, 3)
            {
                all.push(finding(PiiKind::Ip, m.start(), m.end()));
            }
        }
        for (start, end) in spoken::ipv4s(text) {
            if !preceded_by(text, start, VERSION_WORDS, 3) {
                all.push(finding(PiiKind::Ip, start, end));
            }
        }
        for m in b.ipv6.find_iter(text) {
            if let Some(end) = ipv6_end(text, m.start(), m.end()) {
                all.push(finding(PiiKind::Ip, m.start(), end));
            }
        }
        for m in b.phone.find_iter(text) {
            if let Some(end) = phone_end(text, m.start(), m.end()) {
                all.push(finding(PiiKind::Phone, m.start(), end));
            }
        }
        for run in spoken::digit_runs(text) {
            if let Some(kind) = classify_spoken(text, run.start, &run.digits, run.plus) {
                all.push(finding(kind, run.start, run.end));
            }
        }
        resolve(all)
    }
}

fn finding(kind: PiiKind, start: usize, end: usize) -> Finding {
    Finding { kind, start, end }
}

/// Keeps the winners among overlapping findings (priority, then length), in text order.
fn resolve(mut all: Vec<Finding>) -> Vec<Finding> {
    all.sort_by_key(|f| {
        (
            f.kind.priority(),
            std::cmp::Reverse(f.end - f.start),
            f.start,
        )
    });
    let mut kept: Vec<Finding> = Vec::new();
    for f in all {
        if kept.iter().all(|k| f.end <= k.start || f.start >= k.end) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// The ASCII digits of `s`.
pub(super) fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The Luhn checksum holds.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

fn is_card(d: &str) -> bool {
    (13..=19).contains(&d.len()) && matches!(d.as_bytes()[0], b'2'..=b'6') && luhn(d)
}

/// The digits `d` said or written at `start` are a card number: [`is_card`], and not after
/// a device word ([`DEVICE_WORDS`]).
fn is_card_at(text: &str, start: usize, d: &str) -> bool {
    is_card(d) && !preceded_by(text, start, DEVICE_WORDS, 3)
}

fn valid_ssn(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// The match touches more digits or a decimal part (`12.5`, `1,299`) on either side, or
/// follows a currency sign, `#`, or `+` (then it is an international phone number).
fn glued(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let mut after = text[end..].chars();
    let (a1, a2) = (after.next(), after.next());
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    digit(before)
        || digit(a1)
        || (matches!(a1, Some('.' | ',' | ':')) && digit(a2))
        || matches!(a1, Some('%'))
        || matches!(before, Some('$' | '€' | '£' | '#' | '+'))
        || (matches!(before, Some('.' | ',' | ':')) && digit(text[..start].chars().rev().nth(1)))
}

/// The dotted quad is part of a longer dotted number (`1.2.3.4.5`) or a word (`v1.2.3.4`).
fn dotted_neighbour(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let mut after = text[end..].chars();
    let (a1, a2) = (after.next(), after.next());
    before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-')
        || (a1 == Some('.') && a2.is_some_and(|c| c.is_ascii_digit()))
        || a1.is_some_and(|c| c.is_alphanumeric())
}

/// One of `words` is among the `n` words before `at` (lowercase, punctuation stripped).
pub(super) fn preceded_by(text: &str, at: usize, words: &[&str], n: usize) -> bool {
    text[..at]
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .rev()
        .take(n)
        .any(|w| words.contains(&w.to_lowercase().as_str()))
}

/// Where an IPv6 candidate at `start..end` ends, if it is an address.
fn ipv6_end(text: &str, start: usize, end: usize) -> Option<usize> {
    if text[..start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric())
    {
        return None;
    }
    let mut s = &text[start..end];
    // A sentence's full stop or a list's colon after the address.
    while s.ends_with('.') || (s.ends_with(':') && !s.ends_with("::")) {
        s = &s[..s.len() - 1];
    }
    let colons = s.matches(':').count();
    let hex = s.chars().filter(char::is_ascii_hexdigit).count();
    if (s.contains("::") || colons == 7) && hex >= 1 && s.parse::<Ipv6Addr>().is_ok() {
        Some(start + s.len())
    } else {
        None
    }
}

/// Where a phone candidate at `start..end` ends, if it is a phone number: the candidate or
/// the longest front of it (whole groups) that passes.
fn phone_end(text: &str, start: usize, end: usize) -> Option<usize> {
    let before = text[..start].chars().next_back();
    if before.is_some_and(|c| c.is_alphanumeric() || "$€£#.,:-/_".contains(c)) {
        return None;
    }
    let cand = &text[start..end];
    let plus = cand.starts_with('+');
    if !plus && DATE_START.is_match(cand) {
        return None;
    }
    if !plus && preceded_by(text, start, NUMBER_WORDS, 3) {
        return None;
    }
    // Cut after each group, longest first.
    let mut cuts: Vec<usize> = cand
        .char_indices()
        .filter(|&(i, c)| {
            (c.is_ascii_digit() || c == ')')
                && !cand[i + 1..].starts_with(|n: char| n.is_ascii_digit() || n == ')')
        })
        .map(|(i, _)| i + 1)
        .collect();
    cuts.reverse();
    for cut in cuts {
        let part = &cand[..cut];
        if glued(text, start, start + cut) && !part.starts_with('+') && !part.starts_with('(') {
            continue;
        }
        if followed_badly(&text[start + cut..]) {
            continue;
        }
        let grouped = part.contains(|c: char| !c.is_ascii_digit());
        if !phone_groups(part) {
            continue;
        }
        if phone_digits(&digits(part), plus, grouped) {
            return Some(start + cut);
        }
    }
    None
}

/// Grouping that phone numbers have and lists of numbers or version numbers do not: at
/// most one single-digit group (a country code, a trunk prefix), and dotted numbers with
/// no single-digit group but the first (`555.123.4567`, `06.12.34.56.78`, not `120.0.6099.1`).
fn phone_groups(part: &str) -> bool {
    // The `(0)` of `+44 (0)20 ...` is a trunk prefix shown for national callers, not a group.
    let part = part.replace("(0)", " ");
    let groups: Vec<&str> = part
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let singles = groups.iter().filter(|g| g.len() == 1).count();
    let dotted = part.contains('.');
    singles <= 1 && !(dotted && groups.iter().skip(1).any(|g| g.len() == 1))
}

/// A time, percentage or decimal part follows.
fn followed_badly(rest: &str) -> bool {
    let mut it = rest.chars();
    let (a1, a2) = (it.next(), it.next());
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    digit(a1)
        || a1 == Some('%')
        || (matches!(a1, Some(':' | ',' | '.')) && digit(a2))
        || a1.is_some_and(char::is_alphabetic)
}

/// The digit-count rules of a phone number (see the module's documentation).
fn phone_digits(d: &str, plus: bool, grouped: bool) -> bool {
    let n = d.len();
    if plus {
        return (8..=15).contains(&n);
    }
    if d.starts_with("00") {
        return (10..=15).contains(&n);
    }
    if d.starts_with('0') {
        return (10..=12).contains(&n) || (n == 9 && grouped);
    }
    n == 10 || (n == 11 && d.starts_with('1'))
}

/// The kind of a spoken digit string starting at `start`, if any.
fn classify_spoken(text: &str, start: usize, d: &str, plus: bool) -> Option<PiiKind> {
    if plus {
        return (8..=15).contains(&d.len()).then_some(PiiKind::Phone);
    }
    if d.len() == 9 && preceded_by(text, start, SSN_WORDS, SSN_WINDOW) {
        return valid_ssn(&d[..3], &d[3..5], &d[5..]).then_some(PiiKind::Ssn);
    }
    if is_card_at(text, start, d) {
        return Some(PiiKind::Card);
    }
    if preceded_by(text, start, NUMBER_WORDS, 3) {
        return None;
    }
    phone_digits(d, false, true).then_some(PiiKind::Phone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, &str)> {
        Detector::builtin()
            .find(text)
            .into_iter()
            .map(|f| (f.kind.label().to_string(), &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn luhn_checks() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(luhn("378282246310005"));
    }

    #[test]
    fn written_kinds() {
        assert_eq!(
            kinds("mail jane.doe@example.org or call (555) 123-4567"),
            vec![
                ("EMAIL".into(), "jane.doe@example.org"),
                ("PHONE".into(), "(555) 123-4567")
            ]
        );
        assert_eq!(
            kinds("my SSN is 123-45-6789."),
            vec![("SSN".into(), "123-45-6789")]
        );
        assert_eq!(
            kinds("call +33 (0)1 23 45 67 89 for Paris"),
            vec![("PHONE".into(), "+33 (0)1 23 45 67 89")]
        );
        assert_eq!(
            kinds("card 4111 1111 1111 1111 expires"),
            vec![("CARD".into(), "4111 1111 1111 1111")]
        );
        // Thirteen digits passing Luhn, but written with `+`: a phone number.
        assert_eq!(
            kinds("or just +4915112345678."),
            vec![("PHONE".into(), "+4915112345678")]
        );
        assert_eq!(
            kinds("server 10.0.0.12 and fe80::1ff:fe23:4567:890a."),
            vec![
                ("IP".into(), "10.0.0.12"),
                ("IP".into(), "fe80::1ff:fe23:4567:890a")
            ]
        );
    }

    #[test]
    fn tricky_negatives() {
        for text in [
            "we moved to version 1.2.3.4 last week",
            "on 2024-03-15 at 14:30",
            "it cost $1,299.99 in 2019",
            "order number 4532 7791 2210 4488",
            "growth was 12.5% in 2023",
            "the meeting is at 10:30:45",
            "invalid SSN 000-12-3456",
            "the phone's IMEI was 356938035643809",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn spoken_forms() {
        assert_eq!(
            kinds("it's john dot smith at example dot com thanks"),
            vec![("EMAIL".into(), "john dot smith at example dot com")]
        );
        assert_eq!(
            kinds("call five five five one two three four five six seven please"),
            vec![(
                "PHONE".into(),
                "five five five one two three four five six seven"
            )]
        );
    }

    #[test]
    fn custom_patterns_win() {
        let d = Detector::with_patterns([("EMPLOYEE_ID", r"EMP-\d{6}")]).unwrap();
        let found = d.find("badge EMP-123456 ok");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind.label(), "EMPLOYEE_ID");
    }
}
