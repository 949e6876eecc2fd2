//! A network namespace of the test's own, joined to the host by a veth pair on a /30 of the
//! benchmarking range 198.18.0.0/15 (RFC 2544), with a default route to the host side.
//!
//! Firefox never pairs with a 127.0.0.1 candidate (docs/FEATURES.md), so a Firefox test runs the
//! browser inside such a namespace and binds the server's HTTP and media to the host-side
//! address. Nothing is routed beyond the pair (the host does not forward), so no packet leaves
//! the machine. Needs root (CAP_NET_ADMIN) and `ip` from iproute2.
//!
//! Names carry the creating process id (`earshot-mx-<pid>`, links `emx<pid>h`/`emx<pid>n`), so
//! concurrent test processes do not collide and leftovers of a killed run (whose process is
//! gone) are removed by the next run.

use std::net::Ipv4Addr;
use std::process::Command;

const PREFIX: &str = "earshot-mx-";

pub struct Netns {
    pub name: String,
    /// The host side of the pair: bind servers here.
    pub host_ip: Ipv4Addr,
    /// The namespace side: the address the browser's host candidate has.
    pub ns_ip: Ipv4Addr,
    host_link: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn host_link(pid: u32) -> String {
    format!("emx{pid}h")
}

/// Removes namespaces (and their host links) left by test processes that no longer run.
fn reap_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // a live test process owns it
        }
        let _ = ip(&["netns", "del", name]);
        let _ = ip(&["link", "del", &host_link(pid)]);
    }
}

impl Netns {
    /// Creates the namespace and the pair, or panics saying why (not root, no `ip`).
    pub fn create() -> Netns {
        reap_leftovers();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}");
        // One /30 of 198.18.0.0/15 per process id: .1 host, .2 namespace.
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pid % 32_768) * 4;
        let host_ip = Ipv4Addr::from(base + 1);
        let ns_ip = Ipv4Addr::from(base + 2);
        let host = host_link(pid);
        let peer = format!("emx{pid}n");
        let ns = Netns {
            name: name.clone(),
            host_ip,
            ns_ip,
            host_link: host.clone(),
        };
        let (h, n) = (format!("{host_ip}/30"), format!("{ns_ip}/30"));
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", &name,
            ],
            &["addr", "add", &h, "dev", &host],
            &["link", "set", &host, "up"],
            &["-n", &name, "addr", "add", &n, "dev", &peer],
            &["-n", &name, "link", "set", &peer, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
            &[
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &host_ip.to_string(),
            ],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                panic!(
                    "creating the test network namespace failed (it needs root / CAP_NET_ADMIN \
                     and iproute2): {e}"
                );
            }
        }
        ns
    }

    /// Takes the pair's host side down (`up = false`: nothing passes between the host and the
    /// namespace) or up again.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        if let Err(e) = ip(&["link", "set", &self.host_link, state]) {
            panic!("setting the namespace link {state}: {e}");
        }
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the host end.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}
