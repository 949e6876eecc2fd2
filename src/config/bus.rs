//! `[bus]`: where live events go between processes (README "Several nodes: the NATS event
//! bus"). No `url`: the in-process hub, one process (the embedded default).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// The NATS server, `nats://host:port` (or `tls://host:port`); none: in-process.
    pub url: Option<String>,
    /// This process's name on the bus (its messages carry it so it skips its own); default
    /// `<hostname>:<listen port>-<random>`, new at each start.
    pub node_id: Option<String>,
    /// This node's HTTP base URL as the other nodes reach it (participants' WHIP requests
    /// are handed to it there); default `http://<listen address>`, or the host name and the
    /// listen port when listening on every address.
    pub advertise_url: Option<String>,
    /// What this process does (`serve --role` overrides it): `all` (the default) serves the
    /// API and holds media; `api` holds no media (participants are handed to media nodes);
    /// `media` holds media and answers only what the other nodes and operators need (health,
    /// metrics, nodes and drain, handed-off WHIP requests). `api` and `media` need `url`.
    pub role: Role,
}

/// A process's part among several (`[bus] role`, `serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Api,
    Media,
}

impl Role {
    /// Whether this process holds sessions' media.
    pub fn holds_media(self) -> bool {
        self != Role::Api
    }
}

impl BusConfig {
    /// Checks `url` and `node_id`; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            let host = url
                .strip_prefix("nats://")
                .or_else(|| url.strip_prefix("tls://"));
            let ok = host.is_some_and(|rest| {
                // host[:port], nothing else (no path, no credentials in the URL).
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (rest, None),
                };
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
                    && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0))
            });
            if !ok {
                return Err(format!(
                    "bus.url must be nats://host:port (or tls://host:port), got {url:?}"
                ));
            }
        }
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        {
            return Err(format!(
                "bus.node_id must be 1 to 64 letters, digits, '-', '_', '.' or ':', got {id:?}"
            ));
        }
        if self.role != Role::All && self.url.is_none() {
            return Err(format!(
                "bus.role {:?} needs bus.url: a process that is not all of Earshot works among others",
                self.role
            ));
        }
        if let Some(u) = &self.advertise_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "bus.advertise_url must be an http:// or https:// URL, got {u:?}"
            ));
        }
        Ok(())
    }

    /// Where the other nodes reach this one (see `advertise_url`).
    pub fn advertise_url(&self, listen: std::net::SocketAddr, tls: bool) -> String {
        if let Some(u) = &self.advertise_url {
            return u.trim_end_matches('/').to_string();
        }
        let scheme = if tls { "https" } else { "http" };
        if listen.ip().is_unspecified() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{scheme}://{host}:{}", listen.port())
        } else {
            format!("{scheme}://{listen}")
        }
    }

    /// The node id: the configured one, or `<hostname>:<port>-<random>` (the random part
    /// keeps two processes apart even with the same host name and port).
    pub fn node_id(&self, listen_port: u16) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "earshot".into());
        let random = earshot_signaling::ids::new_id("n");
        format!("{host}:{listen_port}-{}", &random[2..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> BusConfig {
        BusConfig {
            url: Some(url.into()),
            ..Default::default()
        }
    }

    #[test]
    fn urls_are_nats_host_and_port() {
        for good in [
            "nats://127.0.0.1:4222",
            "nats://nats.internal",
            "tls://n1.example:4443",
        ] {
            assert_eq!(with_url(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1:4222",
            "http://127.0.0.1:4222",
            "nats://",
            "nats://host:0",
            "nats://host:99999",
            "nats://user:pw@host:4222",
            "nats://host:4222/path",
        ] {
            let e = with_url(bad).validate().unwrap_err();
            assert!(e.starts_with("bus.url must be"), "{bad}: {e}");
        }
    }

    #[test]
    fn node_ids_are_checked_and_default_to_host_port_and_a_random_part() {
        let bad = BusConfig {
            node_id: Some("a b".into()),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("bus.node_id"));
        let named = BusConfig {
            node_id: Some("media-1".into()),
            ..Default::default()
        };
        assert_eq!(named.node_id(8080), "media-1");
        let a = BusConfig::default().node_id(8080);
        let b = BusConfig::default().node_id(8080);
        assert_ne!(a, b);
        assert!(a.contains(":8080-"), "{a}");
    }

    #[test]
    fn a_role_other_than_all_needs_a_bus() {
        let api = BusConfig {
            role: Role::Api,
            ..Default::default()
        };
        assert!(api.validate().unwrap_err().starts_with("bus.role"));
        let api = BusConfig {
            role: Role::Media,
            ..with_url("nats://127.0.0.1:4222")
        };
        assert_eq!(api.validate(), Ok(()));
        assert!(!Role::Api.holds_media() && Role::Media.holds_media() && Role::All.holds_media());
    }

    #[test]
    fn the_advertised_url_is_the_listen_address_unless_set() {
        let listen: std::net::SocketAddr = "10.0.0.5:8080".parse().unwrap();
        assert_eq!(
            BusConfig::default().advertise_url(listen, false),
            "http://10.0.0.5:8080"
        );
        let set = BusConfig {
            advertise_url: Some("https://media-1.internal:8443/".into()),
            ..Default::default()
        };
        assert_eq!(
            set.advertise_url(listen, true),
            "https://media-1.internal:8443"
        );
        let bad = BusConfig {
            advertise_url: Some("media-1:8080".into()),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("bus.advertise_url"));
    }
}
