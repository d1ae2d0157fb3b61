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

/// Uniform values in [-scale, scale) (`orrery_nn::compare::seeded_uniform`).
pub fn seeded(seed: u64, shape: &[usize], scale: f64) -> Tensor {
    orrery_nn::compare::seeded_uniform(seed, shape, scale).unwrap()
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

/// The named tensors of `testdata/{dir}/case_{name}.safetensors` (a golden fixture's inputs and outputs).
pub fn fixture_case(dir: &str, name: &str) -> std::collections::HashMap<String, Tensor> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(dir)
        .join(format!("case_{name}.safetensors"));
    let ckpt = orrery_nn::Checkpoint::open(path).unwrap();
    ckpt.tensors()
        .iter()
        .map(|t| (t.name.clone(), ckpt.load(&t.name, &Device::Cpu).unwrap()))
        .collect()
}

/// Asserts that `out` matches the case's float32 and float64 reference velocities within 1e-5 of their scale.
pub fn assert_matches_references(
    name: &str,
    out: &Tensor,
    case: &std::collections::HashMap<String, Tensor>,
) {
    let rel = |r: &str| orrery_nn::compare::max_rel_err(out, &case[r]).unwrap();
    let (err, err64) = (rel("velocity"), rel("velocity_f64"));
    println!("{name}: vs f32 reference {err:.2e}, vs f64 reference {err64:.2e}");
    assert!(
        err <= 1e-5,
        "{name}: error {err:.3e} vs the float32 reference"
    );
    assert!(
        err64 <= 1e-5,
        "{name}: error {err64:.3e} vs the float64 reference"
    );
}
