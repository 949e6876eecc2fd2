//! The researcher console's queries over 100,000 seeded sessions (issue 14): the sessions
//! list with each filter, sort and a deep cursor page, and the aggregate analytics, each run
//! repeatedly against the real SQLite store (the same SQL the API runs), reporting p50 and
//! p95 in ms. The goal is p95 < 100 ms for every query.
//!
//!     cargo bench --bench console_queries            # 100,000 sessions, 50 runs a query
//!     CONSOLE_BENCH_SESSIONS=20000 cargo bench --bench console_queries
//!
//! Run without `--bench` (as `cargo test --all-targets` runs it) it is a smoke check: 2,000
//! sessions and 3 runs a query, so the test suite only proves the queries work.
//!
//! The data: 10 campaigns, sessions spread over a year, states as a real mix (60 % completed,
//! 25 % abandoned at one of 7 drop points, 5 % in progress, 10 % other), 4 turns each whose
//! text draws from a 2,000-word vocabulary plus a rare word (`tomatoes`) in 1 % of them, and
//! a summary per session. Seeding takes about a minute; the database is in a temporary
//! folder and removed at the end. Not part of the test suite.

use earshot_signaling::analytics::aggregate::summarize;
use earshot_signaling::lifecycle::{Lifecycle, LifecycleConfig, Millis};
use earshot_signaling::store::sqlite::SqliteStore;
use earshot_signaling::store::{
    AggregateFilter, CampaignRow, CatalogStore, InviteRow, ScriptRow, SessionCursor, SessionFilter,
    SessionRow, SessionSort, SessionStore, SessionSummary, SortKey, TurnRow,
};
use earshot_vocab::{Quality, Role, State};
use std::time::Instant;

const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;
const T0: i64 = 1_750_000_000_000;
const RUNS: usize = 50;
/// Runs a query in a smoke check (`cargo test`).
const SMOKE_RUNS: usize = 3;
/// Sessions seeded in a smoke check.
const SMOKE_SESSIONS: usize = 2_000;

/// `cargo bench` passes `--bench`; `cargo test` does not.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn runs() -> usize {
    if benching() { RUNS } else { SMOKE_RUNS }
}

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn word(i: u64) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "da", "fe", "gu", "ho", "ji", "pa", "qe",
        "ze",
    ];
    format!(
        "{}{}{}",
        SYL[(i % 16) as usize],
        SYL[(i / 16 % 16) as usize],
        SYL[(i / 256 % 16) as usize]
    )
}

async fn seed(store: &SqliteStore, n: usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for c in 0..10 {
        let id = format!("cmp_bench{c}");
        store
            .insert_campaign(&CampaignRow {
                id: id.clone(),
                name: format!("Campaign {c}"),
                description: String::new(),
                created_at: T0,
            })
            .await
            .expect("campaign");
        store
            .insert_script(&ScriptRow {
                id: format!("scr_bench{c}"),
                campaign_id: id,
                name: "S".into(),
                definition: "{}".into(),
                recording_enabled: true,
                noise_suppression: true,
                quality: Quality::High,
                created_at: T0,
            })
            .await
            .expect("script");
    }
    let drops = [
        "consent",
        "never_started",
        "mic_check",
        "question:q1",
        "question:q2",
        "pause_expiry",
        "technical",
    ];
    let started = Instant::now();
    for chunk in 0..n.div_ceil(10_000) {
        let range = chunk * 10_000..((chunk + 1) * 10_000).min(n);
        let invites: Vec<InviteRow> = range
            .clone()
            .map(|i| InviteRow {
                token: format!("benchtoken{i:08}"),
                campaign_id: format!("cmp_bench{}", i % 10),
                script_id: format!("scr_bench{}", i % 10),
                metadata: "{}".into(),
                created_at: T0,
            })
            .collect();
        store.insert_invites(&invites).await.expect("invites");
    }
    for i in 0..n {
        let created = T0 + (rng.below(YEAR_MS as u64) as i64);
        let roll = rng.below(100);
        let (state, drop) = match roll {
            0..60 => (State::Completed, None),
            60..85 => (State::Abandoned, Some(drops[rng.below(7) as usize])),
            85..90 => (State::InProgress, None),
            90..95 => (State::AdminEnded, None),
            _ => (State::Restarted, None),
        };
        let id = format!("ses_bench{i:08}");
        let row = SessionRow {
            id: id.clone(),
            invite_token: format!("benchtoken{i:08}"),
            campaign_id: format!("cmp_bench{}", i % 10),
            script_id: format!("scr_bench{}", i % 10),
            state,
            // A real lifecycle record: rows as wide as the server's.
            lifecycle: serde_json::to_string(&Lifecycle::new(
                LifecycleConfig::default(),
                Millis(created),
            ))
            .expect("lifecycle JSON"),
            created_at: created,
            started_at: (!(80..85).contains(&roll)).then_some(created + 5_000),
            ended_at: None,
            end_reason: None,
            drop_off: None,
            user_agent: None,
            ip: None,
            metadata: "{}".into(),
            version: 0,
            next_deadline: None,
            summary: SessionSummary::default(),
        };
        store.insert_session(&row).await.expect("session");
        let turns: Vec<TurnRow> = (1..=4)
            .map(|seq| {
                let mut words: Vec<String> = (0..8).map(|_| word(rng.below(2000))).collect();
                if rng.below(400) == 0 {
                    words.push("tomatoes".into());
                }
                TurnRow {
                    seq,
                    role: if seq % 2 == 1 {
                        Role::Ai
                    } else {
                        Role::Participant
                    },
                    start_ms: seq * 5_000,
                    end_ms: Some(seq * 5_000 + 3_000),
                    words: words.len() as i64,
                    text: words.join(" "),
                    response_ms: None,
                    sentiment: None,
                }
            })
            .collect();
        store.upsert_turns(&id, &turns).await.expect("turns");
        let summary = SessionSummary {
            active_ms: rng.below(900_000) as i64,
            turn_count: 4,
            word_count: 32,
            engagement: Some(rng.below(1000) as f64 / 10.0),
            quality: (state != State::Abandoned).then(|| rng.below(1000) as f64 / 10.0),
            ai_latency_p50: Some(300 + rng.below(3000) as i64),
            ai_latency_p95: Some(3500),
            drop_point: drop.map(String::from),
        };
        store
            .set_session_summary(&id, &summary)
            .await
            .expect("summary");
        if (i + 1) % 20_000 == 0 {
            eprintln!("seeded {} sessions in {:.0?}", i + 1, started.elapsed());
        }
    }
}

/// p50 and p95 (nearest rank) in ms of [`runs`] runs of `query`, after one warm-up.
async fn measure<F, Fut, T>(name: &str, mut query: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let _ = query().await;
    let runs = runs();
    let mut ms: Vec<f64> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(query().await);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: usize| ms[(p * runs).div_ceil(100).max(1) - 1];
    println!("{name:<44} p50 {:>7.2} ms   p95 {:>7.2} ms", at(50), at(95));
    at(95)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("CONSOLE_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching() { 100_000 } else { SMOKE_SESSIONS });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .expect("database");
    let t = Instant::now();
    seed(&store, n).await;
    println!("seeded {n} sessions (4 turns each) in {:.1?}", t.elapsed());

    let list = |f: SessionFilter| {
        let store = store.clone();
        move || {
            let store = store.clone();
            let f = f.clone();
            async move { store.list_sessions(&f).await.expect("list").len() }
        }
    };
    let week = Some(T0 + YEAR_MS / 2);
    let week_end = Some(T0 + YEAR_MS / 2 + 7 * 24 * 3600 * 1000);
    let mut worst: f64 = 0.0;
    let base = SessionFilter::default();
    let cases: Vec<(&str, SessionFilter)> = vec![
        ("list: newest 100", base.clone()),
        (
            "list: campaign",
            SessionFilter {
                campaign: Some("cmp_bench3".into()),
                ..base.clone()
            },
        ),
        (
            // A caller with roles on two campaigns (of ten): what a non-superuser's list is.
            "list: the caller's 2 campaigns",
            SessionFilter {
                campaigns: Some(vec!["cmp_bench3".into(), "cmp_bench7".into()]),
                ..base.clone()
            },
        ),
        (
            "list: state abandoned",
            SessionFilter {
                state: Some(State::Abandoned),
                ..base.clone()
            },
        ),
        (
            "list: state in_progress (5 %)",
            SessionFilter {
                state: Some(State::InProgress),
                ..base.clone()
            },
        ),
        (
            "list: one week",
            SessionFilter {
                from: week,
                to: week_end,
                ..base.clone()
            },
        ),
        (
            "list: text, rare word",
            SessionFilter {
                text: vec!["tomatoes".into()],
                ..base.clone()
            },
        ),
        (
            "list: text, common prefix",
            SessionFilter {
                text: vec![word(7)],
                ..base.clone()
            },
        ),
        (
            "list: text, two words",
            SessionFilter {
                text: vec![word(7), word(8)],
                ..base.clone()
            },
        ),
        (
            "list: sort by quality",
            SessionFilter {
                sort: SessionSort {
                    key: SortKey::Quality,
                    ascending: false,
                },
                ..base.clone()
            },
        ),
        (
            "list: sort by duration, ascending",
            SessionFilter {
                sort: SessionSort {
                    key: SortKey::Duration,
                    ascending: true,
                },
                ..base.clone()
            },
        ),
        (
            "list: campaign+state+week+text",
            SessionFilter {
                campaign: Some("cmp_bench3".into()),
                state: Some(State::Completed),
                from: Some(T0),
                to: Some(T0 + YEAR_MS),
                text: vec![word(7)],
                ..base.clone()
            },
        ),
    ];
    for (name, f) in cases {
        worst = worst.max(measure(name, list(f)).await);
    }
    // A deep page: the cursor after row 50,000 of the default order.
    let deep = store
        .list_sessions(&SessionFilter {
            limit: Some(1000),
            ..base.clone()
        })
        .await
        .expect("page");
    if let Some(last) = deep.last() {
        let after = SessionCursor {
            value: SortKey::Created.value(last),
            id: last.id.clone(),
        };
        let f = SessionFilter {
            after: Some(after),
            ..base.clone()
        };
        worst = worst.max(measure("list: next page by cursor", list(f)).await);
    }
    let agg = |f: AggregateFilter| {
        let store = store.clone();
        move || {
            let store = store.clone();
            let f = f.clone();
            async move { summarize(&store.aggregate_counts(&f).await.expect("aggregate")) }
        }
    };
    worst = worst.max(measure("aggregate: everything", agg(AggregateFilter::default())).await);
    worst = worst.max(
        measure(
            "aggregate: the caller's 2 campaigns",
            agg(AggregateFilter {
                campaigns: Some(vec!["cmp_bench3".into(), "cmp_bench7".into()]),
                ..Default::default()
            }),
        )
        .await,
    );
    worst = worst.max(
        measure(
            "aggregate: campaign",
            agg(AggregateFilter {
                campaign: Some("cmp_bench3".into()),
                ..Default::default()
            }),
        )
        .await,
    );
    worst = worst.max(
        measure(
            "aggregate: campaign + one month",
            agg(AggregateFilter {
                campaign: Some("cmp_bench3".into()),
                campaigns: None,
                from: week,
                to: Some(T0 + YEAR_MS / 2 + 30 * 24 * 3600 * 1000),
            }),
        )
        .await,
    );
    println!("worst p95 {worst:.2} ms (goal < 100 ms) over {n} sessions");
}
