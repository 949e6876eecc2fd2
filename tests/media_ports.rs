//! Operators open a UDP port range in their firewall (`[media] udp_port_min/max`): every UDP
//! socket the server holds during a session, read from the kernel (`/proc/<pid>/net/udp` and
//! the process's descriptors), is inside it, on each configured address (`bind_ip` and
//! `extra_bind_ips`: one socket per interface and peer).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use earshot_media::codec::OpusSettings;
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server};

const MIN: u16 = 47_300;
const MAX: u16 = 47_320;

/// Local (address, port) of the UDP sockets process `pid` holds.
fn udp_ports(pid: u32) -> Vec<(std::net::IpAddr, u16)> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let (ip, port) = local.split_once(':').expect("address:port");
            let port = u16::from_str_radix(port, 16).expect("port");
            // IPv4 in /proc is the address's bytes in host (little-endian) order, in hex.
            let ip = match u32::from_str_radix(ip, 16) {
                Ok(v) if ip.len() == 8 => std::net::IpAddr::from(v.to_le_bytes()),
                _ => std::net::IpAddr::from([0u8; 16]),
            };
            ports.push((ip, port));
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_udp_sockets_stay_in_the_configured_range() {
    let (min, max) = (MIN.to_string(), MAX.to_string());
    let server = Server::start(&[
        ("EARSHOT_MEDIA_UDP_PORT_MIN", min.as_str()),
        ("EARSHOT_MEDIA_UDP_PORT_MAX", max.as_str()),
        ("EARSHOT_MEDIA_EXTRA_BIND_IPS", "[\"127.0.0.2\"]"),
    ])
    .await;
    assert!(
        udp_ports(server.pid()).is_empty(),
        "no UDP socket before a session"
    );
    let mut a = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let b = Participant::join(&server.base, ADMIN_TOKEN, None).await;
    a.stream(&encode(&vec![0i16; 48_000], OpusSettings::default()))
        .await;
    let ports = udp_ports(server.pid());
    eprintln!("server UDP ports with two sessions: {ports:?}");
    assert!(
        ports.iter().all(|(_, p)| (MIN..=MAX).contains(p)),
        "a UDP port outside {MIN}-{MAX}: {ports:?}"
    );
    // Each peer has a socket on each address.
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        let on = ports.iter().filter(|(a, _)| *a == ip).count();
        assert!(on >= 2, "{on} sockets on {ip}: {ports:?}");
    }
    a.hang_up().await;
    b.hang_up().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A STUN server standing for the NAT in front of a host: it answers every Binding request
/// with the public address `mapped` (as a NAT's outside address would be seen).
fn nat_stun_server(mapped: std::net::SocketAddrV4) -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            // A Binding request: type 0x0001, the magic cookie, a 12-byte transaction id.
            if n < 20 || buf[0..2] != [0x00, 0x01] || buf[4..8] != [0x21, 0x12, 0xA4, 0x42] {
                continue;
            }
            let mut answer = Vec::with_capacity(32);
            answer.extend_from_slice(&[0x01, 0x01, 0x00, 0x0C]); // success, 12 bytes
            answer.extend_from_slice(&buf[4..20]); // cookie and transaction id
            answer.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]); // XOR-MAPPED, IPv4
            answer.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
            let ip = u32::from(*mapped.ip()) ^ 0x2112_A442;
            answer.extend_from_slice(&ip.to_be_bytes());
            let _ = socket.send_to(&answer, from);
        }
    });
    addr
}

/// `[media] public_ip_stun`: the address the STUN server reports is what host candidates
/// announce (the socket stays on the private address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_address_comes_from_the_configured_stun_server() {
    let stun = nat_stun_server("203.0.113.9:40000".parse().expect("addr"));
    let stun = stun.to_string();
    let server = Server::start(&[("EARSHOT_MEDIA_PUBLIC_IP_STUN", stun.as_str())]).await;
    assert!(
        server.log().contains("public address from STUN"),
        "{}",
        server.log()
    );
    let (token, _) = server.invite().await;
    support::interview::open_and_consent(&server, &token).await;
    let r = server
        .http
        .post(server.url(&format!("/v1/invites/{token}/whip")))
        .header("content-type", "application/sdp")
        .body(support::sdp::OFFER)
        .send()
        .await
        .expect("whip");
    assert_eq!(r.status(), 201);
    let answer = r.text().await.expect("answer");
    let hosts: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .collect();
    assert!(!hosts.is_empty(), "{answer}");
    assert!(
        hosts.iter().all(|l| l.contains(" 203.0.113.9 ")),
        "host candidates announce the STUN-reported address: {hosts:?}"
    );
}

/// A STUN server that never answers stops the start with a message naming the key.
#[test]
fn a_silent_stun_server_stops_the_start() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("EARSHOT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("EARSHOT_MEDIA_PUBLIC_IP_STUN", &addr)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("media.public_ip_stun") && err.contains("no answer"),
        "{err}"
    );
}
