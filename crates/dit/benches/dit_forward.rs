//! Forward-pass benchmarks of the DiT at a small and a medium size (float32, seeded random weights).
//! The side-by-side ratio against PyTorch is `tools/bench/dit_forward.py`.

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitConfig, DitInput};
use orrery_nn::init::RandomWeights;

fn main() {
    divan::main();
}

/// (config, latent (T, H, W), text tokens)
fn setup(size: &str) -> (DitConfig, [usize; 3], usize) {
    let base = DitConfig {
        in_channels: 16,
        out_channels: 16,
        crossattn_emb_channels: 256,
        crossattn_proj_in_channels: Some(512),
        adaln_lora_dim: 64,
        ..DitConfig::cosmos_predict2_5_2b()
    };
    match size {
        "small" => (
            DitConfig {
                model_channels: 384,
                num_heads: 6,
                num_blocks: 4,
                ..base
            },
            [3, 16, 16],
            64,
        ),
        _ => (
            DitConfig {
                model_channels: 768,
                num_heads: 12,
                num_blocks: 8,
                ..base
            },
            [5, 32, 32],
            128,
        ),
    }
}

#[divan::bench(args = ["small", "medium"], sample_count = 5, sample_size = 1)]
fn forward(bencher: divan::Bencher, size: &str) {
    let dev = Device::Cpu;
    let (config, [t, h, w], n) = setup(size);
    let model = CosmosDit::new(
        RandomWeights::new(0, 0.02).var_builder(DType::F32, &dev),
        &config,
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1., (1, 16, t, h, w), &dev).unwrap();
    let ts = Tensor::full(0.5f32, 1, &dev).unwrap();
    let emb = Tensor::randn(0f32, 1., (1, n, 512), &dev).unwrap();
    let mask = Tensor::zeros((1, 1, t, h, w), DType::F32, &dev).unwrap();
    let input = DitInput {
        x: &x,
        timesteps: &ts,
        crossattn_emb: &emb,
        condition_mask: &mask,
        padding_mask: None,
        action: None,
    };
    bencher.bench_local(|| model.forward(&input).unwrap());
}
