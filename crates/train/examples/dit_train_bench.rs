//! Times a DiT training step (forward, mean-squared-error loss, backward, AdamW) and a forward pass with seeded
//! random weights, float32, for the side-by-side comparison with PyTorch (`tools/bench/kernels.py`).
//!
//! ```sh
//! cargo run --release -p orrery-train --example dit_train_bench -- --config DIFFUSERS_CONFIG.json \
//!     [--latent T,H,W] [--text N] [--batch B] [--runs R] [--mode train|forward]
//! ```
//! Prints one JSON line: every run's milliseconds and the median. The first run is a warm-up and is dropped.

use std::time::Instant;

use candle_core::{Device, Tensor};
use orrery_dit::bench_inputs::BenchInputs;
use orrery_dit::{CosmosDit, DitConfig};
use orrery_nn::SeededVarMap;
use orrery_train::trainer::optim::{AdamW, OptimConfig};

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orrery_nn::alloc::tune();
    let flags = orrery_nn::bench_flags::Flags::from_env();
    let arg = |flag: &str, default: &str| flags.get(flag, default);
    let config = DitConfig::from_diffusers_file(std::path::Path::new(&arg("--config", "")))?;
    let [t, h, w] = flags.dims3("--latent", "2,32,32")?;
    let text: usize = arg("--text", "64").parse()?;
    let batch: usize = arg("--batch", "2").parse()?;
    let runs: usize = arg("--runs", "3").parse()?;
    let train = arg("--mode", "train") == "train";
    let dev = Device::Cpu;

    let vars = SeededVarMap::new(0);
    let model = CosmosDit::new(vars.var_builder(&dev), &config)?;
    let mut optim = AdamW::new(OptimConfig::default(), vars.named_vars())?;

    // x (B, C, T, H, W); the target has the output's shape.
    let inputs = BenchInputs::new(&config, batch, [t, h, w], text, &dev)?;
    let input = inputs.input();
    let target = Tensor::randn(0f32, 1., (batch, config.out_channels, t, h, w), &dev)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..=runs {
        let start = Instant::now();
        let out = model.forward(&input)?;
        if train {
            let loss = (out - &target)?.sqr()?.mean_all()?;
            let grads = loss.backward()?;
            optim.step(&grads, 1000)?;
        } else {
            out.sum_all()?.to_scalar::<f32>()?;
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(runs / 2).copied().unwrap_or(f64::NAN);
    println!("{{\"runs_ms\": {times:?}, \"median_ms\": {median:.1}}}");
    Ok(())
}
