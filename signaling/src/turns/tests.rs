//! The turn log's rules, event by event.

use super::*;
use Role::{Ai, Participant};

fn started(role: Role, at_ms: u64) -> TurnInput<'static> {
    TurnInput::Started { role, at_ms }
}
fn ended(role: Role, start_ms: u64, end_ms: u64) -> TurnInput<'static> {
    TurnInput::Ended {
        role,
        start_ms,
        end_ms,
    }
}
fn line(role: Role, text: &str, is_final: bool, start_ms: u64, end_ms: u64) -> TurnInput<'_> {
    TurnInput::Transcript {
        role,
        text,
        is_final,
        start_ms,
        end_ms,
    }
}

#[test]
fn a_conversation_becomes_turns_with_words_response_times_and_sentiment() {
    let turns = TurnLog::assemble([
        // The AI's question: text first, then its audio.
        line(Ai, "How was your stay with us?", true, 0, 2000),
        started(Ai, 0),
        ended(Ai, 0, 2000),
        // The participant answers 800 ms later; STT partials, then the final line late.
        started(Participant, 2800),
        line(Participant, "It was", false, 2800, 3200),
        line(Participant, "It was wonderful", false, 2800, 4000),
        ended(Participant, 2800, 5000),
        line(
            Participant,
            "It was wonderful, I love this place and the staff were great!",
            true,
            2850,
            4950,
        ),
        // Second question, answered 1500 ms after it ends.
        started(Ai, 5600),
        line(Ai, "Anything we could do better?", true, 5600, 7000),
        ended(Ai, 5600, 7000),
        started(Participant, 8500),
        ended(Participant, 8500, 11000),
        line(
            Participant,
            "The room was dirty and the service was terrible and awful.",
            true,
            8600,
            10900,
        ),
    ]);
    assert_eq!(turns.len(), 4, "{turns:#?}");
    let seqs: Vec<u32> = turns.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
    assert_eq!(roles, [Ai, Participant, Ai, Participant]);

    assert_eq!(turns[0].text, "How was your stay with us?");
    assert_eq!((turns[0].start_ms, turns[0].end_ms), (0, Some(2000)));
    assert_eq!(turns[0].words, 6);
    assert_eq!(turns[0].response_ms, None);

    assert_eq!((turns[1].start_ms, turns[1].end_ms), (2800, Some(5000)));
    assert_eq!(turns[1].words, 12);
    assert_eq!(turns[1].response_ms, Some(800));
    assert!(turns[1].sentiment.unwrap() > 0.0, "{:?}", turns[1]);

    assert_eq!(turns[2].text, "Anything we could do better?");
    assert_eq!(turns[3].response_ms, Some(1500));
    assert_eq!(turns[3].words, 11);
    assert!(turns[3].sentiment.unwrap() < 0.0, "{:?}", turns[3]);
}

#[test]
fn partial_lines_never_make_turns() {
    let turns = TurnLog::assemble([
        line(Participant, "hello", false, 0, 100),
        line(Ai, "hi there", false, 0, 100),
    ]);
    assert!(turns.is_empty());
}

#[test]
fn open_turns_have_no_end_and_take_text() {
    let mut log = TurnLog::new();
    let changed = log.apply(started(Participant, 1000));
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].end_ms, None);
    assert_eq!(log.speaking(), Speaking::Participant);
    log.apply(line(Participant, "still talking", true, 0, 0));
    let t = &log.turns()[0];
    assert_eq!((t.text.as_str(), t.end_ms), ("still talking", None));
    // A second final line of the same turn is appended.
    log.apply(line(Participant, "and more", true, 1500, 2500));
    assert_eq!(log.turns()[0].text, "still talking and more");
    assert_eq!(log.turns()[0].words, 4);
    let changed = log.apply(ended(Participant, 1000, 3000));
    assert_eq!(changed[0].end_ms, Some(3000));
    assert_eq!(log.speaking(), Speaking::None);
}

#[test]
fn barge_in_gives_a_negative_response_time_and_speaking_follows() {
    let mut log = TurnLog::new();
    log.apply(started(Ai, 0));
    assert_eq!(log.speaking(), Speaking::Ai);
    log.apply(started(Participant, 1500));
    assert_eq!(log.speaking(), Speaking::Participant);
    let changed = log.apply(ended(Ai, 0, 1700));
    // The AI end changes the participant's response time too.
    assert_eq!(changed.len(), 2, "{changed:#?}");
    assert_eq!(log.speaking(), Speaking::Participant);
    log.apply(ended(Participant, 1500, 4000));
    let turns = log.turns();
    assert_eq!(turns[1].response_ms, Some(-200));
    assert_eq!(log.speaking(), Speaking::None);
}

#[test]
fn late_lines_go_to_the_turn_they_overlap() {
    let turns = TurnLog::assemble([
        started(Participant, 1000),
        ended(Participant, 1000, 3000),
        started(Ai, 3500),
        // The participant's line arrives while the AI talks; it belongs to turn 1.
        line(Participant, "yes please", true, 1100, 2900),
        ended(Ai, 3500, 5000),
    ]);
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].text, "yes please");
    assert_eq!(turns[1].text, "");
    assert_eq!(turns[1].sentiment, None);
}

#[test]
fn ai_text_without_audio_events_makes_its_own_turns() {
    let turns = TurnLog::assemble([
        line(Ai, "Hello.", true, 0, 1000),
        line(Ai, "First question?", true, 1200, 3000),
        started(Participant, 3500),
        ended(Participant, 3500, 5000),
        line(Participant, "An answer", true, 0, 0),
    ]);
    let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["Hello.", "First question?", "An answer"]);
    assert_eq!(turns[2].response_ms, Some(500));
}

#[test]
fn a_stored_log_continues() {
    let first = TurnLog::assemble([started(Ai, 0), ended(Ai, 0, 1000)]);
    let mut log = TurnLog::from_turns(first);
    log.apply(started(Participant, 1300));
    log.apply(ended(Participant, 1300, 2000));
    assert_eq!(log.turns()[1].seq, 2);
    assert_eq!(log.turns()[1].response_ms, Some(300));
}

#[test]
fn hostile_text_is_bounded() {
    let long = "word ".repeat(10_000);
    let turns = TurnLog::assemble([line(Participant, &long, true, 0, 10)]);
    assert!(turns[0].text.len() <= MAX_LINE_BYTES);
    let turns = TurnLog::assemble([line(Participant, "   ", true, 0, 10)]);
    assert!(turns.is_empty());
    assert_eq!(sentiment("!!! ???"), None);
    assert_eq!(clip("héllo", 2), "h");
}

#[test]
fn sentiment_signs() {
    assert!(sentiment("I love it, this is great and wonderful").unwrap() > 0.5);
    assert!(sentiment("This is terrible, I hate it").unwrap() < -0.5);
    assert_eq!(sentiment("The table is in the room"), Some(0.0));
}
