//! LoRA fine-tuning of a bundle's DiT (posttraining-spec §1): the base networks frozen, adapters the only
//! trained variables, exported both fused into the bundle's transformer and as diffusers'
//! `pytorch_lora_weights.safetensors` for the base bundle.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::SeededVarMap;

use crate::error::{Result, TrainError};

/// The variable-name prefix of the adapters (`lora.blocks.0.self_attn.q_proj.lora_A.weight`).
pub(crate) const LORA_PREFIX: &str = "lora.";

/// A builder of type `dtype` over detached copies of the variables `prefix` + NAME (as NAME): a network built
/// from it is the same network, but autograd neither tracks nor differentiates its weights, so a frozen base
/// costs no gradients and the optimiser never sees it.
pub(crate) fn frozen_builder(
    vars: &SeededVarMap,
    prefix: &str,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let tensors: HashMap<String, Tensor> = vars
        .named_vars()
        .into_iter()
        .filter_map(|(name, var)| {
            let name = name.strip_prefix(prefix)?.to_owned();
            Some((name, var.as_tensor().detach()))
        })
        .collect();
    VarBuilder::from_tensors(tensors, dtype, device)
}

/// (module, A, B) of every adapted module, from a group of adapter tensors named `{module}.lora_A.weight` /
/// `{module}.lora_B.weight`.
pub(crate) fn adapter_layers(
    group: &HashMap<String, Tensor>,
    modules: &[String],
) -> Result<Vec<(String, Tensor, Tensor)>> {
    let get = |name: String| {
        group
            .get(&name)
            .cloned()
            .ok_or_else(|| TrainError::Data(format!("the run has no adapter tensor `{name}`")))
    };
    modules
        .iter()
        .map(|m| {
            Ok((
                m.clone(),
                get(format!("{m}.lora_A.weight"))?,
                get(format!("{m}.lora_B.weight"))?,
            ))
        })
        .collect()
}

/// Adds `scaling · B @ A` to each adapted weight `{module}.weight` of `dit`, in float32 as
/// `orrery_dit::load_dit_with_loras` fuses, so the fused bundle and base + adapter give the same bits.
pub(crate) fn fuse_adapters(
    dit: &mut HashMap<String, Tensor>,
    layers: &[(String, Tensor, Tensor)],
    scaling: f64,
) -> Result<()> {
    for (module, down, up) in layers {
        let name = format!("{module}.weight");
        let base = dit.get(&name).ok_or_else(|| {
            TrainError::Data(format!("the DiT has no weight `{name}` to fuse into"))
        })?;
        let delta = (up.matmul(down)? * scaling)?;
        let fused = (base.to_dtype(DType::F32)? + delta)?;
        dit.insert(name, fused);
    }
    Ok(())
}
