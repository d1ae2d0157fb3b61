//! The DiT trainer's configuration (JSON): the network, its word encoder, flow-matching settings and fine-tuning.

use std::path::{Path, PathBuf};

use candle_core::DType;
use orrery_dit::{DitConfig, LoraShape};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::trainer::config::{check, check_probabilities, read_config, resolve, RunConfig};
use crate::trainer::data::DataConfig;
use crate::trainer::optim::OptimConfig;

/// The small text encoder trained with the DiT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextShape {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_tokens: usize,
}

/// Flow-matching settings (spec sections 3.1 and 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTraining {
    /// Shift of the logit-normal sigma table.
    pub shift: f64,
    pub high_sigma_prob: f64,
    /// Probability of training on the zero (unconditional) text embedding.
    pub caption_dropout: f64,
    /// Probabilities of 0, 1, 2, ... conditioning latent frames (the reference's `conditional_frames_probs`,
    /// {0: 0.5, 1: 0.25, 2: 0.25}); a Video2World model conditioned on more frames needs entries beyond 2.
    pub cond_probs: Vec<f64>,
    /// Network timestep of conditioning frames in scheduler units (x `timestep_scale`); negative: the
    /// frames' own sigma.
    pub cond_timestep: f64,
    pub timestep_scale: f64,
    /// Probability that a step trains on single frames (images) instead of clips.
    pub image_batch_prob: f64,
}

/// LoRA fine-tuning (posttraining-spec §1); every key may be left out, the defaults are the official recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraTraining {
    pub rank: usize,
    pub alpha: f64,
    /// Official module names (`q_proj`, `mlp.layer1`, `cross_attn.v_proj`): every block Linear whose name ends
    /// with one is adapted.
    pub targets: Vec<String>,
    /// Hold and run the frozen DiT's blocks in bfloat16 (as the reference trains), the adapters and the DiT's
    /// float32 parts in float32: the base takes half the memory. Samples during training run on this base; the
    /// fused export reads the float32 base again from `init_from`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bf16_base: bool,
}

impl Default for LoraTraining {
    fn default() -> Self {
        let shape = LoraShape::default();
        Self {
            rank: shape.rank,
            alpha: shape.alpha,
            targets: shape.targets,
            bf16_base: false,
        }
    }
}

impl LoraTraining {
    /// The type the frozen DiT's blocks are held and run in.
    pub fn base_dtype(&self) -> DType {
        if self.bf16_base {
            DType::BF16
        } else {
            DType::F32
        }
    }

    pub fn shape(&self) -> LoraShape {
        LoraShape {
            rank: self.rank,
            alpha: self.alpha,
            targets: self.targets.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitTrainConfig {
    pub run: RunConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    /// The trained VAE folder whose latents the DiT learns (relative paths: to the config file).
    pub vae: PathBuf,
    pub model: DitConfig,
    pub text: TextShape,
    pub flow: FlowTraining,
    /// Sampling steps of the sample GIFs and the exported bundle's default.
    pub sample_steps: usize,
    pub sample_guidance: f64,
    /// Fine-tune: start from the DiT and word encoder of this model bundle (same shapes and caption vocabulary)
    /// instead of a fresh initialisation (relative paths: to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// With `init_from`: the model has a whole multiple of the source DiT's blocks and starts as the source
    /// network, grown in depth (`crate::surgery::grow`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow_blocks: bool,
    /// With `init_from`: the model is a whole multiple k of the source DiT's width, with k times its heads, and
    /// starts as the source network, its channels copied (`crate::surgery::grow_width`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow_width: bool,
    /// With `init_from`: LoRA fine-tuning (posttraining-spec §1). The bundle's DiT and word encoder stay frozen
    /// and only adapters on the targeted block Linears train; keys left out take the official recipe (rank 32,
    /// alpha 32, q/k/v/output projections of both attentions and both MLP layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraTraining>,
    /// Keep only each DiT block's input through the forward pass and run the block again in the backward pass
    /// (activation checkpointing per block): the step's activation memory falls to one block's plus the block
    /// inputs, for about one more forward pass of the blocks. The gradients are the same up to float rounding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub activation_checkpointing: bool,
}

impl DitTrainConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        self.optim.validate()?;
        self.model.validate().map_err(|e| format!("model: {e}"))?;
        check(self.model.text_input_channels() == self.text.width, || {
            format!(
                "the DiT reads text of width {}, the text encoder makes {}",
                self.model.text_input_channels(),
                self.text.width
            )
        })?;
        check_probabilities("flow.cond_probs", &self.flow.cond_probs)?;
        check((0.0..=1.0).contains(&self.flow.caption_dropout), || {
            "flow.caption_dropout must be in [0, 1]".into()
        })?;
        check((0.0..=1.0).contains(&self.flow.image_batch_prob), || {
            "flow.image_batch_prob must be in [0, 1]".into()
        })?;
        check(self.flow.shift > 0.0, || {
            "flow.shift must be positive".into()
        })?;
        check(!self.grow_blocks || self.init_from.is_some(), || {
            "grow_blocks needs init_from (the DiT to grow)".into()
        })?;
        check(!self.grow_width || self.init_from.is_some(), || {
            "grow_width needs init_from (the DiT to grow)".into()
        })?;
        check(!(self.grow_blocks && self.grow_width), || {
            "grow_blocks and grow_width grow one way at a time: grow the depth, export, then the width".into()
        })?;
        if let Some(lora) = &self.lora {
            lora.shape().validate()?;
            check(self.init_from.is_some(), || {
                "lora needs init_from (the bundle whose DiT the adapters fine-tune)".into()
            })?;
            check(!(self.grow_blocks || self.grow_width), || {
                "lora trains adapters on the bundle's network as it is: grow first, export, then fine-tune".into()
            })?;
        }
        check(self.sample_steps > 0, || {
            "sample_steps must be positive".into()
        })
    }
}

impl DitTrainConfig {
    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.vae = resolve(base, &c.vae);
            c.init_from = c.init_from.as_ref().map(|p| resolve(base, p));
            c.data.resolve_paths(base);
            c.validate()
        })
    }
}
