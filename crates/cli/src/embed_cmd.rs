//! `orrery embed`: the Cosmos prompt embedding of one prompt, through the on-disk prompt cache.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use orrery_nn::checkpoint::save_tensors;
use orrery_text::{Overflow, PromptCache, Reason1Embedder, TextWeights};

use orrery_pipeline::WeightType;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Hugging Face Cosmos-Reason1 / Qwen2.5-VL folder (config.json, tokenizer.json, safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Output safetensors file with `prompt_embeds` (1, 512, layers x hidden).
    #[arg(long)]
    pub out: PathBuf,
    /// Prompt-embedding cache folder: a prompt already encoded by the same encoder is read from it, a new one is
    /// added to it.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// f32 or bf16 (the reference runs the encoder in bf16).
    #[arg(long, default_value = "bf16")]
    pub dtype: WeightType,
    /// Cut prompts longer than 512 tokens as the reference does, instead of refusing them.
    #[arg(long)]
    pub truncate: bool,
    /// Linear weights in 8 bits (Q8_0): about half of bf16's memory; the embedding changes slightly and is
    /// cached apart from the full encoder's.
    #[arg(long)]
    pub text_encoder_8bit: bool,
    /// The text encoder runs here; the embedding is written from the CPU.
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

pub fn embed(args: &EmbedArgs) -> Result<()> {
    let dtype = args.dtype.dtype();
    let device = args.device.device()?;
    let cpu = Device::Cpu;
    let overflow = if args.truncate {
        Overflow::Truncate
    } else {
        Overflow::Error
    };
    let cache = args.cache.as_deref().map(PromptCache::new).transpose()?;
    let weights = TextWeights::eight_bit(args.text_encoder_8bit);
    let fingerprint =
        Reason1Embedder::fingerprint_with_tokenizer(&args.model, &args.model, dtype, weights)?;
    let cached = cache
        .as_ref()
        .and_then(|c| c.get(&fingerprint, &args.prompt, &cpu));
    let embeds = match cached {
        Some(e) => {
            tracing::info!("prompt found in the cache");
            e
        }
        None => {
            let embedder = Reason1Embedder::open_with_tokenizer(
                &args.model,
                &args.model,
                dtype,
                weights,
                &device,
            )?;
            let e = embedder.embed(&args.prompt, overflow)?.to_device(&cpu)?;
            if let Some(c) = &cache {
                c.put(&fingerprint, &args.prompt, &e)?;
            }
            e
        }
    };
    save_tensors(&args.out, vec![("prompt_embeds".into(), embeds)])
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("wrote {}", args.out.display());
    Ok(())
}
