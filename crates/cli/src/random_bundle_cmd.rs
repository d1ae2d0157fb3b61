//! `orrery random-bundle`: a model bundle of random weights with the released models' architecture (the 2B or
//! 14B DiT in bfloat16, the Wan2.1 VAE in float32) and random prompt embeddings, to measure speed and memory where
//! the released weights are not at hand (`tools/gpu/bench-2b.sh`). Its videos are noise. Generate with
//! `--prompt-embeds DIR/prompt_embeds.safetensors`, or give `--text-encoder TOKENIZER_JSON` for a random
//! Cosmos-Reason1-7B text encoder too (bfloat16, 14 GB), so `--prompt` and the text encoder's stage can be timed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use orrery_dit::DitConfig;
use orrery_nn::checkpoint::{write_safetensors, SafetensorsSource};
use orrery_text::QwenConfig;
use orrery_vae::{VaeConfig, WanVae};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Architecture {
    /// Cosmos-Predict2.5-2B (28 blocks, width 2048).
    #[value(name = "2b")]
    TwoB,
    /// Cosmos-Predict2.5-14B (36 blocks, width 5120).
    #[value(name = "14b")]
    FourteenB,
    /// The 2B's layout in small (a DiT of 2 blocks of width 48, 0.1 M parameters; a VAE of base width 8), to
    /// check a script quickly.
    Tiny,
}

impl Architecture {
    /// The text encoder whose embeddings the DiT reads: Cosmos-Reason1-7B, or a 2-layer one of width 32.
    fn text_config(self) -> QwenConfig {
        match self {
            Architecture::TwoB | Architecture::FourteenB => QwenConfig::reason1_7b(),
            Architecture::Tiny => QwenConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                num_key_value_heads: 1,
                ..QwenConfig::reason1_7b()
            },
        }
    }

    fn configs(self) -> (DitConfig, VaeConfig) {
        let wan = VaeConfig::wan2_1();
        match self {
            Architecture::TwoB => (DitConfig::cosmos_predict2_5_2b(), wan),
            Architecture::FourteenB => (DitConfig::cosmos_predict2_5_14b(), wan),
            Architecture::Tiny => {
                let dit = DitConfig {
                    in_channels: 4,
                    out_channels: 4,
                    model_channels: 48,
                    num_blocks: 2,
                    num_heads: 2,
                    adaln_lora_dim: 16,
                    max_size: [16, 32, 32],
                    crossattn_emb_channels: 32,
                    crossattn_proj_in_channels: Some(64),
                    ..DitConfig::cosmos_predict2_5_2b()
                };
                let vae = VaeConfig {
                    base_dim: 8,
                    decoder_base_dim: 8,
                    z_dim: 4,
                    latents_mean: wan.latents_mean[..4].to_vec(),
                    latents_std: wan.latents_std[..4].to_vec(),
                    ..wan
                };
                (dit, vae)
            }
        }
    }
}

#[derive(clap::Args)]
pub struct RandomBundleArgs {
    /// The architecture: 2b, 14b (each with the Wan2.1 VAE) or tiny.
    #[arg(long, value_enum)]
    pub config: Architecture,
    /// Output folder (transformer/, vae/ and prompt_embeds.safetensors are written in it).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the weights and embeddings.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a random text encoder in text_encoder/ (Cosmos-Reason1-7B's shape in bfloat16, 14 GB; a small
    /// one for `tiny`) with this tokenizer.json (Qwen2.5's, e.g. testdata/qwen_tokenizer/tokenizer.json).
    #[arg(long, value_name = "TOKENIZER_JSON")]
    pub text_encoder: Option<PathBuf>,
}

/// Prompt tokens of the embeddings (the Reason1 encoder's padded length).
const PROMPT_TOKENS: usize = 512;

/// Weights are uniform in [-SCALE, SCALE] (norm weights 1 +- 0.1): small, like an initialised network's, so
/// activations stay finite.
const SCALE: f32 = 0.02;

pub fn random_bundle(args: &RandomBundleArgs) -> Result<()> {
    let (dit, vae) = args.config.configs();
    let transformer = args.out.join("transformer");
    let vae_dir = args.out.join("vae");
    for dir in [&transformer, &vae_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_text(&transformer.join("config.json"), &dit.to_diffusers_json())?;
    let dit_weights = RandomWeights {
        entries: dit
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| (format!("net.{name}"), orrery_nn::DType::BF16, shape))
            .collect(),
        seed: args.seed,
    };
    write_weights(
        &dit_weights,
        &transformer.join("diffusion_pytorch_model.safetensors"),
    )?;
    write_text(&vae_dir.join("config.json"), &vae.to_diffusers_json())?;
    write_weights(
        &RandomWeights {
            entries: vae_parameter_shapes(&vae)?,
            seed: args.seed ^ 1,
        },
        &vae_dir.join("diffusion_pytorch_model.safetensors"),
    )?;
    let width = dit
        .crossattn_proj_in_channels
        .unwrap_or(dit.crossattn_emb_channels);
    let embeds = RandomWeights {
        entries: ["prompt_embeds", "negative_embeds"]
            .map(|name| {
                (
                    name.to_owned(),
                    orrery_nn::DType::F32,
                    vec![1, PROMPT_TOKENS, width],
                )
            })
            .to_vec(),
        seed: args.seed ^ 2,
    };
    write_weights(&embeds, &args.out.join("prompt_embeds.safetensors"))?;
    if let Some(tokenizer) = &args.text_encoder {
        write_text_encoder(args, tokenizer, width)?;
    }
    println!(
        "wrote {} ({} DiT parameters in bfloat16, a VAE in float32, prompt_embeds.safetensors)",
        args.out.display(),
        dit.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum::<usize>()
    );
    Ok(())
}

/// `text_encoder/`: config.json, the tokenizer and random bfloat16 weights of the architecture's text encoder,
/// whose embedding width must be what the DiT reads.
fn write_text_encoder(args: &RandomBundleArgs, tokenizer: &Path, width: usize) -> Result<()> {
    let config = args.config.text_config();
    anyhow::ensure!(
        config.embedding_width() == width,
        "the text encoder's embeddings are {} wide, the DiT reads {width}",
        config.embedding_width()
    );
    let dir = args.out.join("text_encoder");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("copying the tokenizer {}", tokenizer.display()))?;
    orrery_text::PromptTokenizer::from_dir(&dir)
        .with_context(|| format!("{} is not a usable tokenizer.json", tokenizer.display()))?;
    write_text(&dir.join("config.json"), &config.to_config_json())?;
    let weights = RandomWeights {
        entries: config
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| (name, orrery_nn::DType::BF16, shape))
            .collect(),
        seed: args.seed ^ 3,
    };
    write_weights(&weights, &dir.join("model.safetensors"))?;
    println!(
        "wrote a random text encoder ({} layers of width {}) in {}",
        config.num_hidden_layers,
        config.hidden_size,
        dir.display()
    );
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn write_weights(source: &RandomWeights, path: &Path) -> Result<()> {
    write_safetensors(source, path, None).with_context(|| format!("writing {}", path.display()))
}

/// The VAE's parameters (official names) in float32, as the network asks for them when built.
fn vae_parameter_shapes(config: &VaeConfig) -> Result<Vec<(String, orrery_nn::DType, Vec<usize>)>> {
    let varmap = VarMap::new();
    WanVae::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        config,
    )?;
    let mut entries: Vec<_> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the VAE's parameter map is poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), orrery_nn::DType::F32, var.dims().to_vec()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Tensors of random values ([`orrery_nn::init::RandomWeights`]: uniform in [-SCALE, SCALE], norm weights near 1),
/// each computed when written from the seed and its name.
struct RandomWeights {
    entries: Vec<(String, orrery_nn::DType, Vec<usize>)>,
    seed: u64,
}

impl SafetensorsSource for RandomWeights {
    fn entries(&self) -> Vec<(String, orrery_nn::DType, Vec<usize>)> {
        self.entries.clone()
    }

    fn tensor_bytes(&self, name: &str) -> orrery_nn::checkpoint::Result<Cow<'_, [u8]>> {
        let Some((_, dtype, shape)) = self.entries.iter().find(|e| e.0 == name) else {
            return Err(orrery_nn::checkpoint::CheckpointError::Tensor {
                name: name.to_owned(),
                detail: "not a tensor of the random bundle".into(),
            });
        };
        // A uniform distribution of half width SCALE has standard deviation SCALE / sqrt(3).
        let values = orrery_nn::init::RandomWeights::new(self.seed, f64::from(SCALE) / 3f64.sqrt())
            .values(name, shape.iter().product(), shape.len());
        let bytes = if *dtype == orrery_nn::DType::BF16 {
            values
                .iter()
                .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                .collect()
        } else {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        Ok(Cow::Owned(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_small_varied_and_fixed_by_seed_and_name() {
        let source = |seed| RandomWeights {
            entries: ["a", "b"]
                .map(|n| (n.to_owned(), orrery_nn::DType::F32, vec![1000]))
                .to_vec(),
            seed,
        };
        let values = |s: &RandomWeights, name: &str| -> Vec<f32> {
            s.tensor_bytes(name)
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let a = values(&source(0), "a");
        assert!(a.iter().all(|v| v.abs() <= SCALE));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < SCALE / 10.0, "{mean}");
        assert_eq!(a, values(&source(0), "a"));
        assert_ne!(a, values(&source(0), "b"));
        assert_ne!(a, values(&source(1), "a"));
        assert!(source(0).tensor_bytes("c").is_err());
    }
}
