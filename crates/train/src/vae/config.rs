//! The VAE trainer's configuration (JSON): the shape to train, the loss, crops, fine-tuning and predicted latents.

use std::path::{Path, PathBuf};

use orrery_vae::VaeConfig;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::trainer::config::{
    check, check_probabilities, is_zero, read_config, resolve, RunConfig,
};
use crate::trainer::data::DataConfig;
use crate::trainer::optim::OptimConfig;

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

impl VaeTrainConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        if self.data.videos.is_some() {
            return Err(
                "the VAE trainer does not read data.videos (a user's video folder) yet".into(),
            );
        }
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
