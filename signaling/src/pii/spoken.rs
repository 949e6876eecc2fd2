//! Spoken forms in transcripts: e-mail addresses said aloud ("john dot smith at example dot
//! com") and digit sequences said digit by digit ("five five five, one two three ...",
//! "double seven", "plus four four"). The digits are read into a string that
//! [`super::detect`] checks by the same rules as written numbers.

use super::detect::{Finding, PiiKind};
use regex::Regex;
use std::sync::LazyLock;

/// Top-level domains a spoken address may end with (a spoken "dot com" is the signal).
const TLDS: &str = "com|org|net|edu|gov|io|co|uk|de|fr|in|info|biz|me|us|ai|eu|ca|au|dev";

/// Words that are not the local part of a spoken address ("I worked at acme dot com").
const NOT_LOCAL: &[&str] = &[
    "i",
    "me",
    "we",
    "us",
    "you",
    "he",
    "she",
    "him",
    "her",
    "it",
    "they",
    "them",
    "was",
    "is",
    "are",
    "were",
    "am",
    "be",
    "been",
    "being",
    "work",
    "worked",
    "works",
    "working",
    "job",
    "live",
    "lived",
    "living",
    "stay",
    "stayed",
    "look",
    "looked",
    "looking",
    "shop",
    "shopped",
    "buy",
    "bought",
    "order",
    "ordered",
    "read",
    "saw",
    "found",
    "find",
    "available",
    "online",
    "that",
    "this",
    "there",
    "here",
    "and",
    "or",
    "but",
    "so",
    "just",
    "still",
    "also",
    "intern",
    "interned",
    "hired",
    "started",
    "employed",
    "posted",
    "listed",
    "sold",
    "sell",
    "selling",
    "published",
    "post",
    "up",
    "signed",
    "registered",
    "subscribed",
    "people",
    "folks",
    "team",
    "someone",
    "friends",
    "stuff",
    "things",
    "everything",
    "anything",
];

static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let local =
        r"([a-z0-9][a-z0-9._-]*(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9][a-z0-9_-]*)*)";
    let domain = format!(
        r"[a-z0-9][a-z0-9-]*(?:(?:\s+dot\s+|\.)[a-z0-9][a-z0-9-]*)*(?:\s+dot\s+|\.)(?:{TLDS})"
    );
    Regex::new(&format!(r"(?i)\b{local}\s+at\s+{domain}\b")).expect("spoken e-mail pattern")
});

const DIGIT_WORDS: &str = "zero|oh|one|two|three|four|five|six|seven|eight|nine";

static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| {
    let token = format!(r"(?:{DIGIT_WORDS}|double|triple|\d+)");
    Regex::new(&format!(
        r"(?i)\b(?:plus\s+)?{token}(?:(?:\s*,\s*|\s+|\s*-\s*){token})+\b"
    ))
    .expect("spoken digits pattern")
});

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)[a-z]+|\d+").expect("token pattern"));

/// Spoken e-mail addresses in `text`.
pub(super) fn emails(text: &str) -> Vec<Finding> {
    SPOKEN_EMAIL
        .captures_iter(text)
        .filter(|c| !NOT_LOCAL.contains(&c[1].to_lowercase().as_str()))
        .map(|c| {
            let m = c.get(0).expect("whole match");
            Finding {
                kind: PiiKind::Email,
                start: m.start(),
                end: m.end(),
            }
        })
        .collect()
}

/// A digit sequence said aloud: its byte range, its digits, and whether it began with
/// "plus".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DigitRun {
    pub start: usize,
    pub end: usize,
    pub digits: String,
    pub plus: bool,
}

/// Runs of at least 7 digits with at least one said as a word.
pub(super) fn digit_runs(text: &str) -> Vec<DigitRun> {
    let mut runs = Vec::new();
    for m in DIGIT_RUN.find_iter(text) {
        let mut digits = String::new();
        let mut repeat = 1;
        let mut plus = false;
        let mut spoken = false;
        for t in TOKEN.find_iter(m.as_str()) {
            let word = t.as_str().to_lowercase();
            let digit = match word.as_str() {
                "plus" => {
                    plus = true;
                    continue;
                }
                "double" => {
                    repeat = 2;
                    continue;
                }
                "triple" => {
                    repeat = 3;
                    continue;
                }
                "zero" | "oh" => "0",
                "one" => "1",
                "two" => "2",
                "three" => "3",
                "four" => "4",
                "five" => "5",
                "six" => "6",
                "seven" => "7",
                "eight" => "8",
                "nine" => "9",
                numeral => {
                    digits.push_str(&numeral.repeat(repeat));
                    repeat = 1;
                    continue;
                }
            };
            spoken = true;
            digits.push_str(&digit.repeat(repeat));
            repeat = 1;
        }
        if spoken && digits.len() >= 7 {
            runs.push(DigitRun {
                start: m.start(),
                end: m.end(),
                digits,
                plus,
            });
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spoken_digits() {
        let runs =
            digit_runs("it's plus four four, double seven oh oh nine double oh one two three");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].digits, "4477009001 23".replace(' ', ""));
        assert!(runs[0].plus);
    }

    #[test]
    fn spoken_email_needs_an_address_like_local_part() {
        assert_eq!(emails("I worked at acme dot com for years").len(), 0);
        assert_eq!(
            emails("write to jane underscore doe at mail dot example dot org").len(),
            1
        );
    }
}
