//! The PII detector against a hand-labelled corpus of transcript lines
//! (`tests/data/pii_corpus.tsv`): recall and precision per kind, a finding counting only
//! when its kind and exact text match a label.

use earshot_signaling::pii::Detector;
use std::collections::BTreeMap;

#[derive(Default)]
struct Score {
    true_pos: usize,
    false_pos: usize,
    false_neg: usize,
}

#[test]
fn corpus_recall_and_precision_per_kind() {
    let corpus = include_str!("data/pii_corpus.tsv");
    let detector = Detector::builtin();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut lines = 0;
    for (n, line) in corpus.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let (text, labels) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("line {}: no tab", n + 1));
        let mut expected: Vec<(String, String)> = labels
            .split(" | ")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (kind, span) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: bad label {l:?}", n + 1));
                assert!(
                    text.contains(span),
                    "line {}: {span:?} not in the text",
                    n + 1
                );
                (kind.to_string(), span.to_string())
            })
            .collect();
        for f in detector.find(text) {
            let found = (f.kind.label().to_string(), text[f.start..f.end].to_string());
            let score = scores.entry(found.0.clone()).or_default();
            if let Some(i) = expected.iter().position(|e| *e == found) {
                expected.swap_remove(i);
                score.true_pos += 1;
            } else {
                score.false_pos += 1;
                misses.push(format!("line {}: unexpected {found:?}", n + 1));
            }
        }
        for e in expected {
            scores.entry(e.0.clone()).or_default().false_neg += 1;
            misses.push(format!("line {}: missed {e:?}", n + 1));
        }
    }
    assert!(lines >= 200, "the corpus has {lines} lines");
    println!("{lines} lines");
    println!(
        "{:<6} {:>4} {:>4} {:>4} {:>7} {:>9}",
        "kind", "tp", "fp", "fn", "recall", "precision"
    );
    let mut failed = Vec::new();
    for kind in ["EMAIL", "PHONE", "SSN", "CARD", "IP"] {
        let s = scores.get(kind).expect("every kind is in the corpus");
        let recall = s.true_pos as f64 / (s.true_pos + s.false_neg) as f64;
        let precision = s.true_pos as f64 / (s.true_pos + s.false_pos).max(1) as f64;
        println!(
            "{kind:<6} {:>4} {:>4} {:>4} {recall:>7.3} {precision:>9.3}",
            s.true_pos, s.false_pos, s.false_neg
        );
        if recall < 0.99 || precision < 0.95 {
            failed.push(kind);
        }
    }
    for m in &misses {
        println!("{m}");
    }
    // Cost per line (informational: this is the unoptimized test build).
    let texts: Vec<&str> = corpus
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(t, _)| t))
        .collect();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        for t in &texts {
            std::hint::black_box(detector.find(t));
        }
    }
    println!(
        "{:.1} us per line (test build)",
        started.elapsed().as_secs_f64() * 1e6 / (10 * texts.len()) as f64
    );
    assert!(failed.is_empty(), "below the bar: {failed:?}");
    assert_eq!(
        scores.len(),
        5,
        "no other kinds: {:?}",
        scores.keys().collect::<Vec<_>>()
    );
}
