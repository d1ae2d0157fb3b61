//! Forward-pass benchmarks of the DiT at a small and a medium size (float32, seeded random weights).
//! The side-by-side ratio against PyTorch is `tools/bench/dit_forward.py`.

use candle_core::{DType, Device};
use orrery_dit::bench_inputs::BenchInputs;
use orrery_dit::{CosmosDit, DitConfig};
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
    let inputs = BenchInputs::new(&config, 1, [t, h, w], n, &dev).unwrap();
    let input = inputs.input();
    bencher.bench_local(|| model.forward(&input).unwrap());
}
