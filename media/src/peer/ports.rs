//! The UDP ports a peer binds, one on each configured address (interface): ephemeral ones, or
//! free ones of the configured range (webrtc 0.21 has no port-range setting).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{PeerConfig, PeerError};

/// How many ports of a configured range are tried before giving up.
const MAX_BIND_ATTEMPTS: usize = 16;

/// Rotating start index into the configured port range, so successive peers do not all
/// probe the range from its first port.
static PORT_CURSOR: AtomicU32 = AtomicU32::new(0);

/// Bind attempts, each one address per configured IP (`bind_ip`, then `extra_bind_ips`): `ip:0`
/// for an ephemeral port, else free-looking ports of the range starting at a rotating cursor.
pub(super) fn bind_attempts(config: &PeerConfig) -> Result<Vec<Vec<SocketAddr>>, PeerError> {
    let ips = std::iter::once(config.bind_ip).chain(config.extra_bind_ips.iter().copied());
    let per_ip = ips
        .map(|ip| bind_candidates(config, ip))
        .collect::<Result<Vec<_>, _>>()?;
    let attempts = per_ip.iter().map(Vec::len).min().unwrap_or(0);
    Ok((0..attempts)
        .map(|i| per_ip.iter().map(|c| c[i]).collect())
        .collect())
}

/// Candidate bind addresses on `ip`.
fn bind_candidates(config: &PeerConfig, ip: IpAddr) -> Result<Vec<SocketAddr>, PeerError> {
    let (min, max) = (config.udp_port_min, config.udp_port_max);
    if min == 0 && max == 0 {
        return Ok(vec![SocketAddr::new(ip, 0)]);
    }
    if min == 0 || max < min {
        return Err(PeerError::Internal(format!(
            "invalid UDP port range {min}-{max}"
        )));
    }
    let span = u32::from(max - min) + 1;
    let start = PORT_CURSOR.fetch_add(1, Ordering::Relaxed) % span;
    let mut out = Vec::new();
    for i in 0..span {
        let port = min as u32 + (start + i) % span;
        let addr = SocketAddr::new(ip, port as u16);
        // Probe: the library reports a failed bind only as a failed build, which is costlier.
        if UdpSocket::bind(addr).is_ok() {
            out.push(addr);
            if out.len() >= MAX_BIND_ATTEMPTS {
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(PeerError::Internal(format!(
            "no free UDP port in {min}-{max} on {ip}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_is_validated() {
        let mut c = PeerConfig {
            udp_port_min: 5000,
            udp_port_max: 4000,
            ..Default::default()
        };
        assert!(bind_attempts(&c).is_err());
        c.udp_port_min = 0;
        c.udp_port_max = 0;
        assert_eq!(bind_attempts(&c).expect("ok")[0][0].port(), 0);
    }

    #[test]
    fn every_address_gets_a_port_of_the_range() {
        let c = PeerConfig {
            extra_bind_ips: vec![IpAddr::from([127, 0, 0, 2])],
            udp_port_min: 47_300,
            udp_port_max: 47_310,
            ..Default::default()
        };
        let attempts = bind_attempts(&c).expect("ok");
        assert!(!attempts.is_empty());
        for a in attempts {
            let ips: Vec<IpAddr> = a.iter().map(SocketAddr::ip).collect();
            assert_eq!(ips, [c.bind_ip, IpAddr::from([127, 0, 0, 2])]);
            assert!(a.iter().all(|s| (47_300..=47_310).contains(&s.port())));
        }
    }
}
