//! A private PulseAudio server with only a null sink, for a headless Firefox.
//!
//! Firefox renders all audio through an output device (cubeb): on a machine without one, an
//! `AudioContext` never leaves `suspended`, so a page's microphone meter reads 0 (what was
//! seen of Firefox's fake microphone) and WebAudio cannot make a microphone stream. A null
//! sink is a device with a real-time clock that plays into nothing. The server listens on a
//! socket in its own temporary directory (`PULSE_SERVER` for Firefox) and is ended on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PulseAudio {
    child: Child,
    /// `PULSE_SERVER` value for clients.
    pub server: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl PulseAudio {
    pub fn start() -> PulseAudio {
        let dir = tempfile::tempdir().expect("pulse dir");
        let socket = dir.path().join("native");
        let log_path = dir.path().join("pulseaudio.log");
        let log = std::fs::File::create(&log_path).expect("pulse log");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=false",
                "--disable-shm=true",
                "--log-target=stderr",
                "--load=module-null-sink sink_name=earshot_null",
            ])
            .arg(format!(
                "--load=module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn pulseaudio (scripts/install-deps.sh --test installs it)");
        let mut pulse = PulseAudio {
            child,
            server: format!("unix:{}", socket.display()),
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = pulse.child.try_wait() {
                panic!("pulseaudio exited ({status}):\n{}", pulse.log());
            }
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not start:\n{}",
                pulse.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pulse
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for PulseAudio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
