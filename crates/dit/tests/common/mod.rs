//! What the DiT tests share: a tiny DiT and deterministic tensors, and running a reference case.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use orrery_dit::{CosmosDit, DitConfig, DitInput};

/// A two-block DiT small enough for finite differences.
pub fn tiny() -> DitConfig {
    DitConfig {
        in_channels: 4,
        out_channels: 4,
        model_channels: 24,
        num_blocks: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        patch_spatial: 2,
        patch_temporal: 1,
        adaln_lora_dim: 8,
        rope_extrapolation: [1.0, 1.0, 1.0],
        max_size: [8, 8, 8],
        crossattn_emb_channels: 16,
        crossattn_proj_in_channels: Some(12),
        concat_padding_mask: true,
        action: None,
    }
}

/// Uniform values in [-scale, scale) from a linear congruential generator seeded by `seed`.
pub fn seeded(seed: u64, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * scale) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// (B,) stays; (B, 1, T, 1, 1) as diffusers takes per-frame timesteps becomes (B, T).
pub fn timesteps(t: &Tensor) -> Tensor {
    match t.dims() {
        [b, 1, frames, 1, 1] => t.reshape((*b, *frames)).unwrap(),
        _ => t.clone(),
    }
}

/// The velocity of a reference case (the inputs `tools/oracles/dit.py` writes, diffusers names).
pub fn run(model: &CosmosDit, c: &HashMap<String, Tensor>) -> Tensor {
    let ts = timesteps(&c["timestep"]);
    model
        .forward(&DitInput {
            x: &c["hidden_states"],
            timesteps: &ts,
            crossattn_emb: &c["encoder_hidden_states"],
            condition_mask: &c["condition_mask"],
            padding_mask: Some(&c["padding_mask"]),
            action: None,
        })
        .unwrap()
}
