//! Loading DiT weights from official `.pt` checkpoints (`net.` prefix), official-named safetensors and
//! diffusers-named safetensors (single file or sharded folder), with a strict name and shape check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use orrery_nn::checkpoint::names::{
    dit_diffusers_to_official, dit_is_non_parameter, DitNaming, OFFICIAL_PREFIX,
};
use orrery_nn::Checkpoint;

use crate::error::{DitError, Result};
use crate::lora::{fusing_var_builder, is_lora_key, write_fused, ScaledLora};
use crate::{CosmosDit, DitConfig};

/// Loads a network of shape `config` from `weights` (any checkpoint format and naming), converting every tensor
/// to `dtype` (the float32 parts stay float32). Every parameter must be present with its shape, and no stored
/// parameter may be left unused; each failure names the tensor. LoRA adapters stored in the checkpoint (official
/// `lora_A/B.default` keys) are fused into their weights at scale 1.
pub fn load_dit(
    weights: &Path,
    config: &DitConfig,
    dtype: DType,
    device: &Device,
) -> Result<CosmosDit> {
    load_dit_with_loras(weights, config, &[], dtype, device)
}

/// [`load_dit`] with every adapter of `loras` fused into its weights at its scale
/// (`W' = W + Σ scale · alpha / r · B @ A`, in float32, then converted to `dtype`), after the adapters the
/// checkpoint carries itself (scale 1). Each adapter is checked against `config` first.
pub fn load_dit_with_loras(
    weights: &Path,
    config: &DitConfig,
    loras: &[ScaledLora],
    dtype: DType,
    device: &Device,
) -> Result<CosmosDit> {
    load_dit_offloaded(weights, config, loras, dtype, device, 0)
}

/// [`load_dit_with_loras`] with the first `host_blocks` blocks (all of them if more) read into host memory
/// instead of `device`: each is copied to the device for its forward and dropped after it, so a network larger
/// than the device's memory runs there at the cost of moving those blocks' weights once a call. Inference only.
pub fn load_dit_offloaded(
    weights: &Path,
    config: &DitConfig,
    loras: &[ScaledLora],
    dtype: DType,
    device: &Device,
    host_blocks: usize,
) -> Result<CosmosDit> {
    config.validate()?;
    let checkpoint = Checkpoint::open(weights)?;
    let naming = check_names(&checkpoint, config)?;
    let vb = fusing_var_builder(
        checkpoint,
        naming,
        config,
        loras,
        dtype,
        device,
        host_blocks,
    )?;
    CosmosDit::new(vb, config)
}

/// Detects the naming scheme and checks that the checkpoint holds exactly the parameters of `config`.
pub fn check_names(checkpoint: &Checkpoint, config: &DitConfig) -> Result<DitNaming> {
    let path = checkpoint.path().to_owned();
    let weights_error = |detail: String| DitError::Weights {
        path: path.clone(),
        detail,
    };
    let naming = DitNaming::detect(checkpoint.tensors().iter().map(|t| t.name.as_str())).ok_or_else(|| {
        let first = checkpoint.first_names(3);
        weights_error(format!(
            "no Cosmos DiT tensors found (expected `net.blocks.*`, `blocks.*` or `transformer_blocks.*`; \
             first names: {first:?})"
        ))
    })?;
    let expected: HashMap<String, Vec<usize>> = config.parameter_shapes().into_iter().collect();
    for (name, shape) in config.parameter_shapes() {
        let stored = naming.stored_name(&name);
        let entry = checkpoint.get(&stored)?;
        if entry.shape != shape {
            return Err(weights_error(format!(
                "tensor `{stored}` has shape {:?}, the configuration needs {shape:?}",
                entry.shape
            )));
        }
    }
    let unexpected: Vec<&str> = checkpoint
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !dit_is_non_parameter(name) && !is_lora_key(name))
        .filter(|name| match naming {
            DitNaming::OfficialPrefixed => name
                .strip_prefix(OFFICIAL_PREFIX)
                .is_some_and(|n| !expected.contains_key(n)),
            DitNaming::Official => !expected.contains_key(*name),
            DitNaming::Diffusers => !expected.contains_key(&dit_diffusers_to_official(name)),
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(weights_error(format!(
            "{} tensor(s) the configuration has no place for, e.g. `{}` (does config.json match the weights?)",
            unexpected.len(),
            unexpected[0]
        )));
    }
    Ok(naming)
}

/// A model folder: a diffusers-style `config.json` and the weights beside it
/// (`diffusion_pytorch_model.safetensors`, its sharded index, or a single `.safetensors` / `.pt` / `.pth` file).
#[derive(Debug, Clone)]
pub struct DitModelDir {
    pub config: DitConfig,
    pub weights: PathBuf,
}

impl DitModelDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let config = DitConfig::from_diffusers_file(&dir.join("config.json"))?;
        Ok(Self {
            config,
            weights: find_weights(dir)?,
        })
    }

    pub fn load(&self, dtype: DType, device: &Device) -> Result<CosmosDit> {
        load_dit(&self.weights, &self.config, dtype, device)
    }

    /// Loads the model with `loras` (adapter, scale) fused into its weights; see [`load_dit_with_loras`].
    pub fn load_with_loras(
        &self,
        loras: &[ScaledLora],
        dtype: DType,
        device: &Device,
    ) -> Result<CosmosDit> {
        load_dit_with_loras(&self.weights, &self.config, loras, dtype, device)
    }

    /// [`Self::load_with_loras`] with the first `host_blocks` blocks kept in host memory; see
    /// [`load_dit_offloaded`].
    pub fn load_offloaded(
        &self,
        loras: &[ScaledLora],
        dtype: DType,
        device: &Device,
        host_blocks: usize,
    ) -> Result<CosmosDit> {
        load_dit_offloaded(
            &self.weights,
            &self.config,
            loras,
            dtype,
            device,
            host_blocks,
        )
    }

    /// Writes the model's weights with `loras` fused in (and any adapter the checkpoint carries, at scale 1) to
    /// `out`: one safetensors file in official names (`net.` prefix), each tensor in its stored element type,
    /// streamed tensor by tensor and atomic (nothing appears at `out` unless complete).
    pub fn fuse_loras(&self, loras: &[ScaledLora], out: &Path) -> Result<()> {
        self.config.validate()?;
        let checkpoint = Checkpoint::open(&self.weights)?;
        let naming = check_names(&checkpoint, &self.config)?;
        write_fused(checkpoint, naming, &self.config, loras, out)
    }
}

fn find_weights(dir: &Path) -> Result<PathBuf> {
    let not_found = |detail: String| DitError::Weights {
        path: dir.to_owned(),
        detail,
    };
    for name in [
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
    ] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| not_found(e.to_string()))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "safetensors" | "pt" | "pth"))
        })
        .collect();
    candidates.sort();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(not_found(
            "no weights found (expected diffusion_pytorch_model.safetensors, its .index.json, or one \
             .safetensors/.pt/.pth file)"
                .into(),
        )),
        _ => Err(not_found(format!(
            "several weight files and none named diffusion_pytorch_model.safetensors: {candidates:?}"
        ))),
    }
}
