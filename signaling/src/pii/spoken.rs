//! Spoken forms in transcripts: e-mail addresses said aloud ("john dot smith at example dot
//! com"), digit sequences said digit by digit ("five five five, one two three ...",
//! "double seven", "plus four four") and IPv4 addresses said as digits and "dot" ("one nine
//! two dot one six eight dot oh dot one"; numbers said as words beyond digits, "twenty", are
//! not read). The digits are read into a string that
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
    // Job titles: "I was the lead at shopify dot com".
    "lead",
    "engineer",
    "developer",
    "designer",
    "manager",
    "director",
    "analyst",
    "consultant",
    "contractor",
    "employee",
    // "I was number two at acme dot com".
    "number",
];

static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    // Words joined by spoken dots or underscores, then digits said one by one ("david
    // seven three").
    let local = format!(
        r"([a-z0-9][a-z0-9._-]*(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9][a-z0-9_-]*)*(?:\s+(?:{DIGIT_WORDS}|double|triple))*)"
    );
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

static SPOKEN_IPV4: LazyLock<Regex> = LazyLock::new(|| {
    let octet = format!(r"(?:(?:{DIGIT_WORDS})(?:\s+(?:{DIGIT_WORDS})){{0,2}}|\d{{1,3}})");
    Regex::new(&format!(
        r"(?i)\b{octet}\s+dot\s+{octet}\s+dot\s+{octet}\s+dot\s+{octet}\b"
    ))
    .expect("spoken IPv4 pattern")
});

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)[a-z]+|\d+").expect("token pattern"));

/// Spoken e-mail addresses in `text`: not when the local part starts with a word that is no
/// name ([`NOT_LOCAL`]) or a number ("between one and two at acme dot com"), nor when the domain is a company's name with a possessive ("acme dot
/// com's checkout team").
pub(super) fn emails(text: &str) -> Vec<Finding> {
    SPOKEN_EMAIL
        .captures_iter(text)
        .filter(|c| {
            let first = c[1].split_whitespace().next().unwrap_or_default();
            let number = first.chars().all(|c| c.is_ascii_digit())
                || DIGIT_WORDS
                    .split('|')
                    .any(|w| w.eq_ignore_ascii_case(first));
            !number && !NOT_LOCAL.contains(&first.to_lowercase().as_str())
        })
        .filter_map(|c| c.get(0))
        .filter(|m| !text[m.end()..].starts_with(['\'', '\u{2019}']))
        .map(|m| Finding {
            kind: PiiKind::Email,
            start: m.start(),
            end: m.end(),
        })
        .collect()
}

/// IPv4 addresses said as digits (words or numerals) and "dot", each part 0-255;
/// `(start, end)`.
pub(super) fn ipv4s(text: &str) -> Vec<(usize, usize)> {
    SPOKEN_IPV4
        .find_iter(text)
        .filter(|m| {
            let parts: Vec<String> = m
                .as_str()
                .split(|c: char| c.is_whitespace())
                .collect::<Vec<_>>()
                .split(|w| w.eq_ignore_ascii_case("dot"))
                .map(|words| words.iter().map(|w| word_digits(w)).collect::<String>())
                .collect();
            parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.parse::<u16>().is_ok_and(|n| n <= 255))
        })
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// The digits a word or numeral stands for ("seven" -> "7", "42" -> "42", else nothing).
fn word_digits(word: &str) -> String {
    let digit = match word.to_lowercase().as_str() {
        "zero" | "oh" => '0',
        "one" => '1',
        "two" => '2',
        "three" => '3',
        "four" => '4',
        "five" => '5',
        "six" => '6',
        "seven" => '7',
        "eight" => '8',
        "nine" => '9',
        _ => return word.chars().filter(char::is_ascii_digit).collect(),
    };
    digit.to_string()
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
                word => {
                    spoken |= word.starts_with(|c: char| c.is_alphabetic());
                    word_digits(word)
                }
            };
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
    fn reads_spoken_ipv4() {
        let text = "it was one nine two dot one six eight dot oh dot one two, I think";
        let found = ipv4s(text);
        assert_eq!(found.len(), 1);
        assert_eq!(
            &text[found[0].0..found[0].1],
            "one nine two dot one six eight dot oh dot one two"
        );
        assert!(ipv4s("three dot nine nine nine dot one dot two").is_empty());
        assert!(ipv4s("10.0.0.1 dot").is_empty());
    }

    #[test]
    fn spoken_email_needs_an_address_like_local_part() {
        assert_eq!(emails("I worked at acme dot com for years").len(), 0);
        assert_eq!(
            emails("I was the lead at shopify dot com for years").len(),
            0
        );
        assert_eq!(emails("the storefront at acme dot com's checkout").len(), 0);
        assert_eq!(emails("between 1 and 2 at google dot com").len(), 0);
        assert_eq!(emails("I was number two at acme dot com").len(), 0);
        let text = "it's david seven three at hotmail dot com";
        let found = emails(text);
        assert_eq!(found.len(), 1);
        assert_eq!(
            &text[found[0].start..found[0].end],
            "david seven three at hotmail dot com"
        );
        assert_eq!(
            emails("write to jane underscore doe at mail dot example dot org").len(),
            1
        );
    }
}
