//! Top keywords and phrases of a text by RAKE (Rapid Automatic Keyword Extraction, Rose et
//! al. 2010), a standard extractive method that needs no corpus: the text is cut into
//! candidate phrases at punctuation and stop words; each word scores degree / frequency
//! (degree: the summed lengths of the candidate phrases it appears in, frequency: how
//! often it appears); a phrase scores the sum of its words' scores. Phrases of more than
//! [`MAX_PHRASE_WORDS`] words are left out; each distinct phrase is listed once, best first
//! (ties alphabetically).

use serde::Serialize;
use std::collections::BTreeMap;

/// Longest phrase kept, in words.
pub const MAX_PHRASE_WORDS: usize = 3;

/// One extracted phrase and its RAKE score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keyword {
    pub phrase: String,
    pub score: f64,
}

/// English stop words (articles, pronouns, auxiliaries, prepositions, conjunctions, fillers).
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do",
    "does", "doing", "don't", "down", "during", "each", "few", "for", "from", "had", "has", "have",
    "having", "he", "her", "here", "hers", "him", "his", "how", "i", "i'm", "if", "in", "into",
    "is", "it", "it's", "its", "just", "like", "me", "more", "most", "my", "no", "nor", "not",
    "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own", "really",
    "same", "she", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "um", "uh", "under", "until", "up",
    "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "why", "will",
    "with", "would", "yeah", "yes", "you", "your", "well", "oh", "okay", "ok",
];

/// The `top` best phrases of `texts` (each text is cut separately).
pub fn rake(texts: &[&str], top: usize) -> Vec<Keyword> {
    let mut phrases: Vec<Vec<String>> = Vec::new();
    for text in texts {
        let mut current: Vec<String> = Vec::new();
        let lower = text.to_lowercase();
        let mut word = String::new();
        let flush_word =
            |word: &mut String, current: &mut Vec<String>, phrases: &mut Vec<Vec<String>>| {
                let w = word.trim_matches('\'').to_string();
                word.clear();
                if w.is_empty() {
                    return;
                }
                if STOP_WORDS.contains(&w.as_str()) {
                    phrases.push(std::mem::take(current));
                } else {
                    current.push(w);
                }
            };
        for c in lower.chars() {
            if c.is_alphanumeric() || c == '\'' {
                word.push(c);
            } else {
                flush_word(&mut word, &mut current, &mut phrases);
                if !c.is_whitespace() && c != '-' {
                    phrases.push(std::mem::take(&mut current));
                }
            }
        }
        flush_word(&mut word, &mut current, &mut phrases);
        phrases.push(current);
    }
    phrases.retain(|p| !p.is_empty() && p.len() <= MAX_PHRASE_WORDS);
    let mut freq: BTreeMap<&str, f64> = BTreeMap::new();
    let mut degree: BTreeMap<&str, f64> = BTreeMap::new();
    for p in &phrases {
        for w in p {
            *freq.entry(w).or_default() += 1.0;
            *degree.entry(w).or_default() += p.len() as f64;
        }
    }
    let mut scored: BTreeMap<String, f64> = BTreeMap::new();
    for p in &phrases {
        let score = p
            .iter()
            .map(|w| degree.get(w.as_str()).unwrap_or(&0.0) / freq.get(w.as_str()).unwrap_or(&1.0))
            .sum();
        scored.insert(p.join(" "), score);
    }
    let mut out: Vec<Keyword> = scored
        .into_iter()
        .map(|(phrase, score)| Keyword {
            phrase,
            score: (score * 100.0).round() / 100.0,
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.phrase.cmp(&b.phrase))
    });
    out.truncate(top);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_rake() {
        let k = rake(
            &[
                "Compact fuel cells power the garden project.",
                "The garden project, and fuel cells.",
            ],
            10,
        );
        // Phrases: [compact fuel cells power] (4 words: left out), [garden project],
        // [garden project], [fuel cells].
        // freq: garden 2, project 2, fuel 1, cells 1; degree: garden 4, project 4, fuel 2,
        // cells 2 -> each word scores 2; "fuel cells" 4, "garden project" 4.
        let got: Vec<(&str, f64)> = k.iter().map(|k| (k.phrase.as_str(), k.score)).collect();
        assert_eq!(got, [("fuel cells", 4.0), ("garden project", 4.0)]);
    }

    #[test]
    fn stop_words_and_punctuation_cut_phrases() {
        let k = rake(&["I love data science, and I hate bugs."], 10);
        // [love data science] [hate bugs]: love/data/science degree 3 freq 1 -> 3 each = 9;
        // hate/bugs 2 each = 4.
        let got: Vec<(&str, f64)> = k.iter().map(|k| (k.phrase.as_str(), k.score)).collect();
        assert_eq!(got, [("love data science", 9.0), ("hate bugs", 4.0)]);
        assert!(rake(&["", "the and of"], 5).is_empty());
    }
}
