//! The `earshot` binary: command line, configuration and wiring of the media plane to the
//! signaling layer. Everything else lives in the `earshot-media` and `earshot-signaling` crates.

mod cli_user;
mod config;
mod defaults;
mod fonts;
mod master_keys;
mod node;
mod reload;
mod rlimit;
mod secrets;
mod wiring;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "earshot",
    version,
    about = "WebRTC media server for AI-led voice interviews"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML config file (every key can also be set as EARSHOT_<SECTION>_<KEY>).
        #[arg(long, env = "EARSHOT_CONFIG")]
        config: Option<PathBuf>,
        /// Address for HTTP (overrides [server] listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory: database, recordings, admin token (overrides [server] data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// What this process does among several (overrides [bus] role): all, api or media.
        #[arg(long, value_enum)]
        role: Option<config::bus::Role>,
    },
    /// Validate the configuration and print it as `serve` would run with it: every key, where
    /// its value came from (default, file, environment), secrets masked. Exits non-zero with
    /// the same message as `serve` when it is invalid. Creates nothing.
    CheckConfig {
        /// TOML config file (as for `serve`).
        #[arg(long, env = "EARSHOT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The master keys of encryption at rest (README "Encryption at rest").
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users (see README "Users, roles and the audit log").
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// Where the `keys` commands find the configuration and the data directory (as `serve`).
#[derive(Args)]
struct Place {
    /// TOML config file (as for `serve`).
    #[arg(long, env = "EARSHOT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides [server] data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new current master key to the key file, then rewrap every recording's data key
    /// under it (headers only). Restart the server afterwards so new recordings use it.
    Rotate {
        #[command(flatten)]
        place: Place,
        /// The new key's id (default: the next k<n>).
        #[arg(long)]
        id: Option<String>,
    },
    /// Rewrap every recording's data key under the current key (finishes an interrupted
    /// rotation, or follows a new first key in EARSHOT_ENCRYPTION_MASTER_KEYS).
    Rewrap {
        #[command(flatten)]
        place: Place,
    },
    /// Remove a key that is not current from the key file; refused while any recording is
    /// still sealed under it.
    Remove {
        #[command(flatten)]
        place: Place,
        /// The key's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from EARSHOT_PASSWORD. Prints the new user's id.
    Add {
        /// TOML config file (for [server] data_dir).
        #[arg(long, env = "EARSHOT_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory (overrides [server] data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// May do everything, as the admin token does.
        #[arg(long)]
        superuser: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            role,
        } => {
            let mut cfg = config::Config::load(config.as_deref(), std::env::vars())
                .context("loading configuration")?;
            init_logging(&cfg.log);
            if let Some(listen) = listen {
                cfg.server.listen = listen;
            }
            if let Some(dir) = &data_dir {
                cfg.server.data_dir = dir.clone();
            }
            if let Some(role) = role {
                cfg.bus.role = role;
                cfg.bus.validate().map_err(|e| anyhow::anyhow!(e))?;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let source = reload::ReloadSource {
                file: config,
                listen,
                data_dir,
            };
            runtime.block_on(wiring::serve(cfg, source))
        }
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::User {
            command:
                UserCommand::Add {
                    config,
                    data_dir,
                    email,
                    name,
                    superuser,
                },
        } => {
            let mut cfg = config::Config::load(config.as_deref(), std::env::vars())
                .context("loading configuration")?;
            if let Some(dir) = data_dir {
                cfg.server.data_dir = dir;
            }
            let store_url = cfg.store_url().context("loading configuration")?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(cli_user::add(
                &cfg.server.data_dir,
                &store_url,
                email,
                name,
                superuser,
                std::env::var(cli_user::PASSWORD_VAR).ok(),
            ))
        }
        Command::Keys(command) => keys(command),
    }
}

/// `earshot keys ...`: what was done on standard output (a command's output, not a log).
fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let place = match &command {
        KeysCommand::Rotate { place, .. }
        | KeysCommand::Rewrap { place }
        | KeysCommand::Remove { place, .. } => place,
    };
    let cfg = config::Config::load(place.config.as_deref(), std::env::vars())
        .context("loading configuration")?;
    let data_dir = place
        .data_dir
        .clone()
        .unwrap_or_else(|| cfg.server.data_dir.clone());
    let enc = &cfg.encryption;
    let said = |r: master_keys::Rewrapped| {
        format!(
            "{} recording file(s) rewrapped, {} already under the current key, {} plain",
            r.rewrapped, r.current, r.plain
        )
    };
    let out = match command {
        KeysCommand::Rotate { id, .. } => {
            let (id, done) = master_keys::rotate(enc, &data_dir, id)?;
            format!(
                "key {id} added and made current; {}. Restart the server so new recordings \
                 use it; the old key can then be removed with `earshot keys remove`.",
                said(done)
            )
        }
        KeysCommand::Rewrap { .. } => said(master_keys::rewrap(enc, &data_dir)?),
        KeysCommand::Remove { id, .. } => {
            master_keys::remove(enc, &data_dir, &id)?;
            format!("key {id} removed")
        }
    };
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{out}").context("writing the report")?;
    Ok(())
}

/// Logs to standard output as text or JSON lines; `EARSHOT_LOG` overrides the filter.
fn init_logging(log: &config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EARSHOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// `earshot check-config`: the report on standard output (a command's output, not a log).
fn check_config(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let (cfg, sources) = config::Config::load_with_sources(file, std::env::vars())
        .context("loading configuration")?;
    let report = config::report::render(&cfg, &sources).map_err(anyhow::Error::msg)?;
    let token = match std::env::var(secrets::ADMIN_TOKEN_VAR) {
        Ok(_) => format!(
            "from the environment ({}, masked)",
            secrets::ADMIN_TOKEN_VAR
        ),
        Err(_) => {
            let path = cfg.server.data_dir.join("admin_token");
            if path.exists() {
                format!("from {}", path.display())
            } else {
                format!("none yet: `serve` generates one into {}", path.display())
            }
        }
    };
    let keys = if cfg.encryption.master_keys.is_some() {
        "from encryption.master_keys (masked)".to_string()
    } else {
        let path = cfg.encryption.key_file_path(&cfg.server.data_dir);
        match (path.exists(), cfg.encryption.enabled) {
            (true, _) => format!("from {}", path.display()),
            (false, true) => format!("none yet: `serve` generates one into {}", path.display()),
            (false, false) => "none (encryption off: recordings are plain)".to_string(),
        }
    };
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "# earshot {}: the configuration is valid\n\n{report}# derived\n\
         # public URL (invite links)    {}\n\
         # media host candidates on     {}\n\
         # prompts directory            {}\n\
         # admin token                  {token}\n\
         # master keys (recordings)     {keys}\n",
        env!("CARGO_PKG_VERSION"),
        cfg.public_url(),
        std::iter::once(cfg.media_ip())
            .chain(cfg.media.extra_bind_ips.iter().copied())
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.prompts_dir().display(),
    )
    .context("writing the report")?;
    Ok(())
}
