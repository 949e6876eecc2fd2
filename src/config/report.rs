//! `earshot check-config`: the effective configuration, every key with where its value came
//! from (the default, the file, or an `EARSHOT_*` variable), secrets masked.
//!
//! Owns: the record of sources kept while loading ([`Sources`]) and the rendering. It renders
//! what serde serializes of [`super::Config`], so a key added to a config struct shows up
//! here without a change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where one key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env(String),
}

/// The keys set by the file or the environment (`section.key` -> source); every other key
/// has its default. The environment wins over the file, as in loading.
#[derive(Debug, Clone, Default)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    pub(super) fn note_file(&mut self, path: &Path, table: &toml::Table) {
        for (section, value) in table {
            match value {
                toml::Value::Table(keys) => {
                    for key in keys.keys() {
                        self.0
                            .insert(format!("{section}.{key}"), Source::File(path.to_owned()));
                    }
                }
                _ => {
                    self.0
                        .insert(section.clone(), Source::File(path.to_owned()));
                }
            }
        }
    }

    pub(super) fn note_env(&mut self, section: &str, key: &str, var: &str) {
        self.0
            .insert(format!("{section}.{key}"), Source::Env(var.to_owned()));
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&Source> {
        self.0.get(&format!("{section}.{key}"))
    }
}

/// Key names whose values are secrets: printed as `"********"` (`credential`, `password`,
/// `token`, `master_keys`, `secret_access_key` and anything ending in `secret`, e.g. `shared_secret`; not `credential_ttl_secs`).
fn is_secret(key: &str) -> bool {
    [
        "credential",
        "password",
        "token",
        "master_keys",
        "secret_access_key",
    ]
    .contains(&key)
        || key.ends_with("secret")
}

/// `value` with every secret (at any depth) masked.
fn masked(key: &str, value: &toml::Value) -> toml::Value {
    match value {
        _ if is_secret(key) => toml::Value::String("********".into()),
        toml::Value::Table(t) => {
            toml::Value::Table(t.iter().map(|(k, v)| (k.clone(), masked(k, v))).collect())
        }
        toml::Value::Array(a) => toml::Value::Array(a.iter().map(|v| masked("", v)).collect()),
        other => other.clone(),
    }
}

/// One value as inline TOML.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => {
            let fields: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The configuration as TOML that `serve` would run with, each key followed by its source;
/// keys that are unset (no default value) are listed as comments.
pub fn render(config: &super::Config, sources: &Sources) -> Result<String, String> {
    let value = toml::Value::try_from(config).map_err(|e| e.to_string())?;
    let toml::Value::Table(sections) = value else {
        return Err("the configuration did not serialize as a table".into());
    };
    let mut out = String::new();
    for name in super::SECTIONS {
        let Some(toml::Value::Table(keys)) = sections.get(name) else {
            continue;
        };
        let _ = writeln!(out, "[{name}]");
        for (key, value) in keys {
            let line = format!("{key} = {}", inline(&masked(key, value)));
            let source = match sources.get(name, key) {
                None => "default".to_owned(),
                Some(Source::File(p)) => format!("file {}", p.display()),
                Some(Source::Env(var)) => format!("env {var}"),
            };
            let _ = writeln!(out, "{line:<48} # {source}");
        }
        for unset in super::OPTIONAL_KEYS
            .iter()
            .filter_map(|k| k.strip_prefix(name)?.strip_prefix('.'))
            .filter(|k| !keys.contains_key(*k))
        {
            let line = format!("# {unset} is not set");
            let _ = writeln!(out, "{line:<48} # default");
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    use super::super::test_env as env;

    fn line_of<'a>(report: &'a str, section: &str, key: &str) -> &'a str {
        let body = report
            .split(&format!("[{section}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no [{section}] in\n{report}"));
        body.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {section}.{key} in\n{report}"))
    }

    #[test]
    fn every_key_says_where_it_came_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[media]\nudp_port_min = 1000\nudp_port_max = 2000\n[opus]\nbitrate = 40000\n",
        )
        .expect("write");
        let (config, sources) =
            Config::load_with_sources(Some(&path), env(&[("EARSHOT_MEDIA_UDP_PORT_MAX", "3000")]))
                .expect("valid");
        let report = render(&config, &sources).expect("render");
        let file = format!("# file {}", path.display());
        assert!(line_of(&report, "media", "udp_port_min").contains("1000"));
        assert!(line_of(&report, "media", "udp_port_min").ends_with(&file));
        let max = line_of(&report, "media", "udp_port_max");
        assert!(max.starts_with("udp_port_max = 3000"), "{max}");
        assert!(max.ends_with("# env EARSHOT_MEDIA_UDP_PORT_MAX"), "{max}");
        assert!(line_of(&report, "opus", "bitrate").ends_with(&file));
        let fec = line_of(&report, "opus", "fec");
        assert!(
            fec.starts_with("fec = true") && fec.ends_with("# default"),
            "{fec}"
        );
        // Every section is there, and what the report says parses back to the same config.
        for s in crate::config::SECTIONS {
            assert!(
                report.contains(&format!("[{s}]")),
                "[{s}] missing:\n{report}"
            );
        }
        let reparsed_dir = tempfile::tempdir().expect("tempdir");
        let reparsed = reparsed_dir.path().join("effective.toml");
        std::fs::write(&reparsed, &report).expect("write");
        let again = Config::load(Some(&reparsed), env(&[])).expect("the report is a config");
        assert_eq!(format!("{again:?}"), format!("{config:?}"));
    }

    #[test]
    fn secrets_are_masked() {
        assert!(is_secret("shared_secret") && is_secret("credential"));
        assert!(is_secret("secret_access_key") && !is_secret("access_key_id"));
        assert!(!is_secret("credential_ttl_secs"));
        let (config, sources) = Config::load_with_sources(
            None,
            env(&[(
                "EARSHOT_TURN_ICE_SERVERS",
                r#"[{urls = ["turn:turn.example.org:3478"], username = "u", credential = "hunter2-very-secret"}]"#,
            )]),
        )
        .expect("valid");
        let report = render(&config, &sources).expect("render");
        assert!(!report.contains("hunter2"), "{report}");
        let line = line_of(&report, "turn", "ice_servers");
        assert!(line.contains(r#"credential = "********""#), "{line}");
        assert!(line.contains("turn:turn.example.org:3478"), "{line}");
        assert!(line.ends_with("# env EARSHOT_TURN_ICE_SERVERS"), "{line}");
        // The object store's secret key, in the report and in the config's Debug.
        let (config, sources) = Config::load_with_sources(
            None,
            env(&[
                ("EARSHOT_STORAGE_URL", "s3://recordings/eu"),
                ("EARSHOT_STORAGE_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("EARSHOT_STORAGE_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-hunter3"),
            ]),
        )
        .expect("valid");
        let report = render(&config, &sources).expect("render");
        assert!(!report.contains("hunter3"), "{report}");
        let line = line_of(&report, "storage", "secret_access_key");
        assert!(line.contains(r#""********""#), "{line}");
        assert!(!format!("{config:?}").contains("hunter3"));
    }
}
