//! Loading the VAE from the official `tokenizer.pth` / `Wan2.1_VAE.pth` (original names) or a diffusers
//! `AutoencoderKLWan` folder, checking that every tensor is used.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use orrery_nn::checkpoint::TrackedCheckpoint;
use orrery_nn::Checkpoint;

use crate::config::VaeConfig;
use crate::error::{Result, VaeError};
use crate::names::official_to_diffusers;
use crate::WanVae;

/// Loads a VAE of shape `config` from `weights` in official or diffusers naming, converting to `dtype`.
pub fn load_vae(
    weights: &Path,
    config: &VaeConfig,
    dtype: DType,
    device: &Device,
) -> Result<WanVae> {
    config.validate()?;
    let checkpoint = Checkpoint::open(weights)?;
    let diffusers = if checkpoint.contains("encoder.conv_in.weight") {
        true
    } else if checkpoint.contains("encoder.conv1.weight") {
        false
    } else {
        let first = checkpoint.first_names(3);
        return Err(VaeError::Weights {
            path: weights.to_owned(),
            detail: format!(
                "no Wan VAE tensors found (expected `encoder.conv1.weight` or `encoder.conv_in.weight`; first \
                 names: {first:?})"
            ),
        });
    };
    let names: Vec<String> = checkpoint
        .tensors()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let (tracked, used) = TrackedCheckpoint::new(checkpoint);
    let blocks = config.num_res_blocks;
    let vb = tracked.var_builder(dtype, device).rename_f(move |name| {
        if diffusers {
            official_to_diffusers(name, blocks)
        } else {
            name.to_owned()
        }
    });
    let vae = WanVae::new(vb, config)?;
    let unused = used.unused(names.iter().map(String::as_str));
    if let Some(first) = unused.first() {
        return Err(VaeError::Weights {
            path: weights.to_owned(),
            detail: format!(
                "{} tensor(s) the configuration has no place for, e.g. `{first}` (does the configuration match?)",
                unused.len()
            ),
        });
    }
    Ok(vae)
}

/// A VAE on disk: a diffusers folder (`config.json` + weights), or an official `.pth` file (the Wan2.1 shape).
#[derive(Debug, Clone)]
pub struct VaeModelPath {
    pub config: VaeConfig,
    pub weights: PathBuf,
}

impl VaeModelPath {
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Ok(Self {
                config: VaeConfig::wan2_1(),
                weights: path.to_owned(),
            });
        }
        let config = VaeConfig::from_diffusers_file(&path.join("config.json"))?;
        let weights = [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.safetensors.index.json",
        ]
        .iter()
        .map(|n| path.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| VaeError::Weights {
            path: path.to_owned(),
            detail: "no diffusion_pytorch_model.safetensors (or its index) in the folder".into(),
        })?;
        Ok(Self { config, weights })
    }

    pub fn load(&self, dtype: DType, device: &Device) -> Result<WanVae> {
        load_vae(&self.weights, &self.config, dtype, device)
    }
}
