//! The `orrery` command line.

mod bench_cmd;
mod cache;
mod checkpoint_cmds;
mod default_model;
mod device;
mod embed_cmd;
mod eval_cmd;
mod eval_report;
mod forward_cmds;
mod generate_cmd;
mod lora_cmd;
mod media_cmds;
mod memory_args;
mod merge_cmd;
mod physics_cmds;
mod policy_bench_cmd;
mod policy_cmd;
mod random_bundle_cmd;
mod sampling_args;
mod schedule_cmd;
mod serve_cmd;
mod train_cmd;
mod vae_bench_cmd;
mod vae_cmds;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "orrery",
    version,
    about = "World simulation with video foundation models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every tensor of a checkpoint (name, dtype, shape) and the parameter total.
    Inspect(checkpoint_cmds::InspectArgs),
    /// Convert a checkpoint (PyTorch .pt/.pth, safetensors, sharded folder) to one safetensors file.
    Convert(checkpoint_cmds::ConvertArgs),
    /// Generate a video from text (Text2World), an image (--image) or a video (--video), or roll robot actions out
    /// from an image with an action-conditioned model (--image --actions).
    Generate(Box<generate_cmd::GenerateArgs>),
    /// Encode a prompt with the Cosmos-Reason1 text encoder (prompt embeddings for the DiT).
    Embed(embed_cmd::EmbedArgs),
    /// Run one network on tensors from a safetensors file (to check it against the reference).
    #[command(subcommand)]
    Forward(forward_cmds::ForwardCommand),
    /// Procedural physics worlds with ground truth: datasets and previews.
    #[command(subcommand)]
    Physics(physics_cmds::PhysicsCommand),
    /// Scripted robot policies evaluated in the simulator and in action-conditioned world models.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Print a sampler's sigmas and network timesteps as JSON.
    Schedule(schedule_cmd::ScheduleArgs),
    /// The video VAE: round trips with PSNR.
    #[command(subcommand)]
    Vae(vae_cmds::VaeCommand),
    /// Train our own VAE and DiT on physics worlds.
    #[command(subcommand)]
    Train(train_cmd::TrainCommand),
    /// Image and video utilities.
    #[command(subcommand)]
    Media(media_cmds::MediaCommand),
    /// Score generated videos against real ones: PSNR, SSIM, Physics-IQ motion metrics, FID, FVD; HTML report.
    Eval(eval_cmd::EvalArgs),
    /// Merge fine-tuned models into one: soup, task arithmetic, TIES, DARE (streamed tensor by tensor).
    Merge(merge_cmd::MergeArgs),
    /// LoRA adapters on the DiT: fuse them into a model's weights.
    #[command(subcommand)]
    Lora(lora_cmd::LoraCommand),
    /// Serve an HTTP API, a persistent job queue and a web page for generation.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Write a bundle of random weights with the released 2B or 14B architecture and random prompt embeddings, to
    /// measure speed and memory (its videos are noise).
    RandomBundle(random_bundle_cmd::RandomBundleArgs),
}

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

fn main() -> ExitCode {
    // Output piped into a reader that stops early (`| head`) ends the program quietly, as for any Unix tool,
    // instead of a panic in `println!`.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    orrery_nn::alloc::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => checkpoint_cmds::inspect(&args),
        Command::Convert(args) => checkpoint_cmds::convert(&args),
        Command::Embed(args) => embed_cmd::embed(&args),
        Command::Generate(args) => generate_cmd::generate(&args),
        Command::Forward(cmd) => forward_cmds::run(cmd),
        Command::Media(cmd) => media_cmds::run(cmd),
        Command::Vae(cmd) => vae_cmds::run(cmd),
        Command::Schedule(args) => schedule_cmd::schedule(&args),
        Command::Physics(cmd) => physics_cmds::run(cmd),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Train(cmd) => train_cmd::run(cmd),
        Command::Eval(args) => eval_cmd::eval(&args),
        Command::Merge(args) => merge_cmd::merge(&args),
        Command::Lora(cmd) => lora_cmd::run(cmd),
        Command::Serve(args) => serve_cmd::serve(&args),
        Command::RandomBundle(args) => random_bundle_cmd::random_bundle(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `orrery inspect ... | head` closing the pipe early is not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Writes a text file atomically (temporary file, then rename).
/// A progress bar "MESSAGE [=====     ] 3/10 UNIT, 12s (eta 30s)"; hidden when stderr is not a terminal.
pub fn progress_bar(
    len: usize,
    unit: &str,
    message: impl Into<String>,
) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(len as u64);
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    bar.set_style(indicatif::ProgressStyle::with_template(&format!(
        "{{msg}} [{{bar:30}}] {{pos}}/{{len}}{unit}, {{elapsed}} (eta {{eta}})"
    ))?);
    bar.set_message(message.into());
    Ok(bar)
}

pub fn write_text_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    orrery_io::write_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
