//! The `earshot` binary: command line, configuration and wiring of the media plane to the
//! signaling layer. Everything else lives in the `earshot-media` and `earshot-signaling` crates.

mod config;
mod defaults;
mod rlimit;
mod secrets;
mod wiring;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // webrtc-rs warns on every DTLS handshake that it has no server name (ICE-lite peers have
    // none to give): noise for operators, so only its errors are shown.
    let default_filter = "info,rtc_dtls=error";
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EARSHOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut cfg = config::Config::load(config.as_deref(), std::env::vars())
                .context("loading configuration")?;
            if let Some(listen) = listen {
                cfg.server.listen = listen;
            }
            if let Some(dir) = data_dir {
                cfg.server.data_dir = dir;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(wiring::serve(cfg))
        }
    }
}
