//! The `config` fuzz target: arbitrary TOML text and `EARSHOT_*` environment overrides
//! through the binary's `Config::load`. `src/config.rs` belongs to the `earshot` binary
//! (no library target), so this example of the root package includes the file itself with
//! `#[path]` (it uses only the signaling crate and external crates).
//!
//! Input: the TOML file's bytes; after a line `#--env`, one `NAME=value` per line is passed
//! as the environment. Run:
//! `cargo run --release --example fuzz_config -- config --cases 1000000`.

#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;

use std::path::PathBuf;

use earshot_fuzz::engine::{Harness, Target, signature};

earshot_fuzz::tracking_allocator!();
earshot_fuzz::coverage_hooks!();

const ENV_MARKER: &[u8] = b"#--env\n";

struct ConfigHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn split_env(data: &[u8]) -> (&[u8], Vec<(String, String)>) {
    let at = data
        .windows(ENV_MARKER.len())
        .enumerate()
        .find(|&(i, w)| w == ENV_MARKER && (i == 0 || data[i - 1] == b'\n'))
        .map(|(i, _)| i);
    let Some(at) = at else {
        return (data, Vec::new());
    };
    let env = String::from_utf8_lossy(&data[at + ENV_MARKER.len()..])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (&data[..at], env)
}

impl Harness for ConfigHarness {
    fn run(&mut self, data: &[u8]) -> String {
        let (toml, env) = split_env(data);
        if let Err(e) = std::fs::write(&self.path, toml) {
            return signature("io", &e.to_string());
        }
        match config::Config::load(Some(&self.path), env) {
            Ok(c) => {
                // What `serve` derives from a loaded config must not panic either.
                let _ = (c.media_ip(), c.public_url());
                "ok".to_owned()
            }
            // Signatures without the echoed input (variable names, file path, TOML line).
            Err(config::ConfigError::Read { .. }) => "read".to_owned(),
            Err(config::ConfigError::Toml { source, .. }) => signature("toml", source.message()),
            Err(config::ConfigError::UnknownEnvSection { .. }) => "env".to_owned(),
            Err(config::ConfigError::Invalid(m)) => signature("invalid", &m),
        }
    }
}

fn make() -> Box<dyn Harness> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("earshot.toml");
    Box::new(ConfigHarness { _dir: dir, path })
}

static TARGETS: [Target; 1] = [Target {
    name: "config",
    about: "the binary's Config::load: TOML file text, then `#--env` and NAME=value lines",
    dict: &[
        b"[server]\n",
        b"[media]\n",
        b"[opus]\n",
        b"[recording]\n",
        b"[interviewer]\n",
        b"[lifecycle]\n",
        b"[turn]\n",
        b"[agent]\n",
        b"[[turn.ice_servers]]\n",
        b"#--env\n",
        b"EARSHOT_",
        b"EARSHOT_MEDIA_UDP_PORT_MIN=",
        b"EARSHOT_SERVER_LISTEN=",
        b"EARSHOT_TURN_ICE_SERVERS=",
        b"EARSHOT_LIFECYCLE_PAUSE_LIMIT=",
        b"EARSHOT_ADMIN_TOKEN=",
        b"listen = \"127.0.0.1:8080\"\n",
        b"data_dir = ",
        b"public_url = ",
        b"record_ip = true\n",
        b"bind_ip = \"::1\"\n",
        b"udp_port_min = ",
        b"udp_port_max = ",
        b"nat_1to1_ips = [\"203.0.113.7/10.0.0.5\"]\n",
        b"bitrate = ",
        b"complexity = ",
        b"fec = false\n",
        b"dtx = true\n",
        b"ptime_ms = ",
        b"enabled = ",
        b"noise_suppression = ",
        b"quality = \"ultra\"\n",
        b"derive = \"on_request\"\n",
        b"silence_ms = ",
        b"retry_secs = ",
        b"pause_limit = ",
        b"resume_prompt_secs = ",
        b"pause_expiry_secs = ",
        b"disconnect_grace_secs = ",
        b"stuck_secs = ",
        b"ice_servers = ",
        b"urls = [\"turns:x\"]\n",
        b"username = ",
        b"credential = ",
        b"\"\"\"",
        b"'''",
        b"[",
        b"]",
        b"{",
        b"}",
        b"=",
        b"\"",
        b",",
        b".",
        b"1979-05-27T07:32:00Z",
        b"inf",
        b"nan",
        b"0x7f",
        b"0o7",
        b"0b1",
        b"1_000",
    ],
    max_len: 4096,
    make,
}];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(earshot_fuzz::main_with(&args, &TARGETS));
}

#[cfg(test)]
mod replay {
    use earshot_fuzz::engine::{fuzz_dir, load_corpus};

    /// Every corpus file of every target (former crash inputs included) through the config
    /// harness once (the other targets replay in `benches/fuzz/tests/replay.rs`).
    #[test]
    fn config_corpus_replay() {
        let mut files = Vec::new();
        let root = fuzz_dir().join("corpus");
        for entry in std::fs::read_dir(&root).expect("corpus dir") {
            let dir = entry.expect("entry").path();
            if dir.is_dir() {
                files.extend(load_corpus(&dir).expect("corpus"));
            }
        }
        assert!(
            !load_corpus(&root.join("config"))
                .expect("config corpus")
                .is_empty()
        );
        let found = earshot_fuzz::replay(&super::TARGETS[0], &files);
        assert!(found.is_empty(), "findings: {found:?}");
    }
}
