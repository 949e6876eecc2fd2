//! The console's queries on either store: the sessions list's filters (campaign,
//! state, date range, transcript words through the full-text index), sorts and cursor
//! pages, invites with their state, and the aggregate of a seeded set whose numbers are
//! worked out by hand.

use super::{Fixture, on_both_stores};
use crate::analytics::aggregate::summarize;
use crate::store::{
    AggregateFilter, CampaignRow, InviteRow, ScriptRow, SessionCursor, SessionFilter, SessionRow,
    SessionSort, SessionSummary, SortKey, Store, TurnRow,
};
use earshot_vocab::{Quality, Role, State};

on_both_stores!(
    the_aggregate_of_a_seeded_set_matches_by_hand,
    the_list_filters_sorts_and_pages,
    transcript_words_are_found_through_the_index_and_follow_edits_and_deletes,
    invites_carry_their_newest_sessions_state,
);

async fn campaigns(store: &dyn Store) {
    for c in ["cmp_a", "cmp_b"] {
        store
            .insert_campaign(&CampaignRow {
                id: c.into(),
                name: c.to_uppercase(),
                description: String::new(),
                created_at: 0,
            })
            .await
            .unwrap();
        store
            .insert_script(&ScriptRow {
                id: format!("scr_{c}"),
                campaign_id: c.into(),
                name: "S".into(),
                definition: "{}".into(),
                recording_enabled: true,
                noise_suppression: true,
                quality: Quality::High,
                created_at: 0,
            })
            .await
            .unwrap();
        store
            .insert_invite(&InviteRow {
                token: format!("token_{c}"),
                campaign_id: c.into(),
                script_id: format!("scr_{c}"),
                metadata: "{}".into(),
                created_at: 0,
            })
            .await
            .unwrap();
    }
}

/// A session of `campaign` created at `created` (ms) in `state`, with a summary.
async fn add(
    store: &dyn Store,
    id: &str,
    campaign: &str,
    state: State,
    created: i64,
    started: bool,
    summary: SessionSummary,
) {
    store
        .insert_session(&SessionRow {
            id: id.into(),
            invite_token: format!("token_{campaign}"),
            campaign_id: campaign.into(),
            script_id: format!("scr_{campaign}"),
            state,
            lifecycle: "{}".into(),
            created_at: created,
            started_at: started.then_some(created + 1),
            ended_at: None,
            end_reason: None,
            drop_off: None,
            user_agent: None,
            ip: None,
            metadata: "{}".into(),
            version: 0,
            next_deadline: None,
            summary: SessionSummary::default(),
        })
        .await
        .unwrap();
    store.set_session_summary(id, &summary).await.unwrap();
}

fn summary(
    active_ms: i64,
    quality: Option<f64>,
    p50: Option<i64>,
    drop: Option<&str>,
) -> SessionSummary {
    SessionSummary {
        active_ms,
        quality,
        ai_latency_p50: p50,
        drop_point: drop.map(String::from),
        ..SessionSummary::default()
    }
}

fn turn(seq: i64, text: &str) -> TurnRow {
    TurnRow {
        seq,
        role: Role::Participant,
        start_ms: seq * 1000,
        end_ms: Some(seq * 1000 + 500),
        text: text.into(),
        words: text.split_whitespace().count() as i64,
        response_ms: None,
        sentiment: None,
    }
}

fn ids(rows: &[SessionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

/// The seeded set, by hand. Campaign A, created in [1000, 9000):
/// - ses_s1 completed, started, 60 s, quality 80 (bucket 8), AI p50 900 ms (bucket 3)
/// - ses_s2 completed, started, 120 s, quality 62.5 (bucket 6), p50 1300 ms (bucket 5)
/// - ses_s3 abandoned at consent, never started
/// - ses_s4 abandoned at question q2, started, 30 s, quality 40 (bucket 4), p50 4500 ms
///   (4500 / 250 = 18: the last bucket, 16)
/// - ses_s5 abandoned (technical), started, 10 s, no quality, no latency
/// - ses_s6 abandoned at the mic check, never started
///
/// and outside the filter: ses_s7 (campaign B) and ses_s8 (campaign A, created at 20000).
async fn seeded(s: Fixture) -> Fixture {
    campaigns(&*s).await;
    use State::{Abandoned, Completed};
    add(
        &*s,
        "ses_s1",
        "cmp_a",
        Completed,
        1000,
        true,
        summary(60_000, Some(80.0), Some(900), None),
    )
    .await;
    add(
        &*s,
        "ses_s2",
        "cmp_a",
        Completed,
        2000,
        true,
        summary(120_000, Some(62.5), Some(1300), None),
    )
    .await;
    add(
        &*s,
        "ses_s3",
        "cmp_a",
        Abandoned,
        3000,
        false,
        summary(0, None, None, Some("consent")),
    )
    .await;
    add(
        &*s,
        "ses_s4",
        "cmp_a",
        Abandoned,
        4000,
        true,
        summary(30_000, Some(40.0), Some(4500), Some("question:q2")),
    )
    .await;
    add(
        &*s,
        "ses_s5",
        "cmp_a",
        Abandoned,
        5000,
        true,
        summary(10_000, None, None, Some("technical")),
    )
    .await;
    add(
        &*s,
        "ses_s6",
        "cmp_a",
        Abandoned,
        6000,
        false,
        summary(0, None, None, Some("mic_check")),
    )
    .await;
    add(
        &*s,
        "ses_s7",
        "cmp_b",
        Completed,
        7000,
        true,
        summary(999_000, Some(10.0), Some(100), None),
    )
    .await;
    add(
        &*s,
        "ses_s8",
        "cmp_a",
        Completed,
        20_000,
        true,
        summary(999_000, Some(10.0), Some(100), None),
    )
    .await;
    s
}

async fn the_aggregate_of_a_seeded_set_matches_by_hand(s: Fixture) {
    let s = seeded(s).await;
    let filter = AggregateFilter {
        campaign: Some("cmp_a".into()),
        campaigns: None,
        from: Some(1000),
        to: Some(9000),
    };
    let a = summarize(&s.aggregate_counts(&filter).await.unwrap());
    // The same set seen by a caller of cmp_a alone (no campaign named) counts the same; one
    // of no campaign counts nothing.
    let scoped = AggregateFilter {
        campaign: None,
        campaigns: Some(vec!["cmp_a".into()]),
        ..filter.clone()
    };
    assert_eq!(
        summarize(&s.aggregate_counts(&scoped).await.unwrap()).sessions,
        6
    );
    let nobody = AggregateFilter {
        campaigns: Some(vec![]),
        ..scoped
    };
    assert_eq!(
        summarize(&s.aggregate_counts(&nobody).await.unwrap()).sessions,
        0
    );
    assert_eq!(
        (a.sessions, a.started, a.completed, a.abandoned),
        (6, 4, 2, 4)
    );
    // 2 completed / 4 started
    assert_eq!(a.completion_rate, Some(0.5));
    // (60 + 120 + 30 + 10) s / 4 started
    assert_eq!(a.avg_duration_ms, Some(55_000));
    // (80 + 62.5 + 40) / 3 = 60.83
    assert_eq!(a.avg_quality, Some(60.8));
    let drops: Vec<(&str, i64, f64)> = a
        .drop_off
        .iter()
        .map(|d| (d.point.as_str(), d.count, d.share))
        .collect();
    assert_eq!(
        drops,
        [
            ("consent", 1, 0.25),
            ("mic_check", 1, 0.25),
            ("question:q2", 1, 0.25),
            ("technical", 1, 0.25)
        ]
    );
    assert_eq!(a.quality_histogram, [0, 0, 0, 0, 1, 0, 1, 0, 1, 0]);
    let mut latency = vec![0; 17];
    latency[3] = 1;
    latency[5] = 1;
    latency[16] = 1;
    assert_eq!(a.ai_latency_histogram, latency);

    // Everything: 8 sessions, 6 started, 4 completed.
    let all = summarize(
        &s.aggregate_counts(&AggregateFilter::default())
            .await
            .unwrap(),
    );
    assert_eq!((all.sessions, all.started, all.completed), (8, 6, 4));
    assert_eq!(all.completion_rate, Some(0.667));
}

async fn the_list_filters_sorts_and_pages(s: Fixture) {
    let s = seeded(s).await;
    let list = |f: SessionFilter| {
        let s = s.store.clone();
        async move { s.list_sessions(&f).await.unwrap() }
    };
    let all = list(SessionFilter::default()).await;
    assert_eq!(
        ids(&all),
        [
            "ses_s8", "ses_s7", "ses_s6", "ses_s5", "ses_s4", "ses_s3", "ses_s2", "ses_s1"
        ]
    );
    let a_in_range = SessionFilter {
        campaign: Some("cmp_a".into()),
        from: Some(2000),
        to: Some(5000),
        ..SessionFilter::default()
    };
    assert_eq!(ids(&list(a_in_range).await), ["ses_s4", "ses_s3", "ses_s2"]);
    let completed = SessionFilter {
        state: Some(State::Completed),
        ..SessionFilter::default()
    };
    assert_eq!(
        ids(&list(completed).await),
        ["ses_s8", "ses_s7", "ses_s2", "ses_s1"]
    );
    // Best quality first; sessions without a score last.
    let by_quality = SessionFilter {
        sort: SessionSort {
            key: SortKey::Quality,
            ascending: false,
        },
        limit: Some(3),
        ..SessionFilter::default()
    };
    let page1 = list(by_quality.clone()).await;
    assert_eq!(ids(&page1), ["ses_s1", "ses_s2", "ses_s4"]);
    let last = page1.last().unwrap();
    let page2 = list(SessionFilter {
        after: Some(SessionCursor {
            value: SortKey::Quality.value(last),
            id: last.id.clone(),
        }),
        ..by_quality.clone()
    })
    .await;
    // s7 and s8 tie at 10.0: by id, descending.
    assert_eq!(ids(&page2), ["ses_s8", "ses_s7", "ses_s6"]);
    let shortest = SessionFilter {
        sort: SessionSort {
            key: SortKey::Duration,
            ascending: true,
        },
        limit: Some(2),
        ..SessionFilter::default()
    };
    assert_eq!(ids(&list(shortest).await), ["ses_s3", "ses_s6"]);
}

async fn transcript_words_are_found_through_the_index_and_follow_edits_and_deletes(s: Fixture) {
    let s = seeded(s).await;
    s.upsert_turns(
        "ses_s1",
        &[turn(1, "I grow tomatoes in the garden"), turn(2, "Yes")],
    )
    .await
    .unwrap();
    s.upsert_turns("ses_s2", &[turn(1, "Gardening is my hobby")])
        .await
        .unwrap();
    let find = |words: &[&str]| {
        let s = s.store.clone();
        let text = words.iter().map(|w| w.to_string()).collect();
        async move {
            let rows = s
                .list_sessions(&SessionFilter {
                    text,
                    ..SessionFilter::default()
                })
                .await
                .unwrap();
            rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(find(&["tomatoes"]).await, ["ses_s1"]);
    // Each word is a prefix; case does not matter.
    assert_eq!(find(&["GARDEN"]).await, ["ses_s2", "ses_s1"]);
    assert_eq!(find(&["garden", "tomato"]).await, ["ses_s1"]);
    assert!(find(&["cucumbers"]).await.is_empty());
    // FTS5 syntax in the input is only text.
    assert!(find(&["\"tomatoes OR NOT*"]).await.is_empty());
    assert_eq!(find(&["\"tomatoes\""]).await, ["ses_s1"]);
    // A turn's text changes: the index follows.
    s.upsert_turns("ses_s1", &[turn(1, "I grow cucumbers")])
        .await
        .unwrap();
    assert!(find(&["tomatoes"]).await.is_empty());
    assert_eq!(find(&["cucumbers"]).await, ["ses_s1"]);
    // Deleting the session deletes its turns and their index entries.
    assert!(s.delete_session("ses_s1").await.unwrap());
    assert!(find(&["cucumbers"]).await.is_empty());
}

async fn invites_carry_their_newest_sessions_state(s: Fixture) {
    let s = seeded(s).await;
    s.insert_invites(&[InviteRow {
        token: "token_unused".into(),
        campaign_id: "cmp_b".into(),
        script_id: "scr_cmp_b".into(),
        metadata: r#"{"ref":"x"}"#.into(),
        created_at: 10,
    }])
    .await
    .unwrap();
    let invites = s.list_invites("cmp_b", 100).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = invites
        .iter()
        .map(|i| (i.invite.token.as_str(), i.state.as_deref()))
        .collect();
    assert_eq!(
        got,
        [("token_unused", None), ("token_cmp_b", Some("completed"))]
    );
    // cmp_a's one invite has seven sessions: the newest is s8.
    let a = s.list_invites("cmp_a", 100).await.unwrap();
    assert_eq!(a[0].session_id.as_deref(), Some("ses_s8"));
}
