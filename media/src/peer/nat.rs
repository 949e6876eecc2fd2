//! The 1:1 NAT mapping of host candidates (`nat_1to1_ips`): webrtc 0.21 keeps the setting but
//! never applies it, so the answer SDP is rewritten here.

use std::net::IpAddr;

use super::PeerError;

/// One parsed `nat_1to1_ips` entry.
pub(super) struct NatMapping {
    public: IpAddr,
    private: Option<IpAddr>,
}

pub(super) fn parse_nat_mappings(entries: &[String]) -> Result<Vec<NatMapping>, PeerError> {
    entries
        .iter()
        .map(|entry| {
            let bad = || PeerError::Internal(format!("invalid nat_1to1_ips entry {entry:?}"));
            let (public, private) = match entry.split_once('/') {
                Some((p, q)) => (p.trim(), Some(q.trim())),
                None => (entry.trim(), None),
            };
            Ok(NatMapping {
                public: public.parse().map_err(|_| bad())?,
                private: match private {
                    Some(q) => Some(q.parse().map_err(|_| bad())?),
                    None => None,
                },
            })
        })
        .collect()
}

fn map_host_ip(ip: IpAddr, mappings: &[NatMapping]) -> Option<IpAddr> {
    mappings
        .iter()
        .find(|m| m.private == Some(ip))
        .or_else(|| {
            mappings
                .iter()
                .find(|m| m.private.is_none() && m.public.is_ipv4() == ip.is_ipv4())
        })
        .map(|m| m.public)
}

/// Rewrites the address of host candidates (`a=candidate:... typ host`) per the 1:1 NAT
/// mapping. The socket stays bound to the private address; only what the browser is told
/// changes, which is what a 1:1 NAT needs.
pub(super) fn apply_nat_1to1(sdp: &str, mappings: &[NatMapping]) -> String {
    if mappings.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let is_host = fields
                .iter()
                .position(|f| *f == "typ")
                .and_then(|i| fields.get(i + 1))
                .is_some_and(|t| *t == "host");
            if is_host
                && let Some(ip) = fields.get(4).and_then(|f| f.parse::<IpAddr>().ok())
                && let Some(public) = map_host_ip(ip, mappings)
            {
                let public = public.to_string();
                fields[4] = &public;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(ending);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rewrites_only_host_candidates() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 1.1.1.1 50001 typ srflx raddr 10.0.0.5 rport 50000\r\n";
        let m = parse_nat_mappings(&["203.0.113.7".to_owned()]).expect("valid");
        let out = apply_nat_1to1(sdp, &m);
        assert!(out.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\n"));
        assert!(out.contains("1.1.1.1 50001 typ srflx"));
        let m = parse_nat_mappings(&["203.0.113.7/10.0.0.6".to_owned()]).expect("valid");
        assert_eq!(apply_nat_1to1(sdp, &m), sdp);
        assert!(parse_nat_mappings(&["nope".to_owned()]).is_err());
    }
}
