//! VAE configuration: the Wan2.1 VAE of Cosmos-Predict2.5, free sizes for our own, diffusers' `config.json`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Result, VaeError};

/// Shape of a Wan2.1-architecture causal video VAE (`WanVAE_` / diffusers `AutoencoderKLWan`).
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    /// Width of the first stage (96 for Wan2.1).
    pub base_dim: usize,
    /// Width of the decoder's last stage (diffusers' `decoder_base_dim`, Wan2.2's `dec_dim`; `base_dim` in
    /// Wan2.1): a wider decoder on a given encoder keeps the latent space.
    pub decoder_base_dim: usize,
    /// Latent channels.
    pub z_dim: usize,
    /// Width multipliers of the stages; each stage but the last halves the resolution.
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Which downsampling stages also halve time (the decoder mirrors it).
    pub temporal_downsample: Vec<bool>,
    /// Per-channel latent normalisation: z = (mu - mean) / std.
    pub latents_mean: Vec<f64>,
    pub latents_std: Vec<f64>,
}

impl VaeConfig {
    /// The Wan2.1 VAE (`cosmos_predict2/_src/predict2/tokenizers/wan2pt1.py`, `_video_vae`: dim 96, z_dim 16,
    /// dim_mult [1, 2, 4, 4], 2 res blocks, temporal downsampling [False, True, True]) with the published latent
    /// mean and std (spec section 5).
    pub fn wan2_1() -> Self {
        Self {
            base_dim: 96,
            decoder_base_dim: 96,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temporal_downsample: vec![false, true, true],
            latents_mean: vec![
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
            ],
            latents_std: vec![
                2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
                2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
            ],
        }
    }

    /// Spatial compression factor (8 for Wan2.1).
    pub fn spatial_factor(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    /// Temporal compression factor (4 for Wan2.1).
    pub fn temporal_factor(&self) -> usize {
        1 << self.temporal_downsample.iter().filter(|t| **t).count()
    }

    /// Latent frames of a clip of `frames` pixel frames (1 + (T - 1) / 4 for Wan2.1).
    pub fn latent_frames(&self, frames: usize) -> usize {
        1 + (frames - 1) / self.temporal_factor()
    }

    pub fn pixel_frames(&self, latent_frames: usize) -> usize {
        1 + (latent_frames - 1) * self.temporal_factor()
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(VaeError::Config(m));
        if [
            self.base_dim,
            self.decoder_base_dim,
            self.z_dim,
            self.num_res_blocks,
        ]
        .contains(&0)
        {
            return fail(
                "base_dim, decoder_base_dim, z_dim and num_res_blocks must be positive".into(),
            );
        }
        if self.dim_mult.len() < 2 || self.dim_mult.contains(&0) {
            return fail(format!(
                "dim_mult {:?} needs at least two positive entries",
                self.dim_mult
            ));
        }
        if self.temporal_downsample.len() != self.dim_mult.len() - 1 {
            return fail(format!(
                "temporal_downsample has {} entries, dim_mult {} stages need {}",
                self.temporal_downsample.len(),
                self.dim_mult.len(),
                self.dim_mult.len() - 1
            ));
        }
        // The decoder halves channels at every upsampling.
        for (i, m) in self.dim_mult.iter().enumerate().skip(1) {
            if !(self.decoder_base_dim * m).is_multiple_of(2) {
                return fail(format!(
                    "decoder stage {i} width {} must be even",
                    self.decoder_base_dim * m
                ));
            }
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return fail(format!(
                "latents_mean/latents_std need {} entries, found {}/{}",
                self.z_dim,
                self.latents_mean.len(),
                self.latents_std.len()
            ));
        }
        if self
            .latents_std
            .iter()
            .any(|s| !(*s > 0.0 && s.is_finite()))
        {
            return fail("latents_std must be positive".into());
        }
        Ok(())
    }

    /// Reads a diffusers `AutoencoderKLWan` config ([`DiffusersVaeConfig`]).
    pub fn from_diffusers_file(path: &Path) -> Result<Self> {
        let fail = |detail: String| VaeError::ConfigFile {
            path: path.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let v: DiffusersVaeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if key == "." {
                fail(format!("bad JSON: {inner}"))
            } else {
                fail(format!("`{key}`: {inner}"))
            }
        })?;
        v.into_config().map_err(fail)
    }

    /// A diffusers `AutoencoderKLWan` `config.json` that [`Self::from_diffusers_file`] reads back.
    pub fn to_diffusers_json(&self) -> String {
        let v = serde_json::json!({
            "_class_name": "AutoencoderKLWan",
            "attn_scales": [],
            "base_dim": self.base_dim,
            "decoder_base_dim": self.decoder_base_dim,
            "dim_mult": self.dim_mult,
            "dropout": 0.0,
            "in_channels": 3,
            "out_channels": 3,
            "is_residual": false,
            "latents_mean": self.latents_mean,
            "latents_std": self.latents_std,
            "num_res_blocks": self.num_res_blocks,
            "temperal_downsample": self.temporal_downsample,
            "z_dim": self.z_dim,
        });
        serde_json::to_string_pretty(&v).expect("JSON of plain values")
    }
}

/// A diffusers `AutoencoderKLWan` `config.json`, key for key (keys that do not change the network are ignored).
#[derive(Debug, serde::Deserialize)]
pub struct DiffusersVaeConfig {
    pub z_dim: usize,
    pub base_dim: usize,
    /// Absent or null: the decoder is as wide as the encoder (Wan2.1).
    pub decoder_base_dim: Option<usize>,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// diffusers' spelling.
    pub temperal_downsample: Vec<bool>,
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    #[serde(default)]
    pub is_residual: bool,
    pub patch_size: Option<Value>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
}

impl DiffusersVaeConfig {
    /// The network this file describes, checked.
    pub fn into_config(self) -> std::result::Result<VaeConfig, String> {
        if !self.attn_scales.is_empty() {
            return Err("attn_scales must be empty (the Wan2.1 layout)".into());
        }
        if self.is_residual || self.patch_size.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(
                "the Wan2.2 residual/patched VAE is not the Cosmos-Predict2.5 tokenizer".into(),
            );
        }
        let z_dim = self.z_dim;
        let config = VaeConfig {
            base_dim: self.base_dim,
            decoder_base_dim: self.decoder_base_dim.unwrap_or(self.base_dim),
            z_dim,
            dim_mult: self.dim_mult,
            num_res_blocks: self.num_res_blocks,
            temporal_downsample: self.temperal_downsample,
            latents_mean: self.latents_mean.unwrap_or_else(|| vec![0.0; z_dim]),
            latents_std: self.latents_std.unwrap_or_else(|| vec![1.0; z_dim]),
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_preset_compresses_4x8x8() {
        let c = VaeConfig::wan2_1();
        c.validate().unwrap();
        assert_eq!(c.spatial_factor(), 8);
        assert_eq!(c.temporal_factor(), 4);
        assert_eq!(c.latent_frames(93), 24);
        assert_eq!(c.pixel_frames(24), 93);
        let mut bad = c.clone();
        bad.latents_std.pop();
        assert!(bad.validate().is_err());
        let mut no_decoder = c.clone();
        no_decoder.decoder_base_dim = 0;
        assert!(no_decoder.validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, c.to_diffusers_json()).unwrap();
        assert_eq!(VaeConfig::from_diffusers_file(&path).unwrap(), c);
    }
}
