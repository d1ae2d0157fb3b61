//! Times one generation's DiT sampling with the distilled sampler (4 calls, no guidance) against the official
//! default (UniPC over Karras, 35 steps = 36 calls, guidance 7: two calls each), on the same random-weight
//! network and latent size. The VAE and text encoder are left out: they cost the same for both.
//!
//! ```sh
//! cargo run --release -p orrery-pipeline --example sampler_bench -- [--config 2b|14b|CONFIG.json] \
//!     [--latent T,H,W] [--text N] [--runs R]
//! ```
//! Prints one JSON line per sampler (every run's seconds and the median) and the ratio of the medians.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitConfig};
use orrery_nn::init::RandomWeights;
use orrery_pipeline::{sample_latents, LatentCondition, SamplerKind, SamplingSettings};

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orrery_nn::alloc::tune();
    let flags = orrery_nn::bench_flags::Flags::from_env();
    let arg = |flag: &str, default: &str| flags.get(flag, default);
    let config = DitConfig::preset_or_file(&arg("--config", "2b"))?;
    let [t, h, w] = flags.dims3("--latent", "2,8,8")?;
    let text_len: usize = arg("--text", "512").parse()?;
    let runs: usize = arg("--runs", "3").parse()?;
    let dev = Device::Cpu;
    let dit = CosmosDit::new(
        RandomWeights::new(0, 0.02).var_builder(DType::F32, &dev),
        &config,
    )?;
    let shape = [1, config.in_channels, t, h, w];
    let text = Tensor::randn(0f32, 1., (1, text_len, config.text_input_channels()), &dev)?;
    let negative = Tensor::randn(0f32, 1., (1, text_len, config.text_input_channels()), &dev)?;
    let condition = LatentCondition {
        action: None,
        gt: Tensor::zeros(&shape[..], DType::F32, &dev)?,
        frames: 0,
    };
    let default = SamplingSettings::cosmos_2b_post_trained(0);
    let distilled = SamplingSettings {
        sampler: SamplerKind::Distilled,
        steps: 4,
        guidance: 0.0,
        ..default.clone()
    };
    let mut medians = Vec::new();
    for (name, settings) in [("unipc-35-g7", &default), ("distilled-4", &distilled)] {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let neg = (settings.guidance != 0.0).then_some(&negative);
            sample_latents(&dit, shape, &text, neg, &condition, settings, |_, _| ())?;
            times.push(start.elapsed().as_secs_f64());
        }
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[runs / 2];
        medians.push(median);
        println!(
            "{{\"sampler\": \"{name}\", \"calls\": {}, \"runs_s\": {times:.2?}, \"median_s\": {median:.2}}}",
            settings.calls()? * if settings.guidance != 0.0 { 2 } else { 1 }
        );
    }
    println!("{{\"ratio\": {:.1}}}", medians[0] / medians[1]);
    Ok(())
}
