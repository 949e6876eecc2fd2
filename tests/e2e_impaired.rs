//! A bad network and a noisy room, through the real server: a participant (a real WebRTC peer)
//! sends known speech through the impairing UDP relay (bursty loss, jitter, reordering), or
//! mixed with noise; the participant track as recorded must hold it without gaps, and noise
//! suppression must lower the noise. PESQ figures for the same set-ups come from
//! `scripts/measure-quality.sh` (README "Audio quality under loss and noise").

mod support;

use std::path::Path;
use std::time::Duration;

use earshot_media::codec::OpusSettings;
use support::participant::{Impair, Participant, encode};
use support::relay::{Impairer, Impairment, LossModel, is_rtp, rewrite_answer};
use support::{ADMIN_TOKEN, Server, audio, fixture, noise};

fn speech() -> Vec<f32> {
    audio::read_wav(&fixture("participant_speech.wav")).1
}

/// The participant's encoder, as a browser sends voice (32 kbps, in-band FEC for 10 % loss).
fn browser_opus() -> OpusSettings {
    OpusSettings {
        bitrate_bps: 32_000,
        complexity: 9,
        fec: true,
        dtx: false,
        expected_loss_pct: 10,
        // A browser codes the full band.
        wideband: false,
    }
}

#[test]
fn bursty_loss_has_its_rate_and_burst_length_and_repeats_with_its_seed() {
    for loss in [0.05, 0.10, 0.20] {
        let imp = Impairment::lossy(loss, 60);
        assert!((imp.loss.rate() - loss).abs() < 1e-9);
        let mut a = Impairer::new(imp, 42);
        let decisions: Vec<Option<Duration>> =
            (0..100_000u32).map(|i| a.on_rtp(i as u16)).collect();
        let s = a.snapshot();
        let rate = s.dropped as f64 / s.rtp as f64;
        let bursts: u64 = s.bursts.iter().sum();
        let mean_burst = s.dropped as f64 / bursts as f64;
        assert!((rate / loss - 1.0).abs() < 0.08, "{loss}: rate {rate}");
        assert!(
            (mean_burst - 2.0).abs() < 0.15,
            "{loss}: mean burst {mean_burst}"
        );
        assert!(s.longest_burst() >= 6, "{loss}: bursts {:?}", s.bursts);
        let delays: Vec<f64> = decisions
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64())
            .collect();
        assert!(delays.iter().all(|d| (0.0..=0.060).contains(d)));
        let mean_delay = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!(
            (mean_delay - 0.030).abs() < 0.002,
            "mean delay {mean_delay}"
        );
        // Same seed, same decisions; another seed, others.
        let mut b = Impairer::new(imp, 42);
        assert!(
            decisions
                .iter()
                .enumerate()
                .all(|(i, d)| *d == b.on_rtp(i as u16))
        );
        let mut c = Impairer::new(imp, 43);
        let other: Vec<bool> = (0..1000u16).map(|i| c.on_rtp(i).is_none()).collect();
        let ours: Vec<bool> = decisions[..1000].iter().map(Option::is_none).collect();
        assert_ne!(other, ours);
    }
    let mut none = Impairer::new(Impairment::NONE, 1);
    assert!((0..1000u16).all(|i| none.on_rtp(i) == Some(Duration::ZERO)));
    let mut random = Impairer::new(
        Impairment {
            loss: LossModel::Random(0.1),
            ..Impairment::NONE
        },
        1,
    );
    let lost = (0..100_000u32)
        .filter(|&i| random.on_rtp(i as u16).is_none())
        .count();
    assert!((9_000..11_000).contains(&lost), "{lost}");
}

#[test]
fn the_answer_is_pointed_at_the_relay_and_only_rtp_is_impaired() {
    let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 40123 typ host\r\n\
        a=candidate:2 1 tcp 1671430143 127.0.0.1 40124 typ host tcptype passive\r\n\
        a=end-of-candidates\r\n";
    let relay = "127.0.0.1:5555".parse().expect("addr");
    let (sdp, server) = rewrite_answer(answer, relay).expect("a UDP host candidate");
    assert_eq!(
        server,
        "127.0.0.1:40123"
            .parse::<std::net::SocketAddr>()
            .expect("addr")
    );
    assert!(sdp.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 5555 typ host\r\n"));
    assert!(
        sdp.contains("127.0.0.1 40124 typ host tcptype passive\r\n"),
        "TCP kept"
    );
    assert!(sdp.contains("m=audio 5555 UDP/TLS/RTP/SAVPF 111\r\n"));
    assert!(!sdp.contains("40123"));
    assert!(rewrite_answer("v=0\r\n", relay).is_none());

    let mut rtp = vec![0x80, 111, 0, 1];
    rtp.resize(40, 0);
    assert!(is_rtp(&rtp));
    let mut rtcp = vec![0x80, 200, 0, 6];
    rtcp.resize(28, 0);
    assert!(!is_rtp(&rtcp), "RTCP sender report");
    assert!(
        !is_rtp(&[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]),
        "STUN"
    );
    assert!(
        !is_rtp(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        "DTLS"
    );
}

/// 10 % bursty loss (mean burst 2 packets) with 60 ms of jitter on the participant's packets.
/// The server must fill every lost 20 ms (FEC from the next packet, else concealment) and keep
/// every packet that comes in time, so the recording never falls silent for more than 60 ms
/// while speech was sent — except where the network took more than 60 ms in a row (4 or more
/// packets) at once: a word onset lost whole cannot be concealed by any receiver (concealment
/// continues the pause before it), so there a gap may be as long as the burst, not longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_track_has_no_gap_over_60_ms_at_10_percent_loss_with_60_ms_jitter() {
    let server = Server::start(&[]).await;
    let speech = speech();
    let sent: Vec<f32> = speech
        .iter()
        .copied()
        .cycle()
        .take(speech.len() * 3)
        .collect();
    let packets = encode(&noise::to_i16(&sent), browser_opus());
    let imp = Impairment::lossy(0.10, 60);
    let mut p = Participant::join(
        &server.base,
        ADMIN_TOKEN,
        Some(Impair {
            to_server: imp,
            to_client: imp,
            seed: 0xEA25_000A,
        }),
    )
    .await;
    let streamed = p.stream(&packets).await;
    assert!(!streamed.ended_by_server, "log:\n{}", server.log());
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.hang_up().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = p.download("participant", dir.path()).await;
    let up = p.relay.as_ref().expect("relay").to_server();
    eprintln!(
        "relay to server: {} RTP, {} dropped ({:.1} %), bursts {:?}, {} reordered",
        up.rtp,
        up.dropped,
        up.loss_pct(),
        &up.bursts[..8],
        up.reordered
    );
    // The impairment is what the test claims: ~10 % in bursts long enough to leave holes of
    // 60 ms and more if lost frames were not filled, and reordering.
    assert!(
        up.rtp >= packets.len() as u64 - 5,
        "{} of {} sent",
        up.rtp,
        packets.len()
    );
    assert!((7.0..=13.0).contains(&up.loss_pct()), "{up:?}");
    assert!(up.longest_burst() >= 4, "{up:?}");
    assert!(up.reordered > 50, "{up:?}");
    let jitter = support::participant::server_jitter(&server.log());
    eprintln!(
        "server: {} declared lost ({} with the next packet there for FEC), {} late: {:?}",
        jitter.lost,
        jitter.next_there,
        jitter.late.len(),
        jitter.late
    );
    assert!(
        jitter.lost as u64 >= up.dropped,
        "the server saw the losses"
    );
    assert!(jitter.next_there > 0, "the server had FEC to use");
    // The AI audio lost 10 % on its way to the client too; the client's receiver reports say
    // so, and the server's encoder turns its FEC on for it.
    let log = support::participant::strip_ansi(&server.log());
    let fec = log
        .lines()
        .find(|l| l.contains("FEC follows the reported loss"))
        .unwrap_or_else(|| panic!("the encoder never took up the reported loss:\n{log}"));
    eprintln!("{fec}");

    let (rate, rec) = audio::read_wav(&path);
    assert_eq!(rate, 48_000);
    let (sent_env, rec_env) = (audio::envelope(48_000, &sent), audio::envelope(rate, &rec));
    let needle = &sent_env[..sent_env.len() - 100];
    let (pos, r) = audio::find(needle, &rec_env, 0);
    eprintln!(
        "recording matches the speech sent at {} ms, r={r:.3}",
        pos * 10
    );
    assert!(
        r > 0.9,
        "participant track does not match the speech sent (r={r:.3})"
    );
    let n = needle.len().min(rec_env.len() - pos);
    let (expected, recorded) = (&needle[..n], &rec_env[pos..pos + n]);

    // Packet k carries sent frames 2k and 2k+1 (10 ms envelope frames). Missing at the server:
    // what the relay dropped, and what came later than the server's reorder wait (dropped as
    // late, so concealed as well). Runs of 4 and more (plus 20 ms for the decoder to settle)
    // are judged on their own below.
    let first = up.first_seq.expect("RTP went through");
    let mut missing: Vec<usize> = up
        .dropped_seqs
        .iter()
        .chain(&jitter.late)
        .map(|s| usize::from(s.wrapping_sub(first)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for k in missing {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == k => *len += 1,
            _ => runs.push((k, 1)),
        }
    }
    let long: Vec<(usize, usize)> = runs.iter().copied().filter(|r| r.1 >= 4).collect();
    let mut masked = expected.to_vec();
    for &(k, len) in &long {
        let (a, b) = ((2 * k).min(n), (2 * (k + len) + 2).min(n));
        masked[a..b].fill(-70.0);
    }
    let gap = audio::longest_gap_during_speech(&masked, recorded);
    eprintln!("longest gap while speech was sent, outside bursts of 80 ms or more: {gap} ms");
    for &(k, len) in &long {
        let (a, b) = ((2 * k).min(n), (2 * (k + len) + 2).min(n));
        let g = audio::longest_gap_during_speech(&expected[a..b], &recorded[a..b]);
        eprintln!("{len} packets missing at {} ms: gap {g} ms", 20 * k);
        assert!(
            g <= 20 * len,
            "gap of {g} ms in a burst of {len} lost packets"
        );
    }

    // Concealment is used: where single or double losses fell on clear speech, the recording
    // still sounds (nothing written, or zeros, would leave these frames silent).
    let short_lost: Vec<usize> = runs
        .iter()
        .filter(|r| r.1 <= 2)
        .flat_map(|&(k, len)| 2 * k..2 * (k + len))
        .filter(|&f| f < n && expected[f] > -30.0)
        .collect();
    let silent = short_lost.iter().filter(|&&f| recorded[f] < -60.0).count();
    eprintln!(
        "{} speech frames lost in short bursts, {silent} of them silent in the recording",
        short_lost.len()
    );
    assert!(
        short_lost.len() >= 20,
        "too few to judge: {}",
        short_lost.len()
    );
    assert!(
        silent * 10 <= short_lost.len(),
        "{silent} of {} lost speech frames silent: loss not concealed",
        short_lost.len()
    );

    // The gap check itself can fail: the same recording with 80 ms cut out during speech.
    let speaking = (150..n - 8)
        .find(|&f| masked[f..f + 8].iter().all(|v| *v > -30.0))
        .expect("a stretch of speech");
    let mut holed = recorded.to_vec();
    holed[speaking..speaking + 8].fill(-70.0);
    let holed_gap = audio::longest_gap_during_speech(&masked, &holed);
    assert!(holed_gap >= 80, "an 80 ms hole is seen: {holed_gap} ms");

    assert!(
        gap <= 60,
        "gap of {gap} ms in the participant track at 10 % loss"
    );
}

/// Mean power (dB re full scale) of the recording's 10 ms frames where the clean speech is
/// silent for ±50 ms, from `from` frames into the sent signal.
fn noise_floor_db(clean_env: &[f32], rec: &[f32], offset: usize, from: usize) -> (f32, usize) {
    let env = audio::envelope(48_000, &rec[offset..]);
    let quiet: Vec<f32> = (from.max(5)..clean_env.len().saturating_sub(5))
        .filter(|&f| clean_env[f - 5..=f + 5].iter().all(|v| *v < -60.0))
        .filter_map(|f| env.get(f).map(|db| 10f32.powf(db / 10.0)))
        .collect();
    let p = quiet.iter().sum::<f32>() / quiet.len().max(1) as f32;
    (10.0 * p.max(1e-12).log10(), quiet.len())
}

async fn record_noisy(server: &Server, packets: &[bytes::Bytes], dir: &Path) -> Vec<f32> {
    let mut p = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    p.stream(packets).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.hang_up().await;
    let path = p.download("participant", dir).await;
    audio::read_wav(&path).1
}

/// Speech in stationary pink noise at 10 dB SNR, recorded with `[recording] noise_suppression`
/// on and off: between words the suppressed track is at least 20 dB quieter (measured here:
/// 32.5 dB, -33.3 -> -65.9 dBFS; README "Noise suppression").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_suppression_lowers_the_noise_floor_between_words() {
    const MIN_REDUCTION_DB: f32 = 20.0;
    let (on, off) = tokio::join!(
        Server::start(&[]),
        Server::start(&[("EARSHOT_RECORDING_NOISE_SUPPRESSION", "false")])
    );
    let speech = speech();
    let lead = 48_000;
    let total = lead + speech.len();
    let raw = noise::pink(total, 0x5EED);
    let g = noise::noise_gain(&speech, &raw[lead..], 10.0);
    let mut clean = vec![0f32; total];
    clean[lead..].copy_from_slice(&speech);
    let sent: Vec<f32> = clean.iter().zip(&raw).map(|(s, n)| s + g * n).collect();
    let packets = encode(
        &noise::to_i16(&sent),
        OpusSettings {
            fec: false,
            expected_loss_pct: 0,
            ..browser_opus()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let (rec_on, rec_off) = tokio::join!(
        record_noisy(&on, &packets, dir.path()),
        record_noisy(&off, &packets, dir.path())
    );
    let sent_env = audio::envelope(48_000, &sent);
    let clean_env = audio::envelope(48_000, &clean);
    let mut floors = Vec::new();
    for (label, rec) in [("on", &rec_on), ("off", &rec_off)] {
        let rec_env = audio::envelope(48_000, rec);
        let needle = &sent_env[..sent_env.len() - 20];
        let (pos, r) = audio::find(needle, &rec_env, 0);
        assert!(
            r > 0.8,
            "suppression {label}: track does not match what was sent (r={r:.3})"
        );
        // From 0.5 s on: RNNoise has had half a second of noise to settle.
        let (floor, frames) = noise_floor_db(&clean_env, rec, pos * 480, 50);
        eprintln!(
            "suppression {label}: noise floor {floor:.1} dBFS over {frames} quiet frames (r={r:.3})"
        );
        assert!(frames > 100, "too few quiet frames to judge: {frames}");
        floors.push(floor);
    }
    let reduction = floors[1] - floors[0];
    eprintln!("noise suppression lowers the floor by {reduction:.1} dB");
    assert!(
        reduction >= MIN_REDUCTION_DB,
        "noise suppression lowered the floor by only {reduction:.1} dB (want {MIN_REDUCTION_DB})"
    );
}
