//! The UDP port a peer binds: an ephemeral one, or a free one of the configured range (webrtc
//! 0.21 has no port-range setting).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{PeerConfig, PeerError};

/// How many ports of a configured range are tried before giving up.
const MAX_BIND_ATTEMPTS: usize = 16;

/// Rotating start index into the configured port range, so successive peers do not all
/// probe the range from its first port.
static PORT_CURSOR: AtomicU32 = AtomicU32::new(0);

/// Candidate bind addresses: `ip:0` for an ephemeral port, else free-looking ports of the
/// range starting at a rotating cursor.
pub(super) fn bind_candidates(config: &PeerConfig) -> Result<Vec<SocketAddr>, PeerError> {
    let (min, max) = (config.udp_port_min, config.udp_port_max);
    if min == 0 && max == 0 {
        return Ok(vec![SocketAddr::new(config.bind_ip, 0)]);
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
        let addr = SocketAddr::new(config.bind_ip, port as u16);
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
            "no free UDP port in {min}-{max} on {}",
            config.bind_ip
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
        assert!(bind_candidates(&c).is_err());
        c.udp_port_min = 0;
        c.udp_port_max = 0;
        assert_eq!(bind_candidates(&c).expect("ok")[0].port(), 0);
    }
}
