//! LoRA fine-tuning of a bundle's DiT (posttraining-spec §1): the base networks frozen, adapters the only
//! trained variables, exported both fused into the bundle's transformer and as diffusers'
//! `pytorch_lora_weights.safetensors` for the base bundle. The frozen DiT is held once, in the type it trains in
//! (bfloat16 with `bf16_base`); the fused export reads the float32 base again from the bundle.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::checkpoint::names::DitNaming;
use orrery_nn::checkpoint::{tensor_bytes, write_safetensors, SafetensorsSource};
use orrery_nn::{Checkpoint, SeededVarMap};

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

/// The weights of a base DiT checkpoint with adapters fused in, `W + scaling · B @ A` in float32 as
/// `orrery_dit::load_dit_with_loras` fuses (so the fused bundle and base + adapter give the same bits), each
/// computed when the writer asks for it: exporting holds one weight at a time, never a float32 copy of the DiT.
struct FusedBase {
    base: Checkpoint,
    /// Adapted weight name (`blocks.0.mlp.layer1.weight`) -> (A (r, in), B (out, r)).
    adapters: HashMap<String, (Tensor, Tensor)>,
    scaling: f64,
}

impl SafetensorsSource for FusedBase {
    fn entries(&self) -> Vec<(String, orrery_nn::DType, Vec<usize>)> {
        self.base.entries()
    }

    fn tensor_bytes(&self, name: &str) -> orrery_nn::checkpoint::Result<Cow<'_, [u8]>> {
        let Some((down, up)) = self.adapters.get(name) else {
            return self.base.bytes(name);
        };
        let entry = self.base.get(name)?;
        let dtype = entry.dtype.to_candle().unwrap_or(DType::F32);
        let base = self.base.load_as(name, DType::F32, &Device::Cpu)?;
        let delta = (up.matmul(down)? * self.scaling)?;
        let fused = (base + delta)?.to_dtype(dtype)?;
        let bytes = tensor_bytes(&fused)?;
        let _ = self.base.release(name);
        Ok(Cow::Owned(bytes))
    }
}

/// Writes the DiT weights of `base` (a bundle's DiT file in any naming, names as stored) with `layers` (official
/// module names) fused in at `scaling`, to `out`, tensor by tensor. Every adapted weight must be in `base`.
pub(crate) fn write_fused_base(
    base: &Path,
    layers: &[(String, Tensor, Tensor)],
    scaling: f64,
    out: &Path,
) -> Result<()> {
    let base = Checkpoint::open(base)?;
    let naming = DitNaming::detect(base.tensors().iter().map(|t| t.name.as_str()))
        .unwrap_or(DitNaming::Official);
    let mut adapters = HashMap::with_capacity(layers.len());
    for (module, down, up) in layers {
        let name = naming.stored_name(&format!("{module}.weight"));
        if !base.contains(&name) {
            return Err(TrainError::Data(format!(
                "{}: the DiT has no weight `{name}` to fuse into",
                base.path().display()
            )));
        }
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F32);
        adapters.insert(name, (cpu(down)?, cpu(up)?));
    }
    let source = FusedBase {
        base,
        adapters,
        scaling,
    };
    write_safetensors(&source, out, None)?;
    Ok(())
}
