//! Configuration reload on SIGHUP: the HTTPS certificate files are read again (new connections
//! get the new certificate), and the file and the environment are read again and validated
//! as at start; what can change while running (the Opus settings of AI audio, the recording
//! settings of the built-in script, the agent retry time, when derived files are made) applies
//! to sessions that start from then on, and every other changed key is logged as needing a
//! restart. An invalid configuration is refused with the same message as at start, and the
//! running one stays.

use crate::config::Config;
use earshot_media::engine::Engine;
use earshot_signaling::store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// Keys (or sections, ending in `.`) that a reload applies.
const RELOADABLE: [&str; 4] = ["opus.", "recording.", "agent.retry_secs", "log."];

/// Where the configuration comes from: the file and `serve`'s command-line overrides,
/// applied again after each load.
#[derive(Debug, Clone, Default)]
pub struct ReloadSource {
    pub file: Option<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// What a reload needs: where the configuration came from and what it drives.
pub struct Reloader {
    pub source: ReloadSource,
    pub current: Config,
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    /// The HTTPS certificate, read again at each reload (certificates rotate).
    pub tls: Option<earshot_signaling::routes::tls::TlsHandle>,
}

/// `section.key` of every key whose value differs between `a` and `b`.
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let table = |c: &Config| match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let (a, b) = (table(a), table(b));
    let mut out = Vec::new();
    let empty = toml::Table::new();
    for (section, av) in a.iter() {
        let at = av.as_table().unwrap_or(&empty);
        let bt = b.get(section).and_then(|v| v.as_table()).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> = at.keys().chain(bt.keys()).collect();
        for key in keys {
            if at.get(key) != bt.get(key) {
                out.push(format!("{section}.{key}"));
            }
        }
    }
    out
}

fn is_reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| {
        if r.ends_with('.') {
            key.starts_with(r)
        } else {
            key == *r
        }
    })
}

impl Reloader {
    /// Waits for SIGHUP forever, reloading at each.
    pub async fn run(mut self) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: configuration reload is off");
                return;
            }
        };
        while hup.recv().await.is_some() {
            self.reload().await;
        }
    }

    async fn reload(&mut self) {
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded: new connections get it"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload refused; the running one stays")
                }
            }
        }
        let mut new = match Config::load(self.source.file.as_deref(), std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
                return;
            }
        };
        if let Some(listen) = self.source.listen {
            new.server.listen = listen;
        }
        if let Some(dir) = &self.source.data_dir {
            new.server.data_dir = dir.clone();
        }
        // The address STUN gave at start stands for the file's empty `nat_1to1_ips`.
        if new.media.public_ip_stun.is_some() && new.media.nat_1to1_ips.is_empty() {
            new.media.nat_1to1_ips = self.current.media.nat_1to1_ips.clone();
        }
        let changed = changed_keys(&self.current, &new);
        let (applied, restart): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| is_reloadable(k));
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "changed settings need a restart to apply; the running values stay");
        }
        if applied.is_empty() {
            tracing::info!("configuration reloaded: nothing to apply");
            return;
        }
        // What is applied becomes the running configuration; the restart-only keys keep
        // their running values.
        let mut running = self.current.clone();
        running.opus = new.opus.clone();
        running.recording = new.recording.clone();
        running.agent = new.agent.clone();
        running.log = new.log.clone();
        let opus_changed = self
            .engine
            .reconfigure(&crate::wiring::engine_config(&running));
        let data_dir = running.server.data_dir.clone();
        match crate::wiring::seed_defaults(&*self.store, &data_dir, &running).await {
            Ok(prompts) if opus_changed => {
                if let Err(e) = self.engine.preload_prompts(&prompts).await {
                    tracing::warn!(error = %e, "built-in prompts not re-encoded after the reload");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "the built-in script's recording settings were not updated")
            }
        }
        if applied.iter().any(|k| k.starts_with("log.")) {
            tracing::warn!("[log] changes apply at the next start");
        }
        tracing::info!(keys = ?applied, "configuration reloaded: applied to sessions that start from now on");
        self.current = running;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_env as env;

    #[test]
    fn changed_keys_are_named_and_sorted_into_applied_and_restart() {
        let a = Config::load(None, env(&[])).expect("defaults");
        let b = Config::load(
            None,
            env(&[
                ("EARSHOT_OPUS_BITRATE", "64000"),
                ("EARSHOT_MEDIA_UDP_PORT_MIN", "40000"),
                ("EARSHOT_MEDIA_UDP_PORT_MAX", "40100"),
                ("EARSHOT_RECORDING_QUALITY", "ultra"),
            ]),
        )
        .expect("valid");
        let changed = changed_keys(&a, &b);
        assert_eq!(
            changed,
            [
                "media.udp_port_max",
                "media.udp_port_min",
                "opus.bitrate",
                "recording.quality"
            ]
        );
        let applied: Vec<&String> = changed.iter().filter(|k| is_reloadable(k)).collect();
        assert_eq!(applied, ["opus.bitrate", "recording.quality"]);
        assert!(changed_keys(&a, &a).is_empty());
        assert!(is_reloadable("agent.retry_secs") && !is_reloadable("agent.retry"));
    }
}
