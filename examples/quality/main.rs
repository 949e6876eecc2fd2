//! Audio quality through the real server, measured with PESQ-WB (issue 10, items 4 and 5).
//!
//!     bash scripts/measure-quality.sh            # both tables (about 20 minutes)
//!     bash scripts/measure-quality.sh loss       # or one of them: loss | noise
//!
//! `loss`: a participant (a real WebRTC peer, `earshot_media::client::ClientPeer`) takes the
//! built-in interview through the impairing UDP relay (tests/support/relay.rs): bursty loss
//! (Gilbert, mean burst 2 packets) at 0, 5, 10 and 20 % with 60 ms of uniform jitter (and 0 %
//! without jitter), both directions, two seeds per level (FEC on and off see the same losses).
//! It sends the speech fixture, looped, as Opus it encodes
//! itself with in-band FEC on or off (expected loss = the level). Scored: the participant track
//! as recorded against the speech sent (per loop), and the AI audio the client received,
//! decoded with a 60 ms reorder wait and FEC/PLC, against the AI track (the prompt audio as the
//! server sent it), per prompt.
//!
//! `noise`: speech mixed with noise made here (pink, fan, babble, café; tests/support/noise.rs)
//! at 20, 10, 5 and 0 dB SNR, plus clean speech, sent without loss to two servers, one with
//! `[recording] noise_suppression` on and one off; the participant track against the clean
//! speech.
//!
//! PESQ: both files resampled to 16 kHz with sox, scored by PyPI's `pesq` (scripts/pesq_wb.py).
//! Needs a release build of the server next to this example (the script builds both).

#[path = "../../tests/support/audio.rs"]
#[allow(dead_code)]
mod audio;
#[path = "../../tests/support/noise.rs"]
#[allow(dead_code)]
mod noise;
#[path = "../../tests/support/participant.rs"]
#[allow(dead_code)]
mod participant;
mod pesq;
#[path = "../../tests/support/relay.rs"]
#[allow(dead_code)]
mod relay;
mod server;
mod signal;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use earshot_media::codec::OpusSettings;

use participant::{Impair, Participant, encode};
use pesq::Pesq;
use relay::Impairment;
use server::Server;
use signal::{align, decode_at_client, mean, min, speech_fixture, turns};

const ADMIN: &str = "quality-admin-token-0123456789abcdefghij";
const LEVELS: [u32; 4] = [0, 5, 10, 20];
const JITTER_MS: u64 = 60;
/// Runs per level and FEC setting, each with its own seed (the interview takes 5 loops of the
/// speech, so each run scores 5 loops and 5 prompts).
const SEEDS: u64 = 2;
const SNRS: [f32; 4] = [20.0, 10.0, 5.0, 0.0];
/// The AI audio's reorder wait at the client (a browser's jitter buffer adapts to the jitter;
/// 60 ms lets no packet of this relay's 0..60 ms jitter arrive too late).
const CLIENT_WAIT: Duration = Duration::from_millis(60);

/// The participant's encoder, as Chrome's WebRTC sends voice: 32 kbps, complexity 9.
fn browser_opus(fec: bool, loss_pct: u32) -> OpusSettings {
    OpusSettings {
        bitrate_bps: 32_000,
        complexity: 9,
        fec,
        dtx: false,
        expected_loss_pct: if fec { loss_pct as u8 } else { 0 },
        // A browser codes the full band.
        wideband: false,
    }
}

struct LossRun {
    level: u32,
    jitter_ms: u64,
    fec: bool,
    participant: Vec<usize>,
    ai: Vec<usize>,
    gap_ms: usize,
    up: relay::DirectionStats,
    down: relay::DirectionStats,
    server_lost: usize,
    server_fec: usize,
    server_late: usize,
    client: [u64; 4],
}

async fn loss_run(
    level: u32,
    jitter_ms: u64,
    seed: u64,
    fec: bool,
    work: &Path,
    pesq: &mut Pesq,
) -> LossRun {
    let server = Server::start(&[("EARSHOT_INTERVIEWER_SILENCE_MS", "1000")]).await;
    let speech = speech_fixture();
    let loops = 8;
    let sent: Vec<f32> = speech
        .iter()
        .copied()
        .cycle()
        .take(speech.len() * loops)
        .collect();
    let packets = encode(&noise::to_i16(&sent), browser_opus(fec, level));
    let imp = Impairment::lossy(f64::from(level) / 100.0, jitter_ms);
    let mut p = Participant::join(
        &server.base,
        ADMIN,
        Some(Impair {
            to_server: imp,
            to_client: imp,
            seed,
        }),
    )
    .await;
    let streamed = p.stream(&packets).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.hang_up().await;
    let rec_path = p.download("participant", work).await;
    let ai_path = p.download("ai", work).await;
    let relay = p.relay.as_ref().expect("relay");
    let (up, down) = (relay.to_server(), relay.to_client());
    let jitter = participant::server_jitter(&server.log());
    let (server_lost, server_fec, server_late) =
        (jitter.lost, jitter.next_there, jitter.late.len());
    let name = format!(
        "loss{level}-jitter{jitter_ms}-seed{seed:x}-fec{}",
        if fec { "on" } else { "off" }
    );

    // Participant track: every loop that was sent whole and recorded whole.
    let (_, rec) = audio::read_wav(&rec_path);
    let sent_loops = (streamed.sent * 960 / speech.len()).min(loops);
    let mut participant = Vec::new();
    let mut gap_ms = 0;
    if let Some((off, r)) = align(&sent, &rec, speech.len(), 3 * 48_000) {
        eprintln!("{name}: participant aligned at {off} (r={r:.3}), {sent_loops} loops sent");
        for k in 0..sent_loops {
            let a = off + k * speech.len();
            let b = a + speech.len();
            if b > rec.len() {
                break;
            }
            participant.push(pesq.add(&format!("{name}-p{k}"), &speech, &rec[a..b]));
        }
        let n = (rec.len() - off).min(sent_loops * speech.len());
        let exp = audio::envelope(48_000, &sent[..n]);
        let got = audio::envelope(48_000, &rec[off..off + n]);
        gap_ms = audio::longest_gap_during_speech(&exp, &got);
    } else {
        eprintln!("{name}: participant track not aligned");
    }

    // AI audio at the client against the AI track, per prompt.
    let (_, ai_track) = audio::read_wav(&ai_path);
    let (heard, client) = decode_at_client(&streamed.received);
    let mut ai = Vec::new();
    let spans = turns(&ai_track);
    if let Some(&(first, _)) = spans.first() {
        let from = first.saturating_sub(4_800);
        let probe = &ai_track[from..];
        match align(probe, &heard, 48_000 * 4, 5 * 48_000) {
            Some((d, r)) => {
                eprintln!("{name}: AI audio aligned (r={r:.3}), {} turns", spans.len());
                for (k, (a, b)) in spans.iter().enumerate() {
                    let (a, b) = (a.saturating_sub(4_800), b + 4_800);
                    if a < from || b > ai_track.len() {
                        continue;
                    }
                    // Client position of track sample i: i - from + d.
                    let (ca, cb) = (a - from + d, b - from + d);
                    if cb > heard.len() {
                        continue;
                    }
                    ai.push(pesq.add(&format!("{name}-ai{k}"), &ai_track[a..b], &heard[ca..cb]));
                }
            }
            None => eprintln!("{name}: AI audio not aligned"),
        }
    }
    LossRun {
        level,
        jitter_ms,
        fec,
        participant,
        ai,
        gap_ms,
        up,
        down,
        server_lost,
        server_fec,
        server_late,
        client,
    }
}

/// The speech through the participant's encoder and an Opus decoder, nothing else: what the
/// codec alone costs.
fn codec_only(pesq: &mut Pesq) -> usize {
    let speech = speech_fixture();
    let packets = encode(&noise::to_i16(&speech), browser_opus(false, 0));
    let mut dec = earshot_media::codec::OpusDecoder::new().expect("decoder");
    let mut out: Vec<f32> = Vec::new();
    for p in &packets {
        out.extend(
            dec.decode(p)
                .expect("decode")
                .iter()
                .map(|s| f32::from(*s) / 32768.0),
        );
    }
    let (d, _) = align(&speech, &out, speech.len(), 4_800).expect("aligned");
    pesq.add("codec-only", &speech, &out[d..d + speech.len()])
}

async fn measure_loss(work: &Path) {
    let mut pesq = Pesq::new(work);
    let codec = codec_only(&mut pesq);
    let mut runs = Vec::new();
    // (level, jitter): the levels with jitter, and the clean path for reference.
    let conditions: Vec<(u32, u64)> = std::iter::once((0, 0))
        .chain(LEVELS.iter().map(|&l| (l, JITTER_MS)))
        .collect();
    for &(level, jitter) in &conditions {
        for s in 0..SEEDS {
            // The same seed for FEC on and off: the same packets are lost.
            let seed = 0xEA25_0000 + u64::from(level) + 0x100 * s;
            for fec in [true, false] {
                let t = Instant::now();
                let run = loss_run(level, jitter, seed, fec, work, &mut pesq).await;
                eprintln!(
                    "loss {level} % jitter {jitter} ms seed {seed:x} FEC {fec}: {:.0} s, relay up {:.1} % (longest burst {}, {} reordered), down {:.1} %",
                    t.elapsed().as_secs_f64(),
                    run.up.loss_pct(),
                    run.up.longest_burst(),
                    run.up.reordered,
                    run.down.loss_pct()
                );
                runs.push(run);
            }
        }
    }
    let scores = pesq.run();
    let pick = |idx: &[usize]| idx.iter().map(|&i| scores[i]).collect::<Vec<f64>>();
    println!(
        "\nparticipant speech through the Opus codec alone (32 kbps, complexity 9, no server): {:.2}",
        scores[codec]
    );
    println!(
        "\n| loss (bursty, mean burst 2) | participant track, FEC on | FEC off | AI audio at the client | longest gap in the participant track (FEC on / off) |"
    );
    println!("|---|---|---|---|---|");
    for &(level, jitter) in &conditions {
        let of = |fec: bool| -> Vec<&LossRun> {
            runs.iter()
                .filter(|r| r.level == level && r.jitter_ms == jitter && r.fec == fec)
                .collect()
        };
        let (on, off) = (of(true), of(false));
        let scores_of = |rs: &[&LossRun], ai: bool| -> Vec<f64> {
            rs.iter()
                .flat_map(|r| pick(if ai { &r.ai } else { &r.participant }))
                .collect()
        };
        let (p_on, p_off) = (scores_of(&on, false), scores_of(&off, false));
        let ai: Vec<f64> = scores_of(&on, true)
            .into_iter()
            .chain(scores_of(&off, true))
            .collect();
        let gaps = |rs: &[&LossRun]| {
            rs.iter()
                .map(|r| format!("{}", r.gap_ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {level} %, {jitter} ms jitter | {:.2} (min {:.2}, {} loops) | {:.2} (min {:.2}, {} loops) | {:.2} (min {:.2}, {} prompts) | {} / {} ms |",
            mean(&p_on),
            min(&p_on),
            p_on.len(),
            mean(&p_off),
            min(&p_off),
            p_off.len(),
            mean(&ai),
            min(&ai),
            ai.len(),
            gaps(&on),
            gaps(&off)
        );
    }
    println!(
        "\n| run | relay up: RTP lost / reordered / longest burst | server: declared lost (next packet there / not) / late | relay down: lost | client: lost (next packet there / not) / late |"
    );
    println!("|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} %, {} ms, FEC {} | {:.1} % ({} of {}) / {} / {} | {} ({} / {}) / {} | {:.1} % | {} ({} / {}) / {} |",
            r.level,
            r.jitter_ms,
            if r.fec { "on" } else { "off" },
            r.up.loss_pct(),
            r.up.dropped,
            r.up.rtp,
            r.up.reordered,
            r.up.longest_burst(),
            r.server_lost,
            r.server_fec,
            r.server_lost - r.server_fec.min(r.server_lost),
            r.server_late,
            r.down.loss_pct(),
            r.client[0],
            r.client[2],
            r.client[3],
            r.client[1],
        );
    }
}

async fn measure_noise(work: &Path) {
    let speech = speech_fixture();
    let lead = 48_000; // noise alone before each noisy segment
    // Layout: 0.5 s silence, clean speech, then per SNR: 1 s noise, speech + noise; 0.5 s tail.
    let mut starts = vec![24_000];
    let mut pos = 24_000 + speech.len();
    for _ in SNRS {
        pos += lead;
        starts.push(pos);
        pos += speech.len();
    }
    let total = pos + 24_000;
    let mut pesq = Pesq::new(work);
    let kinds = ["pink", "fan", "babble", "café"];
    // results[kind][segment] = (on, off, floor_on, floor_off)
    let mut jobs: Vec<Vec<(usize, usize, f32, f32)>> = Vec::new();
    for (ki, kind) in kinds.iter().enumerate() {
        let t = Instant::now();
        let seed = 0x5EED_0000 + ki as u64;
        let raw = match *kind {
            "pink" => noise::pink(total, seed),
            "fan" => noise::fan(total, seed),
            "babble" => noise::babble(total, seed, work),
            _ => noise::cafe(total, seed, work),
        };
        let mut sent = vec![0f32; total];
        let mut clean = vec![0f32; total];
        for (s, &start) in starts.iter().enumerate() {
            clean[start..start + speech.len()].copy_from_slice(&speech);
            if s == 0 {
                continue;
            }
            let g = noise::noise_gain(&speech, &raw[start..start + speech.len()], SNRS[s - 1]);
            let seg_end = if s == SNRS.len() {
                total
            } else {
                start + speech.len()
            };
            for i in start - lead..seg_end {
                sent[i] = g * raw[i];
            }
        }
        for (x, c) in sent.iter_mut().zip(&clean) {
            *x += c;
        }
        let peak = sent.iter().fold(0f32, |m, s| m.max(s.abs()));
        let gain = if peak > 0.95 { 0.95 / peak } else { 1.0 };
        sent.iter_mut().for_each(|s| *s *= gain);
        let speech_scaled: Vec<f32> = speech.iter().map(|s| s * gain).collect();
        let packets = encode(&noise::to_i16(&sent), browser_opus(false, 0));

        let (on_srv, off_srv) = tokio::join!(
            Server::start(&[]),
            Server::start(&[("EARSHOT_RECORDING_NOISE_SUPPRESSION", "false")])
        );
        let run = |srv: &Server| {
            let base = srv.base.clone();
            let packets = packets.clone();
            async move {
                let mut p = Participant::join(&base, ADMIN, None).await;
                p.stream(&packets).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                p.hang_up().await;
                p.download("participant", work).await
            }
        };
        let (on_path, off_path) = tokio::join!(run(&on_srv), run(&off_srv));
        let mut row = Vec::new();
        let mut recs = Vec::new();
        for path in [&on_path, &off_path] {
            let (_, rec) = audio::read_wav(path);
            let (off, r) = align(&sent, &rec, sent.len(), 3 * 48_000).expect("aligned");
            eprintln!("{kind}: aligned at {off} (r={r:.3})");
            recs.push((rec, off));
        }
        let clean_env = audio::envelope(48_000, &clean);
        for (s, &start) in starts.iter().enumerate() {
            let mut ids = Vec::new();
            let mut floors = Vec::new();
            for (i, (rec, off)) in recs.iter().enumerate() {
                let a = off + start;
                let seg = &rec[a..a + speech.len()];
                let tag = if i == 0 { "on" } else { "off" };
                ids.push(pesq.add(&format!("{kind}-{s}-{tag}"), &speech_scaled, seg));
                // Noise floor where the clean speech is silent (±50 ms), in this segment.
                let env = audio::envelope(48_000, &rec[*off..]);
                let (f0, f1) = (start / 480, (start + speech.len()) / 480);
                let quiet: Vec<f32> = (f0 + 5..f1 - 5)
                    .filter(|&f| clean_env[f - 5..=f + 5].iter().all(|v| *v < -60.0))
                    .filter_map(|f| env.get(f).map(|db| 10f32.powf(db / 10.0)))
                    .collect();
                let p = quiet.iter().sum::<f32>() / quiet.len().max(1) as f32;
                floors.push(10.0 * p.max(1e-12).log10());
            }
            row.push((ids[0], ids[1], floors[0], floors[1]));
        }
        jobs.push(row);
        eprintln!("{kind}: {:.0} s", t.elapsed().as_secs_f64());
    }
    let scores = pesq.run();
    println!(
        "\n| SNR | {} | mean off -> on (gain) |",
        kinds
            .iter()
            .map(|k| format!("{k}: off -> on"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(kinds.len()));
    for s in 0..=SNRS.len() {
        let label = if s == 0 {
            "clean".to_owned()
        } else {
            format!("{} dB", SNRS[s - 1])
        };
        let mut cells = Vec::new();
        let (mut ons, mut offs) = (Vec::new(), Vec::new());
        for row in &jobs {
            let (on, off, _, _) = row[s];
            let (on, off) = (scores[on], scores[off]);
            ons.push(on);
            offs.push(off);
            cells.push(format!("{off:.2} -> {on:.2} ({:+.2})", on - off));
        }
        let (mon, moff) = (mean(&ons), mean(&offs));
        println!(
            "| {label} | {} | {moff:.2} -> {mon:.2} ({:+.2}) |",
            cells.join(" | "),
            mon - moff
        );
    }
    println!(
        "\n| SNR | noise floor between words, off -> on (dB re full scale): {} |",
        kinds.join(" | ")
    );
    println!("|---|---|");
    for s in 1..=SNRS.len() {
        let cells: Vec<String> = jobs
            .iter()
            .map(|row| {
                let (_, _, on, off) = row[s];
                format!("{off:.1} -> {on:.1} ({:+.1})", on - off)
            })
            .collect();
        println!("| {} dB | {} |", SNRS[s - 1], cells.join(" | "));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let what: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "loss" | "noise"))
        .collect();
    let tmp = tempfile::tempdir().expect("work dir");
    let work = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("--keep dir");
            dir.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    if what.is_empty() || what.contains(&"loss") {
        measure_loss(&work).await;
    }
    if what.is_empty() || what.contains(&"noise") {
        measure_noise(&work).await;
    }
}
