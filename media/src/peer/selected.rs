//! Which path a connected peer uses: the type (host, srflx, prflx, relay) and transport of the
//! client's candidate in the selected ICE pair. Operators see from it how many participants
//! need the TURN relay (F11 observability).
//!
//! The library's statistics name the selected pair, but register only trickled remote
//! candidates; for candidates that came in the offer the client's address (where this peer's
//! media goes) is looked up among the offer's `a=candidate` lines instead.

use std::net::SocketAddr;

use rtc::peer_connection::transport::RTCIceCandidateType;
use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};

/// The client's side of the selected candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedPath {
    /// `host`, `srflx`, `prflx` or `relay` (RFC 8445 §5.1.1; a client address the server
    /// learned only from a check is peer-reflexive).
    pub candidate_type: &'static str,
    /// `udp` or `tcp`: how the candidate's packets reach this server.
    pub protocol: &'static str,
}

/// The selected pair's remote candidate in a statistics report, if a pair is selected and its
/// remote candidate was trickled (registered in the statistics).
pub(crate) fn from_stats(report: &RTCStatsReport) -> Option<SelectedPath> {
    let pair_id = &report.transport()?.selected_candidate_pair_id;
    let pair = report.candidate_pairs().find(|p| &p.stats.id == pair_id)?;
    let remote_id = pair.remote_candidate_id.as_str();
    report.iter().find_map(|e| match e {
        RTCStatsReportEntry::RemoteCandidate(c)
            if c.stats.id == remote_id
                || c.stats.id.strip_prefix("RTCRemoteIceCandidate_") == Some(remote_id) =>
        {
            Some(SelectedPath {
                candidate_type: match c.candidate_type {
                    RTCIceCandidateType::Host => "host",
                    RTCIceCandidateType::Srflx => "srflx",
                    RTCIceCandidateType::Prflx => "prflx",
                    RTCIceCandidateType::Relay => "relay",
                    _ => "unknown",
                },
                protocol: protocol(&c.protocol),
            })
        }
        _ => None,
    })
}

/// The candidate of `sdp` (its `a=candidate` lines) at `addr`; peer-reflexive if none is.
pub(crate) fn from_sdp(sdp: &str, addr: SocketAddr) -> SelectedPath {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .find_map(|c| {
            // foundation component transport priority address port "typ" type ...
            let f: Vec<&str> = c.split_whitespace().collect();
            let (transport, ip, port, typ) = (f.get(2)?, f.get(4)?, f.get(5)?, f.get(7)?);
            let at = SocketAddr::new(ip.parse().ok()?, port.parse().ok()?);
            (at == addr).then(|| SelectedPath {
                candidate_type: match *typ {
                    "host" => "host",
                    "srflx" => "srflx",
                    "prflx" => "prflx",
                    "relay" => "relay",
                    _ => "unknown",
                },
                protocol: protocol(transport),
            })
        })
        .unwrap_or(SelectedPath {
            candidate_type: "prflx",
            protocol: "udp",
        })
}

fn protocol(transport: &str) -> &'static str {
    if transport.eq_ignore_ascii_case("tcp") {
        "tcp"
    } else {
        "udp"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_candidates_are_found_by_address() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 udp 2130706431 192.0.2.7 5000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 203.0.113.9 6000 typ srflx raddr 192.0.2.7 rport 5000\r\n\
                   a=candidate:3 1 udp 16777215 198.51.100.4 7000 typ relay raddr 0.0.0.0 rport 0\r\n";
        let at = |s: &str| from_sdp(sdp, s.parse().expect("addr"));
        assert_eq!(at("192.0.2.7:5000").candidate_type, "host");
        assert_eq!(at("203.0.113.9:6000").candidate_type, "srflx");
        assert_eq!(at("198.51.100.4:7000").candidate_type, "relay");
        // The right address on another port, or an address never signalled.
        assert_eq!(at("192.0.2.7:5001").candidate_type, "prflx");
        assert_eq!(at("[2001:db8::1]:5000").candidate_type, "prflx");
        assert_eq!(at("192.0.2.7:5000").protocol, "udp");
    }
}
