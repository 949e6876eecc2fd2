//! The fuzz targets: each feeds arbitrary bytes to the real parsing code, the way the server
//! receives them. The config target lives in the root package (`benches/fuzz/config_target.rs`,
//! an example that includes the binary's `src/config.rs`).

use std::collections::HashMap;

use earshot_media::agent::audio::Downlink;
use earshot_media::agent::protocol::{AgentMessage, parse};
use earshot_media::engine::AgentAudioFormat;
use earshot_media::peer::{PeerError, inspect_offer, normalise_candidate};
use earshot_media::prompt::load_prompt_from_bytes;

use crate::api::{ApiHarness, TrickleHarness};
use crate::engine::{Harness, Target, signature};

/// Every target of this crate (the config target is the root package's `fuzz_config` example).
pub fn all() -> &'static [Target] {
    &TARGETS
}

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

static TARGETS: [Target; 6] = [
    Target {
        name: "sdp",
        about: "WHIP offer inspection: media::peer::inspect_offer (the webrtc library's SDP parser inside)",
        dict: SDP_DICT,
        max_len: 8192,
        make: || Box::new(SdpHarness),
    },
    Target {
        name: "sdpfrag",
        about: "trickle ICE over HTTP: PATCH /v1/invites/{token}/whip/{peer} (signaling's sdpfrag parser, then candidate normalisation and the library's candidate parser)",
        dict: CANDIDATE_DICT,
        max_len: 4096,
        make: || Box::new(TrickleHarness::new()),
    },
    Target {
        name: "candidate",
        about: "candidate normalisation: media::peer::normalise_candidate, then the library's ICE candidate parser as add_ice_candidate runs it",
        dict: CANDIDATE_DICT,
        max_len: 1024,
        make: || Box::new(CandidateHarness),
    },
    Target {
        name: "agent",
        about: "agent protocol messages: media::agent::protocol::parse, media payloads decoded by agent::audio::Downlink",
        dict: AGENT_DICT,
        max_len: 8192,
        make: || Box::new(AgentHarness::default()),
    },
    Target {
        name: "api",
        about: "API bodies through signaling's real router (tower oneshot): invites, scripts, consent, pause, WHIP offer, trickle, session filters, arbitrary URIs",
        dict: API_DICT,
        max_len: 8192,
        make: || Box::new(ApiHarness::new()),
    },
    Target {
        name: "prompt",
        about: "prompt audio bytes (WAV/FLAC) through symphonia: media::prompt::load_prompt_from_bytes",
        dict: PROMPT_DICT,
        max_len: 65536,
        make: || Box::new(PromptHarness),
    },
];

// ---------------------------------------------------------------------------------------------
// sdp
// ---------------------------------------------------------------------------------------------

fn peer_error(e: &PeerError) -> String {
    signature("err", &e.to_string())
}

struct SdpHarness;

impl Harness for SdpHarness {
    fn run(&mut self, data: &[u8]) -> String {
        // The WHIP route refuses a body that is not UTF-8 before the media plane sees it.
        let Ok(text) = std::str::from_utf8(data) else {
            return inspect(&String::from_utf8_lossy(data));
        };
        inspect(text)
    }
}

fn inspect(text: &str) -> String {
    match inspect_offer(text) {
        Ok((_, pt)) => format!("ok:pt{}", pt / 32),
        Err(e) => peer_error(&e),
    }
}

const SDP_DICT: &[&[u8]] = &[
    b"v=0\r\n",
    b"o=- 3805741951836410349 2 IN IP4 127.0.0.1\r\n",
    b"s=-\r\n",
    b"t=0 0\r\n",
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    b"m=audio ",
    b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    b"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"c=IN IP6 ::1\r\n",
    b"a=rtpmap:111 opus/48000/2\r\n",
    b"opus/48000",
    b"a=rtpmap:",
    b"a=fmtp:111 minptime=10;useinbandfec=1\r\n",
    b"a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n",
    b"a=ice-ufrag:q7Xh\r\n",
    b"a=ice-pwd:Jf3vB2mQ9zL0pR8sT1uW4yA6\r\n",
    b"a=ice-options:trickle\r\n",
    b"a=fingerprint:sha-256 8D:2B:1F:6A\r\n",
    b"a=setup:actpass\r\n",
    b"a=mid:0\r\n",
    b"a=group:BUNDLE 0\r\n",
    b"a=msid-semantic: WMS\r\n",
    b"a=ssrc:1732846380 cname:x\r\n",
    b"a=ssrc-group:FID 1 2\r\n",
    b"a=msid:a b\r\n",
    b"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n",
    b"a=rtcp-fb:111 transport-cc\r\n",
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n",
    b"a=rtcp-mux\r\n",
    b"a=sendrecv\r\n",
    b"a=recvonly\r\n",
    b"a=inactive\r\n",
    b"a=end-of-candidates\r\n",
    b"a=simulcast:send 1;2\r\n",
    b"a=rid:1 send\r\n",
    b"b=AS:64\r\n",
    b"b=",
    b"i=",
    b"u=",
    b"e=",
    b"p=",
    b"k=",
    b"r=7d 1h 0 25h\r\n",
    b"z=2882844526 -1h 2898848070 0\r\n",
    b"t=",
    b"a=",
    b"m=",
    b"\r\n",
    b" ",
    b"/",
    b":",
];

// ---------------------------------------------------------------------------------------------
// candidate
// ---------------------------------------------------------------------------------------------

/// What the server does with one trickled candidate: normalise it, then (as webrtc's
/// `add_ice_candidate` and rtc's `add_remote_candidate` do) parse it as an ICE candidate.
pub fn candidate_outcome(candidate: &str) -> String {
    match normalise_candidate(candidate) {
        Ok(None) => "skip".to_owned(),
        Ok(Some(c)) => {
            let value = c.strip_prefix("candidate:").unwrap_or(&c);
            match rtc::ice::candidate::unmarshal_candidate(value) {
                Ok(parsed) => format!("ok:{}", parsed.candidate_type()),
                Err(e) => signature("lib", &e.to_string()),
            }
        }
        Err(e) => peer_error(&e),
    }
}

struct CandidateHarness;

impl Harness for CandidateHarness {
    fn run(&mut self, data: &[u8]) -> String {
        candidate_outcome(&String::from_utf8_lossy(data))
    }
}

const CANDIDATE_DICT: &[&[u8]] = &[
    b"a=candidate:",
    b"candidate:",
    b"a=end-of-candidates",
    b"end-of-candidates",
    b"a=ice-ufrag:q7Xh\r\n",
    b"a=ice-pwd:Jf3vB2mQ9zL0pR8sT1uW4yA6\r\n",
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    b"a=mid:0\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"1 1 udp 2122260223 127.0.0.1 50000 typ host",
    b" typ host",
    b" typ srflx",
    b" typ prflx",
    b" typ relay",
    b" raddr 0.0.0.0 rport 0",
    b" raddr ",
    b" rport ",
    b" generation 0",
    b" network-id 1 network-cost 10",
    b" tcptype passive",
    b" tcptype active",
    b" tcptype so",
    b" udp ",
    b" tcp ",
    b" UDP ",
    b"abcd-1234.local",
    b".local",
    b"::1",
    b"[::1]",
    b"fe80::1%eth0",
    b"127.0.0.1",
    b"255.255.255.255",
    b"0.0.0.0",
    b"\r\n",
    b" ",
];

// ---------------------------------------------------------------------------------------------
// agent
// ---------------------------------------------------------------------------------------------

/// Parses a message and, for `media`, decodes its payload as the bridge does.
#[derive(Default)]
struct AgentHarness {
    downlinks: HashMap<bool, Downlink>,
    out: Vec<i16>,
}

impl Harness for AgentHarness {
    fn run(&mut self, data: &[u8]) -> String {
        // WebSocket text frames are UTF-8; the bridge parses each one.
        let text = String::from_utf8_lossy(data);
        let mulaw = data.len() % 2 == 1;
        let msg = match parse(&text) {
            Ok(m) => m,
            Err(e) => return signature("err", &e.to_string()),
        };
        let format = if mulaw {
            AgentAudioFormat::Mulaw8k
        } else {
            AgentAudioFormat::L16k16
        };
        let downlink = match self.downlinks.entry(mulaw) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match Downlink::new(format) {
                Ok(d) => e.insert(d),
                Err(e) => return signature("downlink", &e.to_string()),
            },
        };
        let out = &mut self.out;
        out.clear();
        let outcome = match msg {
            AgentMessage::Media { payload } => match downlink.push_payload(&payload, out) {
                Ok(()) => "media:ok".to_owned(),
                Err(e) => signature("media", &e.to_string()),
            },
            AgentMessage::Clear => downlink.reset().map_or_else(
                |e| signature("clear", &e.to_string()),
                |()| "clear".to_owned(),
            ),
            AgentMessage::End => downlink
                .finish_segment(out)
                .map_or_else(|e| signature("end", &e.to_string()), |()| "end".to_owned()),
            AgentMessage::Mark { .. } => "mark".to_owned(),
            AgentMessage::Transcript(t) => format!(
                "transcript:{:?}:{}:{}",
                t.role,
                t.start_ms.is_some(),
                t.end_ms.is_some()
            ),
            AgentMessage::Other { .. } => "other".to_owned(),
        };
        // Each case starts a fresh segment, so a replay gives the same result.
        let _ = downlink.reset();
        outcome
    }
}

const AGENT_DICT: &[&[u8]] = &[
    br#"{"event":"media","streamSid":"MZ1","media":{"payload":"AAA="}}"#,
    br#"{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}"#,
    br#"{"event":"clear"}"#,
    br#"{"event":"end"}"#,
    br#"{"event":"transcript","role":"ai","text":"hi","final":true,"start_ms":0,"end_ms":10}"#,
    br#""event":"#,
    br#""media""#,
    br#""mark""#,
    br#""clear""#,
    br#""end""#,
    br#""transcript""#,
    br#""connected""#,
    br#""start""#,
    br#""stop""#,
    br#""media":{"payload":""#,
    br#""payload":"#,
    br#""mark":{"name":"#,
    br#""name":"#,
    br#""role":"ai""#,
    br#""role":"participant""#,
    br#""text":"#,
    br#""final":false"#,
    br#""start_ms":"#,
    br#""end_ms":"#,
    br#""streamSid":"MZ00000000000000000000000000000000""#,
    br#""sequenceNumber":"1""#,
    b"AAAA",
    b"////",
    b"=",
    b"==",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"-0.0",
    b"1e400",
    b",",
    b":",
    b"{",
    b"}",
];

// ---------------------------------------------------------------------------------------------
// api (see api.rs for the harness)
// ---------------------------------------------------------------------------------------------

const API_DICT: &[&[u8]] = &[
    b"invites\n",
    b"scripts\n",
    b"consent\n",
    b"pause\n",
    b"whip\n",
    b"trickle\n",
    b"sessions\n",
    b"uri\n",
    b"webhooks\n",
    b"exports\n",
    br#""url":"http://127.0.0.1:9/h""#,
    br#""events":["session.completed","export.ready"]"#,
    b"state=completed",
    b"from=2026-01-01",
    b"to=2026-01-01T00:00:00Z",
    b"ids=ses_x,ses_y",
    br#""campaign_id":"cmp_default""#,
    br#""script_id":"scr_default""#,
    br#""metadata":{"k":"v"}"#,
    br#""name":"x""#,
    br#""prompts":[{"id":"q1","text":"Hello?","audio":"/etc/hostname"}]"#,
    br#""id":"q1""#,
    br#""text":"t""#,
    br#""audio":"/""#,
    br#""agent":{"url":"ws://127.0.0.1:9/agent","audio_format":"mulaw/8000"}"#,
    br#""url":"ws://h/""#,
    br#""audio_format":"l16/16000""#,
    br#""recording":{"enabled":false,"noise_suppression":true,"quality":"ultra"}"#,
    br#""quality":"standard""#,
    br#""enabled":true"#,
    br#""accept":true"#,
    br#""accept":false"#,
    br#""cause":"tab_closed""#,
    br#""cause":"button""#,
    b"campaign=cmp_default",
    b"state=in_progress",
    b"limit=",
    b"&",
    b"%00",
    b"%ff",
    b"/v1/sessions/",
    b"/v1/invites/",
    b"/whip/",
    b"/recordings/mix.mp3",
    b"/live",
    b"/transcript",
    b"ses_",
    b"peer_",
    b"a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n",
    b"a=end-of-candidates\r\n",
    b"\\u0000",
    b"null",
    b"[]",
    b"{}",
    b",",
    b":",
    b"\"",
];

// ---------------------------------------------------------------------------------------------
// prompt
// ---------------------------------------------------------------------------------------------

struct PromptHarness;

impl Harness for PromptHarness {
    fn run(&mut self, data: &[u8]) -> String {
        // The extension a script's file name gives (symphonia probes the content either way).
        let ext = [Some("wav"), Some("flac"), None][data.len() % 3];
        match load_prompt_from_bytes(data, "fuzz", ext) {
            Ok(pcm) => format!("ok:{}", pcm.len().min(1) + usize::from(pcm.len() > 48_000)),
            Err(e) => signature("err", &e.to_string()),
        }
    }
}

const PROMPT_DICT: &[&[u8]] = &[
    b"RIFF",
    b"WAVE",
    b"fmt ",
    b"data",
    b"LIST",
    b"INFO",
    b"fact",
    b"cue ",
    b"RIFX",
    b"RF64",
    b"ds64",
    b"fLaC",
    // fmt chunk bodies: PCM 16-bit mono 8 kHz; float 32-bit stereo 48 kHz; mu-law; extensible.
    b"\x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00",
    b"\x10\x00\x00\x00\x03\x00\x02\x00\x80\xbb\x00\x00\x00\xdc\x05\x00\x08\x00\x20\x00",
    b"\x12\x00\x00\x00\x07\x00\x01\x00\x40\x1f\x00\x00\x40\x1f\x00\x00\x01\x00\x08\x00\x00\x00",
    b"\xfe\xff",
    // FLAC: STREAMINFO header (last block), a frame sync code.
    b"\x80\x00\x00\x22",
    b"\xff\xf8",
    b"\xff\xf9",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x01\x00",
    b"\x02\x00",
    b"\x08\x00",
    b"\x18\x00",
    b"\x20\x00",
    b"\x40\x00",
    b"\x44\xac\x00\x00",
    b"\x80\xbb\x00\x00",
    b"\x40\x1f\x00\x00",
];
