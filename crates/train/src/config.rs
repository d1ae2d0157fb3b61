//! Run configurations (JSON). Every field is explicit in the resolved configuration written beside each
//! checkpoint; unknown fields are refused so that a typo does not silently train something else.

use std::path::{Path, PathBuf};

use orrery_dit::DitConfig;
use orrery_vae::VaeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::error::{Result, TrainError};
use crate::optim::OptimConfig;

/// Schedule of a run: length, batch, checkpoints and samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where checkpoints, plots, samples and the final model go (relative paths: to the config file).
    pub out_dir: PathBuf,
    pub seed: u64,
    pub steps: usize,
    pub batch_size: usize,
    pub checkpoint_every: usize,
    pub keep_checkpoints: usize,
    /// Sample GIFs every this many steps (0: only at the end).
    pub sample_every: usize,
}

/// The shape of a Wan-architecture VAE to train (latent statistics are measured after training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeShape {
    pub base_dim: usize,
    /// Width of the decoder's last stage (`base_dim` when absent). A decoder wider than its `init_from`
    /// source's starts as that decoder widened (computing the same); a narrower one from random weights.
    #[serde(default)]
    pub decoder_base_dim: Option<usize>,
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub temporal_downsample: Vec<bool>,
}

impl VaeShape {
    pub fn config(&self) -> VaeConfig {
        VaeConfig {
            base_dim: self.base_dim,
            decoder_base_dim: self.decoder_base_dim.unwrap_or(self.base_dim),
            z_dim: self.z_dim,
            dim_mult: self.dim_mult.clone(),
            num_res_blocks: self.num_res_blocks,
            temporal_downsample: self.temporal_downsample.clone(),
            latents_mean: vec![0.0; self.z_dim],
            latents_std: vec![1.0; self.z_dim],
        }
    }
}

/// The per-pixel reconstruction error of the VAE loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    /// |x - y|.
    #[default]
    L1,
    /// (x - y)^2. On flat-coloured worlds a small VAE under L1 settles at the background's median and keeps the
    /// few object pixels blurred (about 25 dB on one frame after 300 steps); squared error keeps pulling on
    /// them (over 33 dB in the same steps).
    Mse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeLoss {
    /// The per-pixel reconstruction error (default L1).
    #[serde(default)]
    pub reconstruction: Reconstruction,
    /// Weight of the KL term (mean over latent elements).
    pub kl_weight: f64,
    /// Weight of the L1 loss on horizontal and vertical pixel differences (sharp edges).
    pub edge_weight: f64,
    /// Decode a sample of the posterior (true) or its mean (false: a deterministic autoencoder whose latent scale
    /// the KL term still bounds; small VAEs learn detail much sooner this way).
    #[serde(default = "yes")]
    pub sample_posterior: bool,
    /// Extra reconstruction weight on foreground pixels (far from their frame's median colour): the objects, a
    /// percent of the pixels, which a plain L1 loss lets a small VAE drop (0: off).
    #[serde(default)]
    pub object_weight: f64,
    /// Only foreground pixels whose colour covers at most this fraction of their frame get `object_weight`
    /// (the balls, not the ground); 1: all foreground pixels.
    #[serde(default = "one")]
    pub object_max_fraction: f64,
    /// Gaussian noise added to the decoder's input latents, as a fraction of each latent channel's batch std:
    /// the decoder learns to turn imperfect latents (a DiT's predictions) into clean frames instead of texture
    /// (0: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latent_noise: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeTrainConfig {
    pub run: RunConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub model: VaeShape,
    pub loss: VaeLoss,
    /// Pixel frames of each training crop (1 + 4k).
    pub crop_frames: usize,
    /// Side of the square spatial crop (the network is convolutional; smaller crops train faster).
    pub crop_size: u32,
    /// Clips encoded after training to measure the latent mean and std.
    pub stats_clips: usize,
    /// Fine-tune: start from the weights of this VAE folder (same shape) instead of a fresh initialisation
    /// (relative paths: to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Train the decoder only (needs `init_from`): the encoder, the latent space and its statistics stay those
    /// of the source, so a DiT trained on the source's latents works unchanged with the new decoder.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_encoder: bool,
    /// Decode a world model's predictions instead of the encoder's latents (needs `freeze_encoder`, whole
    /// frames): the decoder learns to turn what the DiT predicts into the real frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_latents: Option<PredictedLatents>,
}

/// Where the decoder's training latents come from when they are a world model's predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictedLatents {
    /// Model bundle whose DiT and text encoder predict, trained on the latents of `init_from`'s encoder
    /// (relative paths: to the config file).
    pub bundle: PathBuf,
    /// Sampling steps and guidance of the predictions: those the new bundle will be sampled with.
    pub steps: usize,
    pub guidance: f64,
    /// Probabilities of 0, 1, 2, ... conditioning latent frames (Text2World, Image2World, Video2World).
    pub cond_probs: Vec<f64>,
}

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
    /// network, grown in depth (`crate::grow`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow_blocks: bool,
    /// With `init_from`: the model is a whole multiple k of the source DiT's width, with k times its heads, and
    /// starts as the source network, its channels copied (`crate::grow_width`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow_width: bool,
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Probabilities that are non-negative and sum to 1.
fn check_probabilities(name: &str, p: &[f64]) -> std::result::Result<(), String> {
    check(
        p.iter().all(|x| *x >= 0.0) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-6,
        || format!("{name} {p:?} must be non-negative and sum to 1"),
    )
}

impl RunConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        check(self.steps > 0, || "run.steps must be positive".into())?;
        check(self.batch_size > 0 && self.batch_size <= 4096, || {
            format!("run.batch_size {}: expected 1 to 4096", self.batch_size)
        })?;
        check(self.checkpoint_every > 0, || {
            "run.checkpoint_every must be positive".into()
        })
    }
}

impl VaeTrainConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        self.optim.validate()?;
        self.model
            .config()
            .validate()
            .map_err(|e| format!("model: {e}"))?;
        let c = self.model.config();
        check(
            self.crop_frames >= 1
                && (self.crop_frames - 1).is_multiple_of(c.temporal_factor())
                && self.crop_frames <= self.data.frames,
            || {
                format!(
                    "crop_frames {} must be 1 + {} k and at most data.frames {}",
                    self.crop_frames,
                    c.temporal_factor(),
                    self.data.frames
                )
            },
        )?;
        let s = c.spatial_factor() as u32;
        check(
            self.data.width.is_multiple_of(s) && self.data.height.is_multiple_of(s),
            || format!("data size must be a multiple of the VAE's {s}"),
        )?;
        check(
            self.crop_size > 0
                && self.crop_size.is_multiple_of(s)
                && self.crop_size <= self.data.width.min(self.data.height),
            || {
                format!(
                    "crop_size {} must be a multiple of {s} within the frame",
                    self.crop_size
                )
            },
        )?;
        check(self.stats_clips > 0, || {
            "stats_clips must be positive".into()
        })?;
        check(!self.freeze_encoder || self.init_from.is_some(), || {
            "freeze_encoder needs init_from (the VAE whose encoder to keep)".into()
        })?;
        let Some(p) = &self.predicted_latents else {
            return Ok(());
        };
        check(self.freeze_encoder, || {
            "predicted_latents needs freeze_encoder (the DiT's latent space must stay)".into()
        })?;
        check(
            self.crop_size == self.data.width && self.crop_size == self.data.height,
            || "predicted_latents needs whole frames (crop_size = data.width = data.height)".into(),
        )?;
        check(p.steps > 0, || {
            "predicted_latents.steps must be positive".into()
        })?;
        check(p.guidance.is_finite(), || {
            "predicted_latents.guidance must be finite".into()
        })?;
        check_probabilities("predicted_latents.cond_probs", &p.cond_probs)
    }
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
        check(self.sample_steps > 0, || {
            "sample_steps must be positive".into()
        })
    }
}

/// Reads a JSON configuration, resolves relative paths against its folder and validates it.
pub fn read_config<T: DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&mut T, &Path) -> std::result::Result<(), String>,
) -> Result<T> {
    let fail = |detail: String| TrainError::Config {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut config: T = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(&mut config, base).map_err(fail)?;
    Ok(config)
}

/// `path` relative to `base` unless absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

impl VaeTrainConfig {
    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.init_from = c.init_from.as_ref().map(|p| resolve(base, p));
            if let Some(p) = &mut c.predicted_latents {
                p.bundle = resolve(base, &p.bundle);
            }
            c.validate()
        })
    }
}

impl DitTrainConfig {
    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.vae = resolve(base, &c.vae);
            c.init_from = c.init_from.as_ref().map(|p| resolve(base, p));
            c.validate()
        })
    }
}
