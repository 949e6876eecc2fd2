//! Reading a local process's CPU time and memory from /proc, and finding the process that
//! listens on a TCP port (/proc/net/tcp{,6} socket inodes matched against /proc/*/fd).
//! Linux only; elsewhere the readings are `None` and the report says so.

use std::path::Path;

/// Kernel clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on
/// every mainstream Linux ABI).
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time of all its threads so far, in milliseconds.
    pub cpu_ms: u64,
    /// The system (kernel) part of `cpu_ms`: sockets, timers, file writes.
    pub sys_ms: u64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub hwm_kib: u64,
}

/// (utime, stime) in clock ticks from the text of /proc/<pid>/stat.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces and ')': the fields
    // after the last ')' start with field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// A `Key:   1234 kB` value of /proc/<pid>/status, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = value.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// Socket inodes of listening TCP sockets on `port` in the text of /proc/net/tcp or tcp6.
pub fn parse_listening_inodes(net_tcp: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            let local = f.get(1)?;
            let st = f.get(3)?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *st == LISTEN && inode != 0).then_some(inode)
        })
        .collect()
}

/// The first three fields of /proc/loadavg ("1.20 0.90 0.75").
pub fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Reads one process's CPU time and memory; `None` if it is gone (or this is not Linux).
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_at(&Path::new("/proc").join(pid.to_string()))
}

/// This process's own reading (the generator: reported, never counted as server cost).
pub fn sample_self() -> Option<ProcSample> {
    sample_at(Path::new("/proc/self"))
}

fn sample_at(dir: &Path) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let (user, sys) = parse_stat_cpu_ticks(&stat)?;
    Some(ProcSample {
        cpu_ms: (user + sys) * 1000 / CLOCK_TICKS_PER_SEC,
        sys_ms: sys * 1000 / CLOCK_TICKS_PER_SEC,
        rss_kib: parse_status_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// The pid of the process listening on TCP `port` on this machine, if exactly one does and
/// its file descriptors are readable (same user or root).
pub fn find_listener(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(parse_listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let own = std::process::id();
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| t.to_str().map(|t| wanted.iter().any(|w| w == t)))
                .unwrap_or(false)
        });
        if holds {
            if found.is_some_and(|p| p != pid) {
                return None; // shared socket (fork): ambiguous, ask for --server-pid
            }
            found = Some(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_survive_odd_command_names() {
        let stat = "4242 (earshot (x) y) S 1 4242 4242 0 -1 4194560 12345 0 3 0 \
                    1500 250 0 0 20 0 9 0 100 123456789 2048 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some((1500, 250)));
        assert_eq!(parse_stat_cpu_ticks("4242 (earshot) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        // This process can read its own.
        if cfg!(target_os = "linux") {
            let s = sample_self().expect("own /proc entry");
            assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        }
    }

    #[test]
    fn status_values_in_kib() {
        let status = "Name:\tearshot\nVmPeak:\t  912340 kB\nVmHWM:\t   60512 kB\n\
                      VmRSS:\t   58000 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(58_000));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(60_512));
        assert_eq!(parse_status_kib(status, "Threads"), Some(9));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // A key that is only a prefix of another does not match it.
        assert_eq!(parse_status_kib(status, "Vm"), None);
    }

    #[test]
    fn listening_inode_of_a_port() {
        // 127.0.0.1:18090 (0x46AA) listening, an established connection on the same port,
        // another listener on 8080 (0x1F90).
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:46AA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98765 1 0000000000000000 100 0 0 10 0\n\
           1: 0100007F:46AA 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 98770 1 0000000000000000 20 4 30 10 -1\n\
           2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_listening_inodes(tcp, 18090), vec![98765]);
        assert_eq!(parse_listening_inodes(tcp, 8080), vec![11111]);
        assert!(parse_listening_inodes(tcp, 9999).is_empty());
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000000000000000000001000000:46AA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55555 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_listening_inodes(tcp6, 18090), vec![55555]);
    }

    #[test]
    fn finds_a_listener_in_this_process() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // Our own pid is skipped on purpose (the generator never measures itself), so a
        // listener only we hold is not found.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert_eq!(find_listener(port), None);
    }
}
