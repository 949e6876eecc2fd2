//! Operators open a UDP port range in their firewall (`[media] udp_port_min/max`): every UDP
//! socket the server holds during a session, read from the kernel (`/proc/<pid>/net/udp` and
//! the process's descriptors), is inside it.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use earshot_media::codec::OpusSettings;
use support::participant::{Participant, encode};
use support::{ADMIN_TOKEN, Server};

const MIN: u16 = 47_300;
const MAX: u16 = 47_320;

/// Local ports of the UDP sockets process `pid` holds.
fn udp_ports(pid: u32) -> Vec<u16> {
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
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .expect("port");
            ports.push(port);
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
    assert!(ports.len() >= 2, "{ports:?}");
    assert!(
        ports.iter().all(|p| (MIN..=MAX).contains(p)),
        "a UDP port outside {MIN}-{MAX}: {ports:?}"
    );
    a.hang_up().await;
    b.hang_up().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}
