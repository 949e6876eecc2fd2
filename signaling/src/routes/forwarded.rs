//! Where a request came from behind a reverse proxy: `X-Forwarded-For` is believed only from
//! the configured trusted proxies (`[server] trusted_proxies`), and then read from the right,
//! skipping trusted hops, so a client cannot pass itself off as another address by sending the
//! header itself. Everything that keys on the client's address (rate limits per address, the
//! recorded IP) sees the result as axum's `ConnectInfo`.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Addresses (`10.0.0.1`) or ranges (`10.0.0.0/8`, `fd00::/8`); an error names the entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is not an IP address or CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer itself unless it is a trusted proxy; then the rightmost
    /// address in `X-Forwarded-For` that is not a trusted proxy (the leftmost if all are). A
    /// malformed entry stops the walk at the last address known good.
    pub fn client_addr(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer.ip();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        SocketAddr::new(client, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).expect("parse");
        let proxy: SocketAddr = "10.1.2.3:5000".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.9:5000".parse().expect("addr");
        // Through the proxy: the client it saw.
        assert_eq!(
            t.client_addr(proxy, &headers(&["203.0.113.7"])).ip(),
            ip("203.0.113.7")
        );
        // A client that sends its own header through the proxy cannot choose its address:
        // the proxy appended the one it saw, which is read first.
        assert_eq!(
            t.client_addr(proxy, &headers(&["1.2.3.4, 203.0.113.7"]))
                .ip(),
            ip("203.0.113.7")
        );
        // Two trusted hops are skipped; several headers are one list.
        assert_eq!(
            t.client_addr(proxy, &headers(&["203.0.113.7, 192.0.2.1", "10.9.9.9"]))
                .ip(),
            ip("203.0.113.7")
        );
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(
            t.client_addr(stranger, &headers(&["203.0.113.7"])),
            stranger
        );
        // No header, or garbage: the proxy itself, or the last good hop.
        assert_eq!(t.client_addr(proxy, &HeaderMap::new()).ip(), proxy.ip());
        assert_eq!(
            t.client_addr(proxy, &headers(&["203.0.113.7, garbage"]))
                .ip(),
            proxy.ip()
        );
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().expect("addr");
        assert_eq!(
            t.client_addr(mapped, &headers(&["203.0.113.7"])).ip(),
            ip("203.0.113.7")
        );
        // Nobody trusted: never read.
        assert_eq!(
            TrustedProxies::default().client_addr(proxy, &headers(&["203.0.113.7"])),
            proxy
        );
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
    }
}
