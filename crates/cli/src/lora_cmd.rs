//! `orrery lora`: LoRA adapters on the DiT.

use std::path::PathBuf;

use anyhow::{Context, Result};
use orrery_dit::{DitModelDir, LoraSpec};

use crate::forward_cmds::open_loras;

#[derive(clap::Subcommand)]
pub enum LoraCommand {
    /// Fuse LoRA adapters into a DiT's weights (W + scale * alpha/r * B A) and write them as one safetensors file
    /// in official names (`net.` prefix), each tensor in its stored type, streamed tensor by tensor, atomically.
    Fuse(FuseArgs),
}

#[derive(clap::Args)]
pub struct FuseArgs {
    /// DiT model folder: a diffusers-style config.json plus weights (safetensors, sharded, or an official .pt).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter with its scale (default 1): a diffusers pytorch_lora_weights.safetensors (alpha from its
    /// metadata, else alpha = rank) or an official checkpoint with lora_A/lora_B.default keys (alpha = rank).
    /// Repeat for several adapters; their deltas add up.
    #[arg(long = "lora", value_name = "FILE[:SCALE]", required = true)]
    pub loras: Vec<LoraSpec>,
    /// Output safetensors file (written atomically). Copy config.json beside it to make a model folder.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: LoraCommand) -> Result<()> {
    match cmd {
        LoraCommand::Fuse(args) => fuse(&args),
    }
}

fn fuse(args: &FuseArgs) -> Result<()> {
    let dir = DitModelDir::open(&args.model)
        .with_context(|| format!("opening model {}", args.model.display()))?;
    let loras = open_loras(&args.loras)?;
    dir.fuse_loras(&loras, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(
        "wrote {} ({} adapter(s) fused)",
        args.out.display(),
        loras.len()
    );
    Ok(())
}
