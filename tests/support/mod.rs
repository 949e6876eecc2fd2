//! Test support: a real `earshot` server process, a real headless Chromium driven over the
//! DevTools protocol, and audio analysis for asserting what recordings hold.
#![allow(dead_code)]

pub mod audio;
pub mod browser;
pub mod firefox;
pub mod interview;
pub mod moto;
/// A real `nats-server` (the same helper as signaling's tests).
#[path = "../../signaling/tests/support/nats.rs"]
pub mod nats;
pub mod netns;
pub mod noise;
pub mod participant;
pub mod pki;
pub mod probe;
pub mod pulse;
pub mod relay;
pub mod sdp;
pub mod short_interview;
pub mod tcp_bridge;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";
/// The variable that sets the admin token (an empty value: none, the server makes one).
pub const ADMIN_TOKEN_VAR: &str = "EARSHOT_ADMIN_TOKEN";

/// The six recordings of a session whose mix and MP3s were made at its end.
pub const RECORDING_FILES: [&str; 6] = [
    "participant.wav",
    "ai.wav",
    "mix.wav",
    "participant.mp3",
    "ai.mp3",
    "mix.mp3",
];

/// A running `earshot serve` on a free loopback port with its own data directory.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    log_path: PathBuf,
}

fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts the server with `EARSHOT_*` overrides and waits for `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        Self::start_in(data_dir, env).await
    }

    pub async fn start_in(data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        Self::start_limited(data_dir, "127.0.0.1", env, None, None, None, None).await
    }

    /// Starts the server inside the network namespace `ns`, on its address there: a client on
    /// the host reaches it (HTTP and media) only over the namespace's link, which the test can
    /// take down and up to cut the path ([`netns::Netns::set_link`]).
    pub async fn start_in_netns(ns: &netns::Netns, env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        let ip = ns.ns_ip.to_string();
        Self::start_limited(data_dir, &ip, env, None, None, Some(&ns.name), None).await
    }

    /// Starts the server serving HTTPS (`env` names its certificate and key); the test's
    /// client trusts what `tls` trusts.
    pub async fn start_https(
        env: &[(&str, &str)],
        tls: tokio_rustls::rustls::ClientConfig,
    ) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        Self::start_limited(data_dir, "127.0.0.1", env, None, Some(tls), None, None).await
    }

    /// Starts the server with its open-file limit (soft and hard) set to `nofile`, as a
    /// service manager or `ulimit -n` would.
    pub async fn start_with_nofile(env: &[(&str, &str)], nofile: u64) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        Self::start_limited(data_dir, "127.0.0.1", env, Some(nofile), None, None, None).await
    }

    /// Starts the server with its HTTP listener and its media (host candidates) on `ip`, a
    /// concrete local address (e.g. the host side of a [`netns::Netns`]).
    pub async fn start_on(ip: &str, env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        Self::start_limited(data_dir, ip, env, None, None, None, None).await
    }

    /// A second node of `first`: another process on the same data directory (the same
    /// SQLite file); its log goes to a directory of its own.
    pub async fn start_sharing_data(first: &Server, env: &[(&str, &str)]) -> Server {
        let log_dir = tempfile::tempdir().expect("log dir");
        let shared = first.data_path().to_path_buf();
        Self::start_limited(log_dir, "127.0.0.1", env, None, None, None, Some(&shared)).await
    }

    async fn start_limited(
        data_dir: tempfile::TempDir,
        ip: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        https: Option<tokio_rustls::rustls::ClientConfig>,
        netns: Option<&str>,
        shared_data: Option<&Path>,
    ) -> Server {
        // Inside a namespace of the test's own every port is free; its address is not the
        // host's to probe.
        let port = free_port_on(if netns.is_some() { "127.0.0.1" } else { ip });
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = match netns {
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, env!("CARGO_BIN_EXE_earshot")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_earshot")),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("{ip}:{port}"))
            .arg("--data-dir")
            .arg(shared_data.unwrap_or(data_dir.path()))
            .env("EARSHOT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("EARSHOT_MEDIA_BIND_IP", ip)
            .env("EARSHOT_LOG", "info,earshot_media=debug")
            // Encryption at rest stays at the production default (on); the tests that read
            // recordings from disk as a killed server leaves them turn it off.
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        #[cfg(unix)]
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        #[cfg(not(unix))]
        let _ = nofile;
        let child = cmd.spawn().expect("spawn earshot");
        let scheme = if https.is_some() { "https" } else { "http" };
        // Idle connections are dropped before the server's shortest header timeout in these
        // tests (2 s) closes them: a request sent on a connection the server is closing at
        // that instant would fail.
        let mut http = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(1));
        if let Some(tls) = https {
            http = http.use_preconfigured_tls(tls);
        }
        let server = Server {
            child,
            base: format!("{scheme}://{ip}:{port}"),
            data_dir,
            http: http.build().expect("http client"),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.http.get(server.url("/healthz")).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's process id (for `/proc/<pid>/...`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn admin(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(ADMIN_TOKEN)
    }

    /// Downloads one of a session's recordings (`participant.wav`, `mix.mp3`, ...) with the
    /// admin API; it must be there.
    pub async fn download(&self, id: &str, file: &str) -> Vec<u8> {
        let r = self
            .admin(
                self.http
                    .get(self.url(&format!("/v1/sessions/{id}/recordings/{file}"))),
            )
            .send()
            .await
            .expect("download");
        assert_eq!(r.status(), 200, "{file} of {id}");
        r.bytes().await.expect("body").to_vec()
    }

    /// Downloads bytes `first..=last` of a recording with a Range request and checks the
    /// answer: `206`, the Content-Range of a file as long as `whole`, those bytes of `whole`.
    pub async fn check_range(&self, id: &str, file: &str, whole: &[u8], first: usize, last: usize) {
        let r = self
            .admin(
                self.http
                    .get(self.url(&format!("/v1/sessions/{id}/recordings/{file}"))),
            )
            .header("Range", format!("bytes={first}-{last}"))
            .send()
            .await
            .expect("range");
        assert_eq!(r.status(), 206, "{file} of {id}");
        assert_eq!(
            r.headers()["content-range"].to_str().expect("ascii"),
            format!("bytes {first}-{last}/{}", whole.len())
        );
        assert!(
            r.bytes().await.expect("body") == whole[first..=last],
            "{file} of {id}: the range's bytes differ"
        );
    }

    /// `GET /metrics` with the admin token: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.admin(self.http.get(self.url("/metrics")))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Creates an invite with the admin API; returns (token, url).
    pub async fn invite(&self) -> (String, String) {
        let r = self
            .admin(self.http.post(self.url("/v1/invites")))
            .send()
            .await
            .expect("create invite");
        assert_eq!(r.status(), 201, "create invite");
        let v: serde_json::Value = r.json().await.expect("invite json");
        (
            v["token"].as_str().expect("token").to_string(),
            v["url"].as_str().expect("url").to_string(),
        )
    }

    /// The value of an unlabelled sample in `/metrics` (e.g.
    /// `earshot_media_deadline_missed_total`); it must be there.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in /metrics:\n{text}"))
    }

    /// Ends a session as an admin (`POST /v1/sessions/{id}/end`); it must answer 200.
    pub async fn end_session(&self, id: &str) {
        let r = self
            .admin(self.http.post(self.url(&format!("/v1/sessions/{id}/end"))))
            .send()
            .await
            .expect("end");
        assert_eq!(r.status(), 200, "ending {id}");
    }

    pub async fn session(&self, id: &str) -> serde_json::Value {
        let r = self
            .admin(self.http.get(self.url(&format!("/v1/sessions/{id}"))))
            .send()
            .await
            .expect("get session");
        assert_eq!(r.status(), 200, "get session {id}");
        r.json().await.expect("session json")
    }

    /// Polls the session until `pred` holds or `timeout` passes; returns the last view.
    pub async fn wait_session(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.session(id).await;
            if pred(&s) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and hands back its data directory (for restart tests).
    pub fn kill_keep_data(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.data_dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The repository's test fixtures folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The participant's path through the page: consent, mic check, Start, connected. Returns the
/// session id the page reports.
pub async fn join_interview(browser: &mut browser::Browser, server: &Server) -> String {
    use std::time::Duration;
    assert!(
        browser
            .wait_for(
                "!!document.querySelector('#accept') && !document.querySelector('#accept').closest('[hidden]')",
                Duration::from_secs(15),
            )
            .await,
        "consent screen shown"
    );
    browser
        .eval("document.querySelector('#accept').click(); true")
        .await;
    assert!(
        browser
            .wait_for("window.earshot && window.earshot.state === 'mic' && !document.querySelector('#start').disabled", Duration::from_secs(15))
            .await,
        "mic check screen"
    );
    browser
        .eval("document.querySelector('#start').click(); true")
        .await;
    assert!(
        browser
            .wait_for(
                "window.earshot.state === 'connected'",
                Duration::from_secs(20)
            )
            .await,
        "browser connected; server log:\n{}",
        server.log()
    );
    browser
        .eval("window.earshot.sessionId")
        .await
        .as_str()
        .expect("session id")
        .to_string()
}

/// The participant track's correlation with the looped speech sent (10 ms envelopes).
pub fn speech_r(wav_bytes: &[u8], dir: &Path) -> (f32, f64) {
    let path = dir.join("check.wav");
    std::fs::write(&path, wav_bytes).expect("write");
    let (rate, rec) = audio::read_wav(&path);
    assert_eq!(rate, 48_000);
    let (_, speech) = audio::read_wav(&fixture("participant_speech.wav"));
    let (_, r) = audio::best_loop_lag(
        &audio::envelope(48_000, &speech),
        &audio::envelope(48_000, &rec),
    );
    (r, rec.len() as f64 / 48.0)
}

/// What a server killed with SIGKILL while a participant streamed left behind.
pub struct KilledMidStream {
    pub session_id: String,
    /// From the participant's connection to the kill.
    pub streamed_ms: f64,
    pub data_dir: tempfile::TempDir,
}

/// Joins a participant (the default script) streaming the looped speech fixture, kills the
/// server `after` its connection and keeps its data directory.
pub async fn kill_while_streaming(server: Server, after: Duration) -> KilledMidStream {
    let (_, speech) = audio::read_wav(&fixture("participant_speech.wav"));
    let pcm: Vec<i16> = speech
        .iter()
        .cycle()
        .take((after.as_secs() as usize + 20) * 48_000)
        .map(|s| (s * 32767.0) as i16)
        .collect();
    let packets = participant::encode(&pcm, earshot_media::codec::OpusSettings::default());
    let mut streaming = participant::Participant::join(&server.base, ADMIN_TOKEN, None).await;
    let session_id = streaming.session_id.clone();
    let connected = Instant::now();
    let stream = tokio::spawn(async move {
        streaming.stream(&packets).await;
    });
    tokio::time::sleep(after).await;
    let killed_at = Instant::now();
    let data_dir = server.kill_keep_data();
    stream.abort();
    KilledMidStream {
        session_id,
        streamed_ms: killed_at.duration_since(connected).as_secs_f64() * 1000.0,
        data_dir,
    }
}
