//! Every DiT parameter gets a gradient, and the gradients equal finite differences.

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitConfig, DitInput};
use orrery_nn::gradcheck::check_gradients;
use orrery_nn::SeededVarMap;

fn tiny() -> DitConfig {
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
    }
}

fn seeded(seed: u64, shape: &[usize], scale: f64) -> Tensor {
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

#[test]
fn dit_gradients_match_finite_differences() {
    let config = tiny();
    let vars = SeededVarMap::new(4);
    let dit = CosmosDit::new(vars.var_builder(&Device::Cpu), &config).unwrap();
    let x = seeded(1, &[2, 4, 3, 4, 4], 1.0);
    let text = seeded(2, &[2, 5, 12], 1.0);
    let timesteps = Tensor::new(&[[0.3f32, 0.3, 0.7], [0.9, 0.1, 0.1]], &Device::Cpu).unwrap();
    let mut mask = vec![0f32; 2 * 3 * 16];
    mask[..16].iter_mut().for_each(|m| *m = 1.0);
    let mask = Tensor::from_vec(mask, (2, 1, 3, 4, 4), &Device::Cpu).unwrap();
    let probe = seeded(3, &[2, 4, 3, 4, 4], 1.0);
    let loss = || {
        let v = dit
            .forward(&DitInput {
                x: &x,
                timesteps: &timesteps,
                crossattn_emb: &text,
                condition_mask: &mask,
                padding_mask: None,
            })
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        (v.to_dtype(DType::F32)? * &probe)?.sum_all()
    };
    let report = check_gradients(&vars.named_vars(), loss, 3, 1e-2, 3e-2, 2e-3).unwrap();
    assert_eq!(vars.named_vars().len(), config.parameter_shapes().len());
    report.assert_ok();
}
