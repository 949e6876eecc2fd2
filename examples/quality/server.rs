//! The Earshot server under measurement: a release build of `earshot serve` started next to
//! this example with its own data directory and log, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ADMIN;

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    _data: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    pub(crate) async fn start(env: &[(&str, &str)]) -> Server {
        let exe = std::env::current_exe().expect("own path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("earshot"))
            .expect("target dir");
        assert!(
            bin.exists(),
            "{} missing: cargo build --release --bin earshot",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let data = tempfile::tempdir().expect("data dir");
        let log = data.path().join("server.log");
        let file = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .env("EARSHOT_ADMIN_TOKEN", ADMIN)
        .env("EARSHOT_LOG", "info,earshot_media=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn earshot");
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _data: data,
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
