//! The server's public address as a STUN server sees it (`[media] public_ip_stun`): one
//! Binding request (RFC 8489) from the media address, the XOR-MAPPED-ADDRESS of the answer.
//! Used at start behind a 1:1 NAT whose public address the operator does not want to write
//! down (the operator's own STUN server, e.g. the coturn of `turn-config/`; Earshot never asks
//! a public one by itself).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rtc::stun::message::{BINDING_REQUEST, Getter, Message, TransactionId};
use rtc::stun::xoraddr::XorMappedAddress;

/// Binding requests sent (one every `wait`) before giving up.
const ATTEMPTS: usize = 3;

/// Asks `server` from a socket on `bind_ip`; each attempt waits `wait` for the answer.
pub async fn public_ip(
    server: SocketAddr,
    bind_ip: IpAddr,
    wait: Duration,
) -> Result<IpAddr, String> {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))
        .await
        .map_err(|e| format!("binding a socket on {bind_ip}: {e}"))?;
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| format!("building a STUN request: {e}"))?;
    let mut buf = [0u8; 1500];
    for _ in 0..ATTEMPTS {
        socket
            .send_to(&request.raw, server)
            .await
            .map_err(|e| format!("sending to {server}: {e}"))?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            let Ok((n, from)) = received else { break };
            if from != server {
                continue;
            }
            let mut answer = Message::new();
            answer.raw = buf[..n].to_vec();
            if answer.decode().is_err() || answer.transaction_id != request.transaction_id {
                continue;
            }
            let mut mapped = XorMappedAddress::default();
            return mapped
                .get_from(&answer)
                .map(|()| mapped.ip)
                .map_err(|e| format!("{server} answered without a mapped address: {e}"));
        }
    }
    Err(format!("no answer from the STUN server {server}"))
}
