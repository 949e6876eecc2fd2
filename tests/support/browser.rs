//! Headless Chromium driven over the DevTools protocol (a WebSocket), with the flags that
//! work on this machine (docs/FEATURES.md), optionally fed a WAV file as its microphone.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next_id: u64,
    /// The DevTools HTTP port (for opening and closing tabs).
    port: u16,
    /// The target id of the page `ws` drives.
    target_id: String,
    /// For a browser inside a network namespace: its DevTools port forwarded out.
    _devtools_bridge: Option<super::tcp_bridge::TcpBridge>,
}

impl Browser {
    /// Launches Chromium on `url`. `fake_audio` is a WAV file the fake microphone plays in a loop.
    pub async fn launch(url: &str, fake_audio: Option<&Path>) -> Browser {
        Self::launch_with(url, fake_audio, &[]).await
    }

    /// As [`Browser::launch`], with more command-line flags.
    pub async fn launch_with(url: &str, fake_audio: Option<&Path>, flags: &[String]) -> Browser {
        Self::launch_where(None, url, fake_audio, flags).await
    }

    /// As [`Browser::launch_with`], with the browser inside the network namespace `ns` (driven
    /// through a TCP bridge to its DevTools port; `url` is as seen from inside).
    pub async fn launch_in_netns(
        ns: &super::netns::Netns,
        url: &str,
        fake_audio: Option<&Path>,
        flags: &[String],
    ) -> Browser {
        Self::launch_where(Some(ns), url, fake_audio, flags).await
    }

    async fn launch_where(
        ns: Option<&super::netns::Netns>,
        url: &str,
        fake_audio: Option<&Path>,
        flags: &[String],
    ) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
        let mut cmd = match ns {
            Some(ns) => ns.command(&chromium),
            None => Command::new(&chromium),
        };
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
            "--remote-debugging-port=0",
            "--window-size=900,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
        if let Some(wav) = fake_audio {
            cmd.arg(format!(
                "--use-file-for-fake-audio-capture={}",
                wav.display()
            ));
        }
        cmd.args(flags)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn chromium (is it installed?)");

        // Chromium writes its DevTools port into the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(p) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium did not open DevTools");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Inside a namespace the DevTools port is reached through a bridge of its own.
        let (port, devtools_bridge) = match ns {
            Some(ns) => {
                let inside = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let bridge = super::tcp_bridge::TcpBridge::into(&ns.name, inside).await;
                (bridge.listen.port(), Some((bridge, port)))
            }
            None => (port, None),
        };
        let http = reqwest::Client::new();
        let ws_url = loop {
            let list: Value = match http
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let page = list.as_array().and_then(|a| {
                a.iter().find(|t| t["type"] == "page").and_then(|t| {
                    Some((
                        t["webSocketDebuggerUrl"].as_str()?.to_string(),
                        t["id"].as_str().unwrap_or_default().to_string(),
                    ))
                })
            });
            if let Some(u) = page {
                break u;
            }
            assert!(Instant::now() < deadline, "no page target in chromium");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (mut ws_url, target_id) = ws_url;
        if let Some((_, inside)) = &devtools_bridge {
            ws_url = ws_url.replace(&format!(":{inside}/"), &format!(":{port}/"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("devtools websocket");
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
            port,
            target_id,
            _devtools_bridge: devtools_bridge.map(|(b, _)| b),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("cdp send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("cdp reply in time")
                .expect("cdp open")
                .expect("cdp frame");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("cdp json");
                if v["id"] == id {
                    return v;
                }
            }
        }
    }

    /// Evaluates a JS expression in the page (promises awaited), returning its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(ex) = r["result"].get("exceptionDetails") {
            panic!("JS exception in {expr}: {ex}");
        }
        r["result"]["result"]["value"].clone()
    }

    /// Clicks the first element matching `selector`, which must exist.
    pub async fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            serde_json::to_string(selector).expect("selector")
        );
        assert_eq!(self.eval(&js).await, Value::Bool(true), "click {selector}");
    }

    /// Waits until the JS expression is truthy.
    pub async fn wait_for(&mut self, expr: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr).await;
            if v.as_bool() == Some(true) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` in the current tab (the old page gets `pagehide`, as when navigating away).
    pub async fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url})).await;
        assert!(
            r.get("error").is_none() && r["result"].get("errorText").is_none(),
            "navigate to {url}: {r}"
        );
    }

    /// Closes the current tab as a user would (its page is unloaded), after opening a blank
    /// tab that this `Browser` drives from then on (so the browser itself stays up).
    pub async fn close_tab(&mut self) {
        let http = reqwest::Client::new();
        let new: Value = http
            .put(format!(
                "http://127.0.0.1:{}/json/new?about:blank",
                self.port
            ))
            .send()
            .await
            .expect("devtools /json/new")
            .json()
            .await
            .expect("devtools /json/new answer");
        let ws_url = new["webSocketDebuggerUrl"]
            .as_str()
            .expect("new tab's websocket url")
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("devtools websocket of the new tab");
        let old_id = std::mem::replace(
            &mut self.target_id,
            new["id"].as_str().unwrap_or_default().to_string(),
        );
        let mut old_ws = std::mem::replace(&mut self.ws, ws);
        self.next_id = 0;
        let closed = http
            .get(format!(
                "http://127.0.0.1:{}/json/close/{old_id}",
                self.port
            ))
            .send()
            .await
            .expect("devtools /json/close");
        assert!(closed.status().is_success(), "closing tab {old_id}");
        let _ = old_ws.close(None).await;
    }

    /// Waits until the page's peer connection has received audio with energy (WebRTC
    /// `getStats`: inbound-rtp `totalAudioEnergy`).
    pub async fn hears_audio(&mut self, timeout: Duration) -> bool {
        self.wait_for(
            "window.earshot.pc.getStats().then(s => { let e = 0; s.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') e = r.totalAudioEnergy || 0; }); return e > 0.001; })",
            timeout,
        )
        .await
    }

    /// Emulates a viewport of `width` x `height` CSS pixels (a phone's when `mobile`), as
    /// screenshots of a page at a given size need.
    pub async fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        let r = self
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
        assert!(r.get("error").is_none(), "viewport {width}x{height}: {r}");
    }

    /// Saves the page's downloads into `dir` (instead of the profile's default folder).
    pub async fn allow_downloads(&mut self, dir: &Path) {
        let r = self
            .call(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": dir.display().to_string()}),
            )
            .await;
        assert!(r.get("error").is_none(), "download behavior: {r}");
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        if let Some(data) = r["result"]["data"].as_str() {
            use base64::Engine as _;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) {
                let _ = std::fs::write(path, bytes);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JS expression: an element matches `selector` and is not inside a `[hidden]` one.
pub fn visible(selector: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({}); return !!e && !e.closest('[hidden]'); }})()",
        serde_json::to_string(selector).expect("selector")
    )
}
