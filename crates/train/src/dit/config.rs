//! The DiT trainer's configuration (JSON): the network, its word encoder, flow-matching settings and fine-tuning.
//!
//! A run from a released-format bundle (`init_from` a diffusers folder or the official `.pt` layout whose text
//! encoder is Reason1) takes `model` and `vae` from the bundle and has no `text` section: the Reason1 encoder is
//! frozen. Left out, `optim` and `flow` are the official post-training recipe ([`OptimConfig::official`],
//! [`FlowTraining::official_post_training`]).

use std::path::{Path, PathBuf};

use candle_core::DType;
use orrery_dit::{ActionConfig, DitConfig, LoraShape};
use orrery_physics::families::{FAMILIES, MANIPULATION_FAMILIES};
use orrery_physics::manip::MODEL_ACTION_DIM;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::trainer::config::{
    check, check_probabilities, is_zero, read_config, resolve, RunConfig,
};
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
    /// Extra loss weight on the latent cells that hold an object (`crate::dit::objects`): a cell's squared
    /// velocity error counts `1 + object_weight` times (the loss stays a weighted mean). 0: the reference's
    /// uniform weight.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub object_weight: f64,
    /// With `object_weight`: only foreground colours covering at most this fraction of a frame are objects (the
    /// blocks and balls, not the ground or a wall).
    #[serde(
        default = "default_object_fraction",
        skip_serializing_if = "is_default_object_fraction"
    )]
    pub object_max_fraction: f64,
}

fn default_object_fraction() -> f64 {
    0.05
}

fn is_default_object_fraction(x: &f64) -> bool {
    *x == default_object_fraction()
}

impl FlowTraining {
    /// The official post-training settings, the default of a config without `flow` (posttraining-spec §1.1;
    /// `cosmos_predict2/experiments/base/cosmos_nemo_assets.py` on top of the 2B pre-training experiment
    /// `..._rectified_flow_only` in `configs/video2world/experiment/reason_embeddings/
    /// model_2B_reason_1p1_rectified_flow.py`): shift 5, no high-sigma draws, caption dropout 0.2 (the text
    /// conditioner's `dropout_rate`), 0, 1 or 2 conditioning latent frames with probability 1/3 each
    /// (`conditional_frames_probs={0: 0.333, 1: 0.333, 2: 0.334}`), the conditioning frames' own sigma as their
    /// timestep (`conditional_frame_timestep=-1`), `timestep_scale` 0.001, video batches only.
    pub fn official_post_training() -> Self {
        Self {
            shift: 5.0,
            high_sigma_prob: 0.0,
            caption_dropout: 0.2,
            cond_probs: vec![0.333, 0.333, 0.334],
            cond_timestep: -1.0,
            timestep_scale: 0.001,
            image_batch_prob: 0.0,
            object_weight: 0.0,
            object_max_fraction: default_object_fraction(),
        }
    }

    /// The foreground fraction of the object cells the loss weights, where it weights them.
    pub fn object_fraction(&self) -> Option<f64> {
        (self.object_weight > 0.0).then_some(self.object_max_fraction)
    }
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
    /// Left out: the official recipe ([`OptimConfig::official`]).
    #[serde(default = "OptimConfig::official")]
    pub optim: OptimConfig,
    /// The trained VAE folder whose latents the DiT learns (relative paths: to the config file). Left out with a
    /// released-format `init_from`: the bundle's (given, it must be the bundle's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<PathBuf>,
    /// Left out with a released-format `init_from`: the bundle's DiT (given, it must equal the bundle's). With
    /// `action`, an action-conditioned DiT trained on clips that record actions (see the trainer's module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<DitConfig>,
    /// orrery's word encoder trained with the DiT; absent for a bundle whose text encoder is Reason1 (frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextShape>,
    /// Left out: the official post-training settings ([`FlowTraining::official_post_training`]).
    #[serde(default = "FlowTraining::official_post_training")]
    pub flow: FlowTraining,
    /// Sampling steps of the sample GIFs and the exported bundle's default (a fine-tune keeps its bundle's).
    #[serde(default = "default_sample_steps")]
    pub sample_steps: usize,
    #[serde(default = "default_sample_guidance")]
    pub sample_guidance: f64,
    /// Fine-tune: start from the DiT (and word encoder) of this model bundle instead of a fresh initialisation
    /// (relative paths: to the config file). An orrery bundle keeps its word encoder (same shapes and caption
    /// vocabulary); a released-format bundle (diffusers folder or official `.pt` layout, any preset) with a
    /// Reason1 text encoder keeps it frozen, each caption embedded once into the run folder's prompt cache.
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
    /// With `init_from`: LoRA fine-tuning (posttraining-spec §1). The bundle's DiT and text encoder stay frozen
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

/// The 2B post-trained sampling defaults (35 steps, guidance 7), where a config leaves them out.
fn default_sample_steps() -> usize {
    35
}

fn default_sample_guidance() -> f64 {
    7.0
}

impl DitTrainConfig {
    /// The DiT's configuration: given, or (released-format runs) filled in from the bundle by the trainer.
    pub fn model(&self) -> std::result::Result<&DitConfig, String> {
        self.model.as_ref().ok_or_else(|| {
            "model: a run that does not start from a released-format bundle needs the DiT's shape".into()
        })
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        self.optim.validate()?;
        if let Some(model) = &self.model {
            model.validate().map_err(|e| format!("model: {e}"))?;
        }
        if let (Some(model), Some(text)) = (&self.model, &self.text) {
            check(model.text_input_channels() == text.width, || {
                format!(
                    "the DiT reads text of width {}, the text encoder makes {}",
                    model.text_input_channels(),
                    text.width
                )
            })?;
        }
        check(
            self.init_from.is_some()
                || (self.model.is_some() && self.text.is_some() && self.vae.is_some()),
            || {
                "a run from scratch needs `model`, `text` and `vae` (only a released-format `init_from` bundle \
                 gives them)"
                    .into()
            },
        )?;
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
        check(
            self.flow.object_weight >= 0.0 && self.flow.object_weight.is_finite(),
            || "flow.object_weight must be 0 or more".into(),
        )?;
        check(
            self.flow.object_max_fraction > 0.0 && self.flow.object_max_fraction <= 1.0,
            || "flow.object_max_fraction must be in (0, 1]".into(),
        )?;
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
        if let Some(action) = self.model.as_ref().and_then(|m| m.action) {
            self.validate_action_training(action)?;
        }
        check(self.sample_steps > 0, || {
            "sample_steps must be positive".into()
        })
    }

    /// An action-conditioned model (`model.action`) trains on clips that record actions (the manipulation
    /// families), with the official conditioning: exactly 1 conditioning latent frame (the start frame), video
    /// batches only, the whole network trained (no LoRA, no growth). The ratio against the VAE is checked by the
    /// trainer, which opens the VAE.
    fn validate_action_training(&self, action: ActionConfig) -> std::result::Result<(), String> {
        let manip = MANIPULATION_FAMILIES.join(", ");
        check(self.data.videos.is_none(), || {
            format!(
                "model.action: an action-conditioned model trains on clips that record actions, and data.videos \
                 (a folder of videos) has none; use the physics families that record them ({manip})"
            )
        })?;
        check(!self.data.families.is_empty(), || {
            format!(
                "model.action: data.families is empty (every family), and the families {} record no actions; an \
                 action-conditioned model trains on the families that record them ({manip})",
                FAMILIES.join(", ")
            )
        })?;
        if let Some(family) = self
            .data
            .families
            .iter()
            .find(|f| !MANIPULATION_FAMILIES.contains(&f.as_str()))
        {
            return Err(format!(
                "model.action: the family {family:?} records no actions; an action-conditioned model trains on the \
                 families that record them ({manip})"
            ));
        }
        check(action.action_dim == MODEL_ACTION_DIM, || {
            format!(
                "model.action.action_dim is {}; the gripper's actions are {MODEL_ACTION_DIM} wide ([dx, dy, \
                 dtheta, grip] as `policy eval --model` feeds them)",
                action.action_dim
            )
        })?;
        check(self.flow.cond_probs == [0.0, 1.0], || {
            format!(
                "model.action: an action-conditioned model trains on 1 conditioning latent frame (the start \
                 frame), as the official recipe does; set flow.cond_probs to [0.0, 1.0] (it is {:?})",
                self.flow.cond_probs
            )
        })?;
        check(self.flow.image_batch_prob == 0.0, || {
            "model.action: an action-conditioned model trains on clips (actions between frames); set \
             flow.image_batch_prob to 0"
                .into()
        })?;
        check(self.lora.is_none(), || {
            "model.action: the action embedders are new weights trained with the whole network; LoRA fine-tuning \
             of an action-conditioned model is not supported (leave `lora` out)"
                .into()
        })?;
        check(!(self.grow_blocks || self.grow_width), || {
            "model.action: grow the network first (without actions), export, then train the action model".into()
        })
    }
}

impl DitTrainConfig {
    /// The configuration as a run uses it (what `--dry-run` prints): with a released-format `init_from`, the
    /// bundle's `model` and `vae` filled in, and settings that contradict the bundle refused.
    pub fn resolved(mut self) -> Result<Self> {
        if let Some(path) = &self.init_from {
            if let Some(bundle) = crate::dit::released::open_released(path)? {
                crate::dit::released::resolve_from_bundle(&mut self, &bundle)?;
            }
        }
        Ok(self)
    }

    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.vae = c.vae.as_ref().map(|p| resolve(base, p));
            c.init_from = c.init_from.as_ref().map(|p| resolve(base, p));
            c.data.resolve_paths(base);
            c.validate()
        })
    }
}
