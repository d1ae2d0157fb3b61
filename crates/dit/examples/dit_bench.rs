//! Times the DiT forward pass with seeded random weights, for the side-by-side comparison with PyTorch
//! (`tools/bench/dit_forward.py`) and for the full-size 2B/14B memory check.
//!
//! ```sh
//! cargo run --release -p orrery-dit --example dit_bench -- --config CONFIG.json|2b|14b \
//!     [--dtype f32|bf16] [--latent T,H,W] [--text N] [--batch B] [--runs R]
//! ```
//! Prints one JSON line: build time, every run's milliseconds and the median.

use std::time::Instant;

use candle_core::{DType, Device};
use orrery_dit::bench_inputs::BenchInputs;
use orrery_dit::{CosmosDit, DitConfig};
use orrery_nn::init::RandomWeights;

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orrery_nn::alloc::tune();
    let flags = orrery_nn::bench_flags::Flags::from_env();
    let arg = |flag: &str, default: &str| flags.get(flag, default);
    let config = DitConfig::preset_or_file(&arg("--config", "2b"))?;
    let dtype = match arg("--dtype", "f32").as_str() {
        "bf16" => DType::BF16,
        _ => DType::F32,
    };
    let [t, h, w] = flags.dims3("--latent", "1,32,32")?;
    let text: usize = arg("--text", "512").parse()?;
    let batch: usize = arg("--batch", "1").parse()?;
    let runs: usize = arg("--runs", "3").parse()?;
    let dev = Device::Cpu;

    let start = Instant::now();
    let model = CosmosDit::new(
        RandomWeights::new(0, 0.02).var_builder(dtype, &dev),
        &config,
    )?;
    let build_s = start.elapsed().as_secs_f64();

    let mut inputs = BenchInputs::new(&config, batch, [t, h, w], text, &dev)?;
    inputs.text = inputs.text.to_dtype(dtype)?;
    let input = inputs.input();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let out = model.forward(&input)?;
        out.sum_all()?.to_scalar::<f32>()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(runs / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{{\"params\": {}, \"build_s\": {build_s:.2}, \"runs_ms\": {times:?}, \"median_ms\": {median:.1}}}",
        config.parameter_count()
    );
    Ok(())
}
