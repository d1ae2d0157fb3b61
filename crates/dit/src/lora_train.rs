//! Trainable LoRA adapters on the DiT (posttraining-spec §1): a low-rank pair beside each targeted block Linear
//! of a frozen network, `W x + (alpha / r) B A x`, and their export as diffusers' `pytorch_lora_weights`.
//!
//! The pair lives beside the weight (`orrery_nn::layers::Adapter`) rather than in it, so that gradients reach
//! only the adapters and a network without adapters computes exactly what it did before. A (r, in) starts as
//! PEFT's `kaiming_uniform_(a = sqrt(5))`, uniform in +-1/sqrt(in), and B (out, r) at zero, so training starts
//! from the base network. The exported file is what [`crate::LoraAdapter::open`] reads back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use orrery_nn::checkpoint::names::dit_official_to_diffusers;
use orrery_nn::checkpoint::{write_safetensors, TensorSet};
use orrery_nn::layers::{Adapter, Linear};

use crate::error::{DitError, Result};
use crate::lora::LORA_METADATA_KEY;
use crate::CosmosDit;

/// The official recipe's targets: the attention projections of self- and cross-attention and both MLP layers.
pub const OFFICIAL_TARGETS: [&str; 6] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "output_proj",
    "mlp.layer1",
    "mlp.layer2",
];

/// The file name diffusers gives an adapter.
pub const LORA_WEIGHTS_FILE: &str = "pytorch_lora_weights.safetensors";

/// Rank, alpha and targeted modules of the adapters to train (official names; a target matches a block Linear
/// whose name within its block is the target or ends with `.target`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraShape {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
}

impl Default for LoraShape {
    /// The official recipe: rank 32, alpha 32, [`OFFICIAL_TARGETS`].
    fn default() -> Self {
        Self {
            rank: 32,
            alpha: 32.0,
            targets: OFFICIAL_TARGETS.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

impl LoraShape {
    /// `alpha / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.rank == 0 {
            return Err("lora.rank must be positive".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err("lora.alpha must be a positive number".into());
        }
        if self.targets.is_empty() {
            return Err("lora.targets is empty: name the Linears to adapt".into());
        }
        Ok(())
    }

    fn targets(&self, within_block: &str) -> bool {
        self.targets
            .iter()
            .any(|t| within_block == t || within_block.ends_with(&format!(".{t}")))
    }
}

impl CosmosDit {
    /// The blocks' Linears by official module name (`blocks.0.self_attn.q_proj`), in a fixed order.
    fn block_linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (attn_name, attn) in [
                ("self_attn", &mut block.self_attn),
                ("cross_attn", &mut block.cross_attn),
            ] {
                for (name, linear) in [
                    ("q_proj", &mut attn.q_proj),
                    ("k_proj", &mut attn.k_proj),
                    ("v_proj", &mut attn.v_proj),
                    ("output_proj", &mut attn.output_proj),
                ] {
                    out.push((format!("blocks.{i}.{attn_name}.{name}"), linear));
                }
            }
            out.push((format!("blocks.{i}.mlp.layer1"), &mut block.mlp.layer1));
            out.push((format!("blocks.{i}.mlp.layer2"), &mut block.mlp.layer2));
        }
        out
    }

    /// Puts an adapter beside every targeted block Linear, its A and B taken from `vb` (float32) as
    /// `{module}.lora_A.weight` / `{module}.lora_B.weight`, so a `VarMap` builder makes them trainable and a
    /// checkpoint builder reloads them. Returns the adapted modules; a target that matches no Linear is an error.
    pub fn attach_adapters(&mut self, vb: VarBuilder, shape: &LoraShape) -> Result<Vec<String>> {
        shape.validate().map_err(DitError::Config)?;
        let vb = vb.set_dtype(DType::F32);
        let r = shape.rank;
        let mut adapted = Vec::new();
        for (module, linear) in self.block_linears_mut() {
            let within_block = module.splitn(3, '.').nth(2).unwrap_or_default();
            if !shape.targets(within_block) {
                continue;
            }
            let (inp, out) = (linear.in_dim(), linear.out_dim());
            let bound = 1.0 / (inp as f64).sqrt();
            let m = vb.pp(&module);
            let down = m.get_with_hints(
                (r, inp),
                "lora_A.weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?;
            let up = m.get_with_hints((out, r), "lora_B.weight", Init::Const(0.0))?;
            linear.adapter = Some(Adapter {
                down,
                up,
                scaling: shape.scaling(),
            });
            adapted.push(module);
        }
        for t in &shape.targets {
            let probe = LoraShape {
                targets: vec![t.clone()],
                ..shape.clone()
            };
            if !adapted
                .iter()
                .any(|m| probe.targets(m.splitn(3, '.').nth(2).unwrap_or_default()))
            {
                return Err(DitError::Config(format!(
                    "lora target `{t}` matches no Linear of the blocks (targets are official names: {})",
                    OFFICIAL_TARGETS.join(", ")
                )));
            }
        }
        Ok(adapted)
    }
}

/// Writes adapters as diffusers does: `transformer.<diffusers module>.lora_A.weight` (r, in) and
/// `.lora_B.weight` (out, r), float32, with `lora_adapter_metadata` giving `r` and `lora_alpha`. `layers` maps
/// official module names (`blocks.0.self_attn.q_proj`) to (A, B).
pub fn save_lora_weights(
    path: &Path,
    layers: &[(String, Tensor, Tensor)],
    shape: &LoraShape,
) -> Result<()> {
    let mut tensors = Vec::with_capacity(2 * layers.len());
    let mut modules = Vec::with_capacity(layers.len());
    for (module, down, up) in layers {
        let diffusers = dit_official_to_diffusers(module);
        tensors.push((
            format!("transformer.{diffusers}.lora_A.weight"),
            down.to_dtype(DType::F32)?,
        ));
        tensors.push((
            format!("transformer.{diffusers}.lora_B.weight"),
            up.to_dtype(DType::F32)?,
        ));
        modules.push(diffusers);
    }
    let metadata = serde_json::json!({
        "transformer.r": shape.rank,
        "transformer.lora_alpha": shape.alpha,
        "transformer.target_modules": modules,
        "transformer.use_rslora": false,
        "transformer.use_dora": false,
    });
    let header = HashMap::from([(LORA_METADATA_KEY.to_owned(), metadata.to_string())]);
    write_safetensors(&TensorSet::new(tensors)?, path, Some(header))?;
    Ok(())
}
