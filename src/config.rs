//! Configuration: a TOML file whose every key can be overridden by an environment variable
//! `EARSHOT_<SECTION>_<KEY>` (upper case; e.g. `EARSHOT_MEDIA_UDP_PORT_MIN=40000` sets
//! `[media] udp_port_min`). Unknown keys and bad values are refused with a message naming them.

use earshot_signaling::lifecycle::LifecycleConfig;
use earshot_signaling::routes::IceServerView;
use earshot_signaling::service::retention::RetentionConfig;
use earshot_signaling::webhooks::WebhookConfig;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[path = "config/bus.rs"]
pub mod bus;
#[path = "config/encryption.rs"]
pub mod encryption;
#[path = "config/limits.rs"]
mod limits;
#[path = "config/report.rs"]
pub mod report;
#[path = "config/storage.rs"]
pub mod storage;

pub use bus::BusConfig;
pub use encryption::EncryptionConfig;
pub use limits::LimitsConfig;
pub use report::Sources;
pub use storage::StorageConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {var}: no config section [{section}] (known: {known})")]
    UnknownEnvSection {
        var: String,
        section: String,
        known: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub media: MediaConfig,
    pub opus: OpusConfig,
    pub recording: RecordingConfig,
    pub interviewer: InterviewerConfig,
    pub lifecycle: LifecycleConfig,
    pub turn: TurnConfig,
    pub agent: AgentConfig,
    pub limits: LimitsConfig,
    pub webhooks: WebhookConfig,
    pub auth: AuthConfig,
    pub retention: RetentionConfig,
    pub encryption: EncryptionConfig,
    pub store: StoreConfig,
    pub storage: StorageConfig,
    pub bus: BusConfig,
    pub log: LogConfig,
}

/// Where sessions, campaigns, users and the rest are stored.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://<path>` (the embedded database file) or `postgres://user:pass@host/db`
    /// (several processes sharing one database); defaults to `sqlite://<data_dir>/earshot.db`.
    pub url: Option<String>,
}

/// Who may sign in with what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept the admin token (the bootstrap superuser) as a bearer token and at the
    /// console's sign-in. Off only once a superuser user exists (the start refuses
    /// otherwise: nobody could manage the deployment).
    pub admin_token_enabled: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_token_enabled: true,
        }
    }
}

/// Logging. `EARSHOT_LOG` (a filter) still wins over `filter`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable lines) or `json` (one JSON object per line, for log shippers).
    pub format: String,
    /// Which events are logged (tracing's `EnvFilter` syntax). The WebRTC library warns on
    /// every DTLS handshake of an ICE-lite peer otherwise, so only its errors are shown.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info,rtc_dtls=error".into(),
        }
    }
}

/// External AI agents (scripts that name an agent URL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// How long an unreachable or dropped agent is retried (with backoff) before the session
    /// ends as abandoned ("technical: agent").
    pub retry_secs: u64,
    /// A PEM file of CA certificates trusted for `wss://` agents besides the system's roots
    /// (an operator's private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            retry_secs: 10,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Base URL used in invite links; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Store participants' IP addresses (for fraud detection); off by default.
    pub record_ip: bool,
    /// Where scripts' prompt audio files are (named relative to it); defaults to
    /// `<data_dir>/prompts`. The built-in prompts are always there too, as `default/<id>.wav`.
    pub prompts_dir: Option<PathBuf>,
    /// Serve HTTPS (and WSS) with this certificate chain and private key (PEM files; both or
    /// neither). Reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client;
    /// empty: the header is never believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            record_ip: false,
            prompts_dir: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// IP the WebRTC host candidates are gathered on; defaults to the listen IP (or 127.0.0.1
    /// when listening on all interfaces).
    pub bind_ip: Option<IpAddr>,
    /// More concrete addresses (other interfaces) to gather host candidates on, one UDP socket
    /// each per peer, e.g. a private and a public interface.
    pub extra_bind_ips: Vec<IpAddr>,
    /// UDP port range for media; 0/0 = ephemeral ports.
    pub udp_port_min: u16,
    pub udp_port_max: u16,
    /// Public IPs announced instead of the bind IP (1:1 NAT mapping).
    pub nat_1to1_ips: Vec<String>,
    /// `host:port` of a STUN server (the operator's own) that tells the public address at
    /// start, when `nat_1to1_ips` is empty; the start fails if it does not answer.
    pub public_ip_stun: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpusConfig {
    pub bitrate: u32,
    pub complexity: u8,
    /// In-band FEC, its share steered by the loss the participant reports.
    pub fec: bool,
    pub dtx: bool,
    pub ptime_ms: u32,
    /// Code the AI audio at most wideband (it is 16 kHz speech); `false`: fullband.
    pub wideband: bool,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self {
            bitrate: 48_000,
            complexity: 5,
            fec: true,
            dtx: false,
            ptime_ms: 20,
            wideband: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    pub enabled: bool,
    pub noise_suppression: bool,
    /// standard | high | ultra
    pub quality: String,
    /// When the mix and the MP3s are made: `at_end` of the session, or `on_request` (the first
    /// download; the session's end then only closes the two WAVs).
    pub derive: String,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            noise_suppression: true,
            quality: "high".into(),
            derive: "at_end".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterviewerConfig {
    /// Silence after the participant spoke before the built-in interviewer goes on.
    pub silence_ms: u32,
}

impl Default for InterviewerConfig {
    fn default() -> Self {
        Self { silence_ms: 1500 }
    }
}

/// ICE servers handed to browsers. Empty unless the operator sets them: Earshot never adds a
/// public STUN/TURN server by itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Servers handed to every participant as they are (STUN, or TURN with fixed credentials).
    pub ice_servers: Vec<IceServerView>,
    /// TURN URLs whose credentials are minted per session from `shared_secret` (coturn's
    /// `use-auth-secret`): `turn:` / `turns:` URLs; empty: none.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (`static-auth-secret`); required with `urls`.
    pub shared_secret: Option<String>,
    /// How long minted credentials are valid.
    pub credential_ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            urls: Vec::new(),
            shared_secret: None,
            credential_ttl_secs: 3600,
        }
    }
}

const SECTIONS: [&str; 17] = [
    "server",
    "media",
    "opus",
    "recording",
    "interviewer",
    "lifecycle",
    "turn",
    "agent",
    "limits",
    "webhooks",
    "auth",
    "retention",
    "encryption",
    "store",
    "storage",
    "bus",
    "log",
];

/// Keys with no default value (`section.key`): `check-config` lists them as not set.
const OPTIONAL_KEYS: [&str; 19] = [
    "media.public_ip_stun",
    "agent.ca_file",
    "server.public_url",
    "server.prompts_dir",
    "server.tls_cert",
    "server.tls_key",
    "media.bind_ip",
    "turn.shared_secret",
    "encryption.key_file",
    "encryption.master_keys",
    "store.url",
    "storage.url",
    "storage.endpoint",
    "storage.region",
    "storage.access_key_id",
    "storage.secret_access_key",
    "bus.url",
    "bus.node_id",
    "bus.advertise_url",
];

/// Variables that are not config keys.
const RESERVED_ENV: [&str; 4] = [
    "EARSHOT_ADMIN_TOKEN",
    "EARSHOT_CONFIG",
    "EARSHOT_LOG",
    // `earshot user add`'s password.
    "EARSHOT_PASSWORD",
];

impl Config {
    /// Loads the file (if any), applies `EARSHOT_*` overrides from `env`, validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_with_sources(file, env).map(|(config, _)| config)
    }

    /// As [`Config::load`], also saying where each set key came from (a key in neither is
    /// the default).
    pub fn load_with_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Sources), ConfigError> {
        let mut sources = Sources::default();
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let table =
                    toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Toml {
                        path: path.to_owned(),
                        source,
                    })?;
                sources.note_file(path, &table);
                table
            }
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("EARSHOT_") else {
                continue;
            };
            if RESERVED_ENV.contains(&var.as_str()) {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else {
                return Err(ConfigError::UnknownEnvSection {
                    var,
                    section: lower,
                    known: SECTIONS.join(", "),
                });
            };
            if !SECTIONS.contains(&section) {
                return Err(ConfigError::UnknownEnvSection {
                    var: var.clone(),
                    section: section.to_string(),
                    known: SECTIONS.join(", "),
                });
            }
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(ConfigError::Invalid(format!("[{section}] must be a table")));
            };
            section_table.insert(key.to_string(), env_value(&value));
            sources.note_env(section, key, &var);
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.validate()?;
        Ok((config, sources))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(cert), Some(key)) => {
                if let Err(e) = earshot_signaling::routes::tls::load(cert, key) {
                    return bad(e.to_string());
                }
            }
            (Some(_), None) => {
                return bad("server.tls_key is missing: server.tls_cert needs it".into());
            }
            (None, Some(_)) => {
                return bad("server.tls_cert is missing: server.tls_key needs it".into());
            }
            (None, None) => {}
        }
        if let Some(u) = &self.server.public_url {
            let ok = u.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.starts_with('/')
                    && !rest.contains(char::is_whitespace)
            });
            if !ok {
                return bad(format!(
                    "server.public_url must be an http:// or https:// URL with a host, got {u:?}"
                ));
            }
        }
        if let Err(e) = earshot_signaling::routes::forwarded::TrustedProxies::parse(
            &self.server.trusted_proxies,
        ) {
            return bad(format!("server.trusted_proxies: {e}"));
        }
        let m = &self.media;
        if (m.udp_port_min == 0) != (m.udp_port_max == 0) || m.udp_port_min > m.udp_port_max {
            return bad(format!(
                "media.udp_port_min/udp_port_max must both be 0 (ephemeral) or a range min <= max, got {}..{}",
                m.udp_port_min, m.udp_port_max
            ));
        }
        if let Some(ip) = m.bind_ip
            && ip.is_unspecified()
        {
            return bad("media.bind_ip must be a concrete address, not 0.0.0.0/::".into());
        }
        for (i, ip) in m.extra_bind_ips.iter().enumerate() {
            if ip.is_unspecified() {
                return bad(format!(
                    "media.extra_bind_ips: {ip} is not a concrete address (0.0.0.0/:: binds nothing in particular)"
                ));
            }
            if Some(*ip) == m.bind_ip || m.extra_bind_ips[..i].contains(ip) {
                return bad(format!(
                    "media.extra_bind_ips: {ip} is listed twice (with media.bind_ip or in the list)"
                ));
            }
        }
        if let Some(stun) = &m.public_ip_stun
            && !stun.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            })
        {
            return bad(format!(
                "media.public_ip_stun must be host:port of a STUN server, got {stun:?}"
            ));
        }
        for ip in &m.nat_1to1_ips {
            if ip.parse::<IpAddr>().is_err() {
                return bad(format!("media.nat_1to1_ips: {ip:?} is not an IP address"));
            }
        }
        self.lifecycle
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.validate()?;
        self.webhooks.validate().map_err(ConfigError::Invalid)?;
        self.retention.validate().map_err(ConfigError::Invalid)?;
        let o = &self.opus;
        if !(6_000..=510_000).contains(&o.bitrate) {
            return bad(format!(
                "opus.bitrate must be 6000..=510000 bps, got {}",
                o.bitrate
            ));
        }
        if o.complexity > 10 {
            return bad(format!(
                "opus.complexity must be 0..=10, got {}",
                o.complexity
            ));
        }
        if o.ptime_ms != 20 {
            return bad(format!(
                "opus.ptime_ms: only 20 is supported, got {}",
                o.ptime_ms
            ));
        }
        if !["standard", "high", "ultra"].contains(&self.recording.quality.as_str()) {
            return bad(format!(
                "recording.quality must be standard, high or ultra, got {:?}",
                self.recording.quality
            ));
        }
        if !["at_end", "on_request"].contains(&self.recording.derive.as_str()) {
            return bad(format!(
                "recording.derive must be at_end or on_request, got {:?}",
                self.recording.derive
            ));
        }
        if !(200..=60_000).contains(&self.interviewer.silence_ms) {
            return bad(format!(
                "interviewer.silence_ms must be 200..=60000, got {}",
                self.interviewer.silence_ms
            ));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return bad(format!(
                "log.format must be text or json, got {:?}",
                self.log.format
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return bad(format!("log.filter {:?}: {e}", self.log.filter));
        }
        if let Err(e) = self.encryption.validate() {
            return bad(e);
        }
        self.store_url()?;
        if let Err(e) = self
            .storage
            .validate(&self.server.data_dir, self.recording.derive == "on_request")
        {
            return bad(e);
        }
        if let Err(e) = self.bus.validate() {
            return bad(e);
        }
        if let Some(ca) = &self.agent.ca_file
            && let Err(e) = earshot_media::agent::tls::client_config(Some(ca))
        {
            return bad(e);
        }
        if !(1..=3600).contains(&self.agent.retry_secs) {
            return bad(format!(
                "agent.retry_secs must be 1..=3600, got {}",
                self.agent.retry_secs
            ));
        }
        let t = &self.turn;
        if let Some(u) = t
            .urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return bad(format!(
                "turn.urls: every url must start with turn: or turns:, got {u:?}"
            ));
        }
        match (&t.shared_secret, t.urls.is_empty()) {
            (None, false) => {
                return bad(
                    "turn.shared_secret is missing: turn.urls need it to mint credentials \
                     (coturn's static-auth-secret)"
                        .into(),
                );
            }
            (Some(_), true) => {
                return bad("turn.shared_secret is set but turn.urls is empty".into());
            }
            (Some(secret), false) if secret.len() < 16 => {
                return bad("turn.shared_secret must be at least 16 characters".into());
            }
            _ => {}
        }
        if !(1..=86_400).contains(&t.credential_ttl_secs) {
            return bad(format!(
                "turn.credential_ttl_secs must be 1..=86400, got {}",
                t.credential_ttl_secs
            ));
        }
        for s in &self.turn.ice_servers {
            if s.urls.is_empty()
                || s.urls.iter().any(|u| {
                    !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:"))
                })
            {
                return bad(format!(
                    "turn.ice_servers: every url must start with stun:, turn: or turns:, got {:?}",
                    s.urls
                ));
            }
        }
        Ok(())
    }

    /// The IP media binds to.
    pub fn media_ip(&self) -> IpAddr {
        self.media.bind_ip.unwrap_or_else(|| {
            let ip = self.server.listen.ip();
            if ip.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        })
    }

    /// The store to open: `[store] url`, or the embedded database in the data directory.
    pub fn store_url(&self) -> Result<earshot_signaling::store::StoreUrl, ConfigError> {
        use earshot_signaling::store::StoreUrl;
        match &self.store.url {
            Some(url) => {
                StoreUrl::parse(url).map_err(|e| ConfigError::Invalid(format!("store.url: {e}")))
            }
            None => Ok(StoreUrl::Sqlite(self.server.data_dir.join("earshot.db"))),
        }
    }

    /// The operator's prompts directory.
    pub fn prompts_dir(&self) -> PathBuf {
        self.server
            .prompts_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("prompts"))
    }

    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| {
                let scheme = if self.server.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.server.listen)
            })
            .trim_end_matches('/')
            .to_string()
    }
}

/// An environment value as TOML: numbers, booleans and arrays keep their type, anything else
/// is a string.
fn env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// `(name, value)` pairs as `Config::load` takes the environment (tests).
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_env as env;

    #[test]
    fn defaults_are_valid_and_have_no_ice_servers() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.turn.ice_servers.is_empty());
        assert_eq!(c.lifecycle.pause_limit, 3);
        let l = &c.limits;
        assert_eq!(
            (
                l.max_body_bytes,
                l.header_timeout_secs,
                l.max_connections,
                l.max_sessions
            ),
            (2 << 20, 10, 1024, 100)
        );
        assert_eq!(l.http(7).max_connections, 7);
    }

    #[test]
    fn the_store_is_the_data_directory_s_sqlite_file_unless_a_url_says_otherwise() {
        use earshot_signaling::store::StoreUrl;
        let c = Config::load(None, env(&[("EARSHOT_SERVER_DATA_DIR", "/srv/e")])).expect("valid");
        assert_eq!(
            c.store_url().expect("default"),
            StoreUrl::Sqlite(PathBuf::from("/srv/e/earshot.db"))
        );
        let c = Config::load(
            None,
            env(&[(
                "EARSHOT_STORE_URL",
                "postgres://earshot@db.internal/earshot",
            )]),
        )
        .expect("valid");
        assert_eq!(
            c.store_url().expect("postgres"),
            StoreUrl::Postgres("postgres://earshot@db.internal/earshot".into())
        );
    }

    #[test]
    fn env_overrides_file_and_keeps_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[media]\nudp_port_min = 1000\nudp_port_max = 2000\n")
            .expect("write");
        let c = Config::load(
            Some(&path),
            env(&[
                ("EARSHOT_MEDIA_UDP_PORT_MAX", "3000"),
                ("EARSHOT_OPUS_FEC", "false"),
                ("EARSHOT_SERVER_DATA_DIR", "/tmp/x"),
                ("EARSHOT_ADMIN_TOKEN", "ignored"),
                ("HOME", "/root"),
            ]),
        )
        .expect("valid");
        assert_eq!((c.media.udp_port_min, c.media.udp_port_max), (1000, 3000));
        assert!(!c.opus.fec);
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("turn-config/earshot.example.toml");
        let c = Config::load(Some(&path), env(&[])).expect("example config is valid");
        assert_eq!(c.opus.bitrate, 48_000);
        assert!(c.turn.ice_servers.is_empty());
        assert!(c.auth.admin_token_enabled);
        // Every limit the example lists is the default.
        let (example, default) = (&c.limits, LimitsConfig::default());
        assert_eq!(format!("{example:?}"), format!("{default:?}"));
    }

    #[test]
    fn bad_config_is_refused_with_the_key_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("EARSHOT_MEDIA_NO_SUCH_KEY", "1")], "no_such_key"),
            (&[("EARSHOT_NOPE_X", "1")], "nope"),
            (&[("EARSHOT_OPUS_BITRATE", "5")], "opus.bitrate"),
            (&[("EARSHOT_MEDIA_UDP_PORT_MIN", "5000")], "udp_port_min"),
            (&[("EARSHOT_MEDIA_BIND_IP", "0.0.0.0")], "bind_ip"),
            (
                &[("EARSHOT_MEDIA_EXTRA_BIND_IPS", "[\"0.0.0.0\"]")],
                "media.extra_bind_ips",
            ),
            (
                &[
                    ("EARSHOT_MEDIA_BIND_IP", "127.0.0.1"),
                    ("EARSHOT_MEDIA_EXTRA_BIND_IPS", "[\"127.0.0.1\"]"),
                ],
                "listed twice",
            ),
            (
                &[("EARSHOT_RECORDING_QUALITY", "best")],
                "recording.quality",
            ),
            (&[("EARSHOT_RECORDING_DERIVE", "later")], "recording.derive"),
            (&[("EARSHOT_BUS_URL", "redis://127.0.0.1:6379")], "bus.url"),
            (&[("EARSHOT_BUS_NODE_ID", "two words")], "bus.node_id"),
            (&[("EARSHOT_SERVER_LISTEN", "nonsense")], "socket address"),
            (
                &[("EARSHOT_LIMITS_MAX_SESSIONS", "0")],
                "limits.max_sessions",
            ),
            (
                &[("EARSHOT_LIMITS_HEADER_TIMEOUT_SECS", "0")],
                "limits.header_timeout_secs",
            ),
            (
                &[("EARSHOT_LIMITS_MAX_BODY_BYTES", "10")],
                "limits.max_body_bytes",
            ),
            (
                &[("EARSHOT_LIMITS_MAX_MONITORS", "5")],
                "limits.max_monitors",
            ),
            (&[("EARSHOT_LIMITS_NOPE", "5")], "nope"),
            (&[("EARSHOT_ENCRYPTION_NOPE", "1")], "nope"),
            (
                &[("EARSHOT_ENCRYPTION_MASTER_KEYS", "k1:c2hvcnQ=")],
                "encryption.master_keys",
            ),
            (
                &[("EARSHOT_ENCRYPTION_MASTER_KEYS", "no-colon")],
                "encryption.master_keys",
            ),
            (
                &[("EARSHOT_ENCRYPTION_KEY_FILE", "/nonexistent/master_keys")],
                "encryption.key_file",
            ),
            (
                &[("EARSHOT_RETENTION_SWEEP_SECS", "0")],
                "retention.sweep_secs",
            ),
            (
                &[("EARSHOT_AGENT_CA_FILE", "/nonexistent/ca.pem")],
                "agent.ca_file",
            ),
            (
                &[("EARSHOT_SERVER_TRUSTED_PROXIES", r#"["10.0.0.0/33"]"#)],
                "server.trusted_proxies",
            ),
            (
                &[("EARSHOT_SERVER_TLS_CERT", "/nonexistent/cert.pem")],
                "server.tls_key",
            ),
            (
                &[("EARSHOT_TURN_URLS", r#"["turn:127.0.0.1:3478"]"#)],
                "turn.shared_secret",
            ),
            (
                &[
                    ("EARSHOT_TURN_URLS", r#"["stun:127.0.0.1:3478"]"#),
                    ("EARSHOT_TURN_SHARED_SECRET", "0123456789abcdef"),
                ],
                "turn.urls",
            ),
            (
                &[("EARSHOT_TURN_SHARED_SECRET", "0123456789abcdef")],
                "turn.urls",
            ),
            (&[("EARSHOT_STORE_URL", "mysql://db/x")], "store.url"),
            (&[("EARSHOT_STORE_URL", "earshot.db")], "store.url"),
            (&[("EARSHOT_STORE_URL", "sqlite://")], "store.url"),
            (&[("EARSHOT_STORE_URL", "postgres://[bad")], "store.url"),
            (&[("EARSHOT_STORAGE_URL", "gs://bucket/x")], "storage.url"),
            (&[("EARSHOT_STORAGE_URL", "s3://No_Such")], "storage.url"),
            (
                &[
                    ("EARSHOT_STORAGE_URL", "s3://rec/x"),
                    ("EARSHOT_STORAGE_ENDPOINT", "http://127.0.0.1:9000"),
                ],
                "storage.allow_http",
            ),
            (
                &[
                    ("EARSHOT_STORAGE_URL", "s3://rec/x"),
                    ("EARSHOT_STORAGE_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ],
                "storage.secret_access_key",
            ),
            (
                &[
                    ("EARSHOT_STORAGE_URL", "s3://rec/x"),
                    ("EARSHOT_RECORDING_DERIVE", "on_request"),
                ],
                "recording.derive",
            ),
            (
                &[("EARSHOT_STORAGE_SEGMENT_SECS", "0")],
                "storage.segment_secs",
            ),
            (
                &[("EARSHOT_STORAGE_ENDPOINT", "https://s3.example.org")],
                "storage.endpoint",
            ),
        ];
        for (vars, needle) in cases {
            let err = Config::load(None, env(vars))
                .expect_err("must be refused")
                .to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
