//! `orrery serve`: flags around `orrery_server` (HTTP API, persistent job queue, web page).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use orrery_server::{EngineBackend, Guard, Placement, Server, ServerConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data folder: the job database (jobs.sqlite3), videos/ and uploads/ (created if missing).
    #[arg(long)]
    pub data: PathBuf,
    /// Model bundle folder. Default: the embedded orrery-physics-nano.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Jobs generated at once (each worker keeps its own copy of the model loaded).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub workers: u64,
    /// Every /v1 request must carry `Authorization: Bearer TOKEN`.
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Reads the token from a file (its first line), so it does not show in the process list.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body (an uploaded image or video), MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mb: u64,
    /// Prompts containing a phrase of this file (one a line, whole words, any case; `#` comments) are refused.
    #[arg(long)]
    pub blocklist: Option<PathBuf>,
    /// A program that gets each prompt on standard input and refuses it by exiting non-zero (the first line of
    /// its output is the reason given).
    #[arg(long)]
    pub guard_command: Option<PathBuf>,
    /// Seconds the guard command may take before the prompt is refused.
    #[arg(long, default_value_t = 10)]
    pub guard_timeout: u64,
    /// Where the workers run the networks.
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
    #[command(flatten)]
    pub memory: crate::memory_args::MemoryArgs,
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let model = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?,
    };
    let placement = Placement {
        device: args.device.device()?,
        memory: args.memory.options(),
    };
    let backend = EngineBackend::open_on(&model, placement)?;
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(!token.is_empty(), "{}: empty token", path.display());
            Some(token)
        }
        None => args.token.clone(),
    };
    if token.as_deref() == Some("") {
        anyhow::bail!("--token: empty");
    }
    let mut config = ServerConfig::new(&args.data);
    config.workers = args.workers as usize;
    config.token = token;
    config.max_upload = (args.max_upload_mb as usize) << 20;
    config.guard = Guard::from_files(
        args.blocklist.as_deref(),
        args.guard_command.clone(),
        Duration::from_secs(args.guard_timeout),
    )?;
    let server = Server::start(config, Arc::new(backend))?;
    tracing::info!("model {}, data {}", model.display(), args.data.display());
    orrery_server::run(server, args.addr, |addr| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
