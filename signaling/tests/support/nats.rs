//! A real `nats-server` (Debian package `nats-server`, see scripts/install-deps.sh) run by a
//! test as a child process on a free loopback port, in its own temporary directory; killed
//! when dropped. Its monitoring port tells which subjects have subscribers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    /// The HTTP monitoring port (`/subsz`).
    monitor_port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The program: on the PATH, or where Debian installs it (`/usr/sbin`, not on every PATH).
fn program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    let program = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    assert!(
        program.is_file(),
        "nats-server is not installed (apt-get install nats-server, or scripts/install-deps.sh --test)"
    );
    program
}

impl NatsServer {
    /// A server on a free loopback port, accepting connections when this returns.
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            monitor_port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`Self::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("a log file");
        let child = Command::new(program())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} within 10 s (log: {})",
                self.port,
                std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl NatsServer {
    /// How many subscriptions the server holds on exactly `subject` (its `/subsz` report).
    pub fn subscriptions_on(&self, subject: &str) -> usize {
        let mut conn =
            TcpStream::connect(("127.0.0.1", self.monitor_port)).expect("the monitoring port");
        write!(
            conn,
            "GET /subsz?subs=1&limit=100000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .expect("a request");
        let mut reply = String::new();
        conn.read_to_string(&mut reply).expect("a reply");
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let report: serde_json::Value = serde_json::from_str(body).expect("a JSON report");
        report["subscriptions_list"].as_array().map_or(0, |subs| {
            subs.iter().filter(|s| s["subject"] == subject).count()
        })
    }

    /// Waits (up to 10 s) until `subject` has `n` subscriptions.
    pub fn wait_subscriptions(&self, subject: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.subscriptions_on(subject) != n {
            assert!(
                Instant::now() < deadline,
                "{subject} has {} subscriptions, not {n}",
                self.subscriptions_on(subject)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
