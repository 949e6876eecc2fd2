//! Headless Firefox (Debian's `firefox-esr`) driven by geckodriver over W3C WebDriver, inside a
//! [`Netns`] (Firefox does not pair with 127.0.0.1 candidates).
//!
//! geckodriver listens on the namespace's address, so the test (on the host) reaches it over
//! the veth pair; Firefox is its child, in the same namespace and process group, and the whole
//! group is ended when this value is dropped.

use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::pulse::PulseAudio;

/// The port geckodriver listens on inside the namespace (the namespace is the test's own).
const DRIVER_PORT: u16 = 4444;

/// Preferences for a headless test: `secure_host` counts as a secure context (as an https
/// deployment is: the page may use the microphone), media without prompts, audio that may
/// start without a gesture, host candidates not hidden behind mDNS names (a real participant
/// has granted the microphone, which lifts that), and no background traffic of Firefox's own
/// (geckodriver adds its recommended set on top: no updates, telemetry, safe browsing, ...).
fn prefs(secure_host: &str) -> Value {
    json!({
        "dom.securecontext.allowlist": secure_host,
        "media.navigator.permission.disabled": true,
        "media.autoplay.default": 0,
        "media.autoplay.blocking_policy": 0,
        "media.autoplay.block-webaudio": false,
        "media.peerconnection.ice.obfuscate_host_addresses": false,
        "network.dns.disabled": true,
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "network.prefetch-next": false,
        "network.http.speculative-parallel-limit": 0,
        "browser.safebrowsing.downloads.remote.enabled": false,
        "extensions.getAddons.cache.enabled": false,
        "app.normandy.enabled": false,
        "browser.region.network.url": "",
        "browser.search.geoip.url": "",
        "services.settings.server": "data:,#remote-settings-disabled",
    })
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// geckodriver: `$GECKODRIVER`, else on `PATH`, else `~/.cargo/bin` (`cargo install`).
fn geckodriver() -> PathBuf {
    if let Some(p) = std::env::var_os("GECKODRIVER") {
        return PathBuf::from(p);
    }
    which("geckodriver")
        .or_else(|| {
            let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/geckodriver");
            p.is_file().then_some(p)
        })
        .expect("geckodriver not found: run scripts/install-deps.sh --test")
}

pub struct Firefox {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// `browserVersion` as the driver reports it.
    pub version: String,
    /// geckodriver's and Firefox's output.
    pub log_path: PathBuf,
    ended: bool,
    _dir: tempfile::TempDir,
}

impl Firefox {
    /// Starts geckodriver and a headless Firefox inside `ns`, its audio going to `pulse`;
    /// pages from `secure_host` (the server's address) are secure contexts.
    pub async fn launch(ns: &Netns, secure_host: &str, pulse: &PulseAudio) -> Firefox {
        let binary = std::env::var("FIREFOX_BIN").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} not found: run scripts/install-deps.sh --test"
        );
        let dir = tempfile::tempdir().expect("firefox dir");
        let log_path = dir.path().join("geckodriver.log");
        let log = std::fs::File::create(&log_path).expect("geckodriver log");
        let host = ns.ns_ip.to_string();
        let mut cmd = ns.command(geckodriver().to_str().expect("utf-8 path"));
        cmd.args(["--host", &host, "--port", &DRIVER_PORT.to_string()])
            .arg("--allow-hosts")
            .arg(&host)
            .env("MOZ_HEADLESS", "1")
            .env("PULSE_SERVER", &pulse.server)
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group: Firefox (its child) is ended with it.
            .process_group(0);
        let driver = cmd.spawn().expect("spawn geckodriver in the namespace");
        let base = format!("http://{host}:{DRIVER_PORT}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut ff = Firefox {
            driver,
            base,
            session: String::new(),
            http,
            version: String::new(),
            log_path,
            ended: false,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = ff.http.get(format!("{}/status", ff.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "geckodriver did not start:\n{}",
                ff.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "firefox",
            "pageLoadStrategy": "normal",
            "moz:firefoxOptions": {
                "binary": binary,
                "args": ["-headless"],
                "prefs": prefs(secure_host),
                "log": {"level": "warn"},
            },
        }}});
        let r = ff.post("/session", caps).await;
        ff.session = r["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {r}\n{}", ff.log()))
            .to_string();
        ff.version = r["capabilities"]["browserVersion"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        ff
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver POST {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "webdriver POST {path}: {status} {v}");
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn navigate(&self, url: &str) {
        self.post(&self.session_path("/url"), json!({"url": url}))
            .await;
    }

    /// Evaluates a JS expression in the page (a returned promise is awaited).
    pub async fn eval(&self, expr: &str) -> Value {
        self.post(
            &self.session_path("/execute/sync"),
            json!({"script": format!("return ({expr});"), "args": []}),
        )
        .await
    }

    /// Waits until the JS expression is truthy.
    pub async fn wait_for(&self, expr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expr).await.as_bool() == Some(true) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element as a user does (WebDriver element click: real input events, so the
    /// page gets a user gesture).
    pub async fn click(&self, css: &str) {
        let el = self
            .post(
                &self.session_path("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_string();
        self.post(
            &self.session_path(&format!("/element/{id}/click")),
            json!({}),
        )
        .await;
    }

    /// Ends the browser session (Firefox quits), then the driver.
    pub async fn quit(mut self) {
        let url = format!("{}{}", self.base, self.session_path(""));
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http.delete(url).send()).await;
        self.kill_group();
    }

    fn kill_group(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        // The group id is the driver's pid (process_group(0)); Firefox is in it.
        let pgid = self.driver.id();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        self.kill_group();
    }
}
