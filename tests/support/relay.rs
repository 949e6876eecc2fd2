//! A UDP relay on loopback that impairs a WebRTC client's media on its way to the server and
//! back: random and bursty loss (Gilbert-Elliott), delay with jitter (which reorders packets),
//! all from a seed so a run can be repeated. Kernel netem is not available here.
//!
//! One client 5-tuple: the relay listens on `addr` (put there in place of the server's host
//! candidate in the answer SDP, see [`rewrite_answer`]), learns the client's address from its
//! first datagram, and forwards to the server's real address from a socket of its own; the
//! server sees the relay's upstream socket as the client's (peer-reflexive) address, which an
//! ICE-lite server accepts as it accepts any browser behind a NAT.
//!
//! Only RTP is impaired (first byte 128..=191 and not an RTCP packet type, RFC 7983 / RFC 5761):
//! STUN consent checks, DTLS and RTCP pass at once and are never dropped, so a run measures what
//! loss does to the audio, not how long a DTLS retransmission takes. Loss decisions are drawn per
//! RTP packet in arrival order, delays from a second stream of the same seed, so the same seed
//! drops the same sequence numbers whatever the delays are (on loopback packets reach the relay
//! in the order they were sent).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    None,
    /// Each packet lost independently with this probability (0..=1).
    Random(f64),
    /// Gilbert-Elliott: a good and a bad state with their own loss probabilities; per packet
    /// the state moves good -> bad with probability `p` and bad -> good with `r`.
    GilbertElliott {
        p: f64,
        r: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

impl LossModel {
    /// Bursty loss of long-run rate `loss` (0..1) in bursts of `mean_burst` packets on average
    /// (the simple Gilbert model: nothing lost in the good state, everything in the bad one;
    /// burst lengths are geometric with mean `1 / r`).
    pub fn bursty(loss: f64, mean_burst: f64) -> LossModel {
        if loss <= 0.0 {
            return LossModel::None;
        }
        let r = 1.0 / mean_burst.max(1.0);
        LossModel::GilbertElliott {
            p: (loss * r / (1.0 - loss)).min(1.0),
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run loss rate the model gives.
    pub fn rate(&self) -> f64 {
        match *self {
            LossModel::None => 0.0,
            LossModel::Random(p) => p,
            LossModel::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                let bad = if p + r > 0.0 { p / (p + r) } else { 0.0 };
                bad * loss_bad + (1.0 - bad) * loss_good
            }
        }
    }
}

/// What happens to the RTP packets of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    pub loss: LossModel,
    /// Fixed delay added to every RTP packet.
    pub delay: Duration,
    /// Each RTP packet is held for an extra time drawn uniformly from `0..=jitter`,
    /// independently per packet: with `jitter` above the packet interval, later packets
    /// overtake earlier ones (reordering).
    pub jitter: Duration,
}

impl Impairment {
    pub const NONE: Impairment = Impairment {
        loss: LossModel::None,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    /// Bursty loss at `loss` (0..1, mean burst 2 packets) with `jitter_ms` of uniform jitter.
    pub fn lossy(loss: f64, jitter_ms: u64) -> Impairment {
        Impairment {
            loss: LossModel::bursty(loss, 2.0),
            delay: Duration::ZERO,
            jitter: Duration::from_millis(jitter_ms),
        }
    }
}

/// Counters of one direction (RTP only, except `passed`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectionStats {
    /// RTP packets received from the sender.
    pub rtp: u64,
    /// RTP packets dropped.
    pub dropped: u64,
    /// RTP packets forwarded.
    pub delivered: u64,
    /// RTP packets forwarded after one with a higher sequence number.
    pub reordered: u64,
    /// Other datagrams (STUN, DTLS, RTCP), forwarded at once.
    pub passed: u64,
    /// `bursts[n]`: runs of exactly `n` consecutive dropped RTP packets (index 0 unused; the
    /// last index counts runs of that length or more).
    pub bursts: Vec<u64>,
    /// Sequence number of the first RTP packet received.
    pub first_seq: Option<u16>,
    /// Sequence numbers of the dropped RTP packets, in order.
    pub dropped_seqs: Vec<u16>,
}

impl DirectionStats {
    pub fn loss_pct(&self) -> f64 {
        if self.rtp == 0 {
            0.0
        } else {
            100.0 * self.dropped as f64 / self.rtp as f64
        }
    }

    /// Length of the longest run of dropped packets.
    pub fn longest_burst(&self) -> usize {
        self.bursts.iter().rposition(|&n| n > 0).unwrap_or(0)
    }
}

const MAX_BURST_BIN: usize = 32;

/// SplitMix64: small, seedable, good enough for test impairments.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The loss and delay decisions of one direction (sans-IO, for the relay and for tests).
#[derive(Debug, Clone)]
pub struct Impairer {
    imp: Impairment,
    loss_rng: Rng,
    delay_rng: Rng,
    bad: bool,
    run: usize,
    highest: Option<u16>,
    pub stats: DirectionStats,
}

impl Impairer {
    pub fn new(imp: Impairment, seed: u64) -> Impairer {
        Impairer {
            imp,
            loss_rng: Rng::new(seed),
            delay_rng: Rng::new(seed ^ 0x5DEE_CE66_D1CE_4E5B),
            bad: false,
            run: 0,
            highest: None,
            stats: DirectionStats {
                bursts: vec![0; MAX_BURST_BIN + 1],
                ..Default::default()
            },
        }
    }

    /// The RTP packet `seq` in: `None` = dropped, `Some(d)` = forward after `d`.
    pub fn on_rtp(&mut self, seq: u16) -> Option<Duration> {
        self.stats.rtp += 1;
        self.stats.first_seq.get_or_insert(seq);
        let lost = match self.imp.loss {
            LossModel::None => false,
            LossModel::Random(p) => self.loss_rng.unit() < p,
            LossModel::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                let u = self.loss_rng.unit();
                self.bad = if self.bad { u >= r } else { u < p };
                let loss = if self.bad { loss_bad } else { loss_good };
                self.loss_rng.unit() < loss
            }
        };
        if lost {
            self.stats.dropped += 1;
            self.stats.dropped_seqs.push(seq);
            self.run += 1;
            return None;
        }
        self.end_run();
        let jitter = self.imp.jitter.as_secs_f64() * self.delay_rng.unit();
        Some(self.imp.delay + Duration::from_secs_f64(jitter))
    }

    fn end_run(&mut self) {
        if self.run > 0 {
            self.stats.bursts[self.run.min(MAX_BURST_BIN)] += 1;
            self.run = 0;
        }
    }

    /// An RTP packet with sequence number `seq` leaves the relay.
    pub fn on_delivered(&mut self, seq: u16) {
        self.stats.delivered += 1;
        match self.highest {
            Some(h) if (seq.wrapping_sub(h) as i16) < 0 => self.stats.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// Counters, with a burst still running counted as ended.
    pub fn snapshot(&self) -> DirectionStats {
        let mut s = self.stats.clone();
        if self.run > 0 {
            s.bursts[self.run.min(MAX_BURST_BIN)] += 1;
        }
        s
    }
}

/// RTP (not RTCP) by RFC 7983's first-byte ranges and RFC 5761's payload types.
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

fn rtp_seq(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[2], datagram[3]])
}

/// Replaces the address and port of every UDP host candidate (and the m-line port and `c=`
/// address) in `sdp` with `relay`; returns the new SDP and the first candidate's address,
/// the server's real one. `None` when the SDP has no UDP host candidate.
pub fn rewrite_answer(sdp: &str, relay: SocketAddr) -> Option<(String, SocketAddr)> {
    let mut server: Option<SocketAddr> = None;
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let eol = &line[body.len()..];
        let rewritten = if let Some(cand) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ host ...
            let mut f: Vec<String> = cand.split(' ').map(str::to_owned).collect();
            if f.len() >= 8 && f[2].eq_ignore_ascii_case("udp") && f[6] == "typ" && f[7] == "host" {
                let addr: SocketAddr = format!("{}:{}", f[4], f[5]).parse().ok()?;
                server.get_or_insert(addr);
                f[4] = relay.ip().to_string();
                f[5] = relay.port().to_string();
                Some(format!("a=candidate:{}", f.join(" ")))
            } else {
                None
            }
        } else if let Some(rest) = body.strip_prefix("m=audio ") {
            rest.split_once(' ')
                .map(|(_, tail)| format!("m=audio {} {tail}", relay.port()))
        } else if body.starts_with("c=IN IP4 ") {
            Some(format!("c=IN IP4 {}", relay.ip()))
        } else {
            None
        };
        match rewritten {
            Some(l) => {
                out.push_str(&l);
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    server.map(|s| (out, s))
}

/// A running relay; dropping it stops it.
pub struct Relay {
    /// Where the client sends (the candidate address written into the answer).
    pub addr: SocketAddr,
    /// The server's real address.
    pub upstream: SocketAddr,
    to_server: Arc<Mutex<Impairer>>,
    to_client: Arc<Mutex<Impairer>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay towards `upstream` on loopback. `seed` drives both directions (each
    /// from its own stream).
    pub async fn start(
        upstream: SocketAddr,
        to_server: Impairment,
        to_client: Impairment,
        seed: u64,
    ) -> io::Result<Relay> {
        assert!(
            upstream.ip().is_loopback(),
            "the relay only forwards on loopback, not to {upstream}"
        );
        let client_side = Arc::new(UdpSocket::bind((upstream.ip(), 0)).await?);
        let server_side = Arc::new(UdpSocket::bind((upstream.ip(), 0)).await?);
        let addr = client_side.local_addr()?;
        let up = Arc::new(Mutex::new(Impairer::new(to_server, seed)));
        let down = Arc::new(Mutex::new(Impairer::new(
            to_client,
            seed.rotate_left(17) ^ 0xA5A5_5A5A_F00D_CAFE,
        )));
        let client_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let tasks = vec![
            tokio::spawn(pump(
                Arc::clone(&client_side),
                Arc::clone(&server_side),
                Source::AnyClient(Arc::clone(&client_addr)),
                Dest::Fixed(upstream),
                Arc::clone(&up),
            )),
            tokio::spawn(pump(
                server_side,
                client_side,
                Source::Only(upstream),
                Dest::Learned(client_addr),
                Arc::clone(&down),
            )),
        ];
        Ok(Relay {
            addr,
            upstream,
            to_server: up,
            to_client: down,
            tasks,
        })
    }

    /// Starts a relay for the server's answer: returns it and the answer rewritten to it.
    pub async fn for_answer(
        answer: &str,
        to_server: Impairment,
        to_client: Impairment,
        seed: u64,
    ) -> io::Result<(Relay, String)> {
        let (_, upstream) = rewrite_answer(answer, "127.0.0.1:9".parse().expect("addr"))
            .ok_or_else(|| io::Error::other("answer has no UDP host candidate"))?;
        let relay = Relay::start(upstream, to_server, to_client, seed).await?;
        let (sdp, _) = rewrite_answer(answer, relay.addr).expect("rewritten once already");
        Ok((relay, sdp))
    }

    /// Counters of the client -> server direction.
    pub fn to_server(&self) -> DirectionStats {
        lock(&self.to_server).snapshot()
    }

    /// Counters of the server -> client direction.
    pub fn to_client(&self) -> DirectionStats {
        lock(&self.to_client).snapshot()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Source {
    /// Accept from anyone; the first sender becomes the client.
    AnyClient(Arc<Mutex<Option<SocketAddr>>>),
    Only(SocketAddr),
}

enum Dest {
    Fixed(SocketAddr),
    Learned(Arc<Mutex<Option<SocketAddr>>>),
}

async fn pump(
    rx: Arc<UdpSocket>,
    tx: Arc<UdpSocket>,
    source: Source,
    dest: Dest,
    impairer: Arc<Mutex<Impairer>>,
) {
    let mut buf = vec![0u8; 2048];
    // (release time, arrival order) -> datagram
    let mut held: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    let send = |data: &[u8]| {
        let to = match &dest {
            Dest::Fixed(a) => Some(*a),
            Dest::Learned(a) => *lock(a),
        };
        if let Some(to) = to {
            // A full socket buffer is loss too; nothing to do about it here.
            let _ = tx.try_send_to(data, to);
        }
    };
    loop {
        let next = held.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            r = rx.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { return };
                match &source {
                    Source::AnyClient(client) => {
                        let mut c = lock(client);
                        match *c {
                            None => *c = Some(from),
                            Some(known) if known != from => continue, // one 5-tuple only
                            Some(_) => {}
                        }
                    }
                    Source::Only(addr) => {
                        if from != *addr {
                            continue;
                        }
                    }
                }
                let data = &buf[..n];
                if !is_rtp(data) {
                    lock(&impairer).stats.passed += 1;
                    send(data);
                    continue;
                }
                let decision = lock(&impairer).on_rtp(rtp_seq(data));
                match decision {
                    None => {}
                    Some(d) if d.is_zero() && held.is_empty() => {
                        lock(&impairer).on_delivered(rtp_seq(data));
                        send(data);
                    }
                    Some(d) => {
                        order += 1;
                        held.push(Reverse((Instant::now() + d, order, data.to_vec())));
                    }
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some(Reverse((t, _, _))) = held.peek() {
                    if *t > now {
                        break;
                    }
                    let Some(Reverse((_, _, data))) = held.pop() else { break };
                    lock(&impairer).on_delivered(rtp_seq(&data));
                    send(&data);
                }
            }
        }
    }
}
