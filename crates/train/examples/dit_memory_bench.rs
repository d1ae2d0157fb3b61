//! Step time and peak memory of a DiT training step (forward, mean-squared-error loss, backward, AdamW) with
//! seeded random weights: full training or LoRA on a frozen base, float32 or bfloat16 base, with or without
//! activation checkpointing per block.
//!
//! ```sh
//! cargo run --release -p orrery-train --example dit_memory_bench -- --config 2b --lora 32 --bf16-base \
//!     --checkpointing [--latent T,H,W] [--text N] [--batch B] [--runs R]
//! ```
//! `--config` is `2b`, `14b`, a diffusers `config.json`, or with `--train-config` an orrery DiT training config
//! (its `model`). Prints one JSON line: the resident memory after building the network (MiB), the peak resident
//! memory over the steps (MiB, the kernel's high-water mark, reset after the build), every step's milliseconds
//! and their median. The first step is a warm-up and is left out of the times, not of the peak. Linux only (reads
//! `/proc/self/status`).

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use orrery_dit::bench_inputs::BenchInputs;
use orrery_dit::{CosmosDit, DitConfig, LoraShape};
use orrery_nn::init::RandomWeights;
use orrery_nn::SeededVarMap;
use orrery_train::trainer::optim::{AdamW, OptimConfig};

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

type Error = Box<dyn std::error::Error>;

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> Result<f64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("{line}: no value"))?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Resets the peak resident memory (`VmHWM`) to the current one.
fn reset_peak() -> Result<(), Error> {
    Ok(std::fs::write("/proc/self/clear_refs", "5")?)
}

fn model_config(flags: &orrery_nn::bench_flags::Flags) -> Result<DitConfig, Error> {
    let spec = flags.get("--config", "2b");
    if flags.has("--train-config") {
        let text = std::fs::read_to_string(&spec)?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        return Ok(serde_json::from_value(value["model"].clone())?);
    }
    Ok(DitConfig::preset_or_file(&spec)?)
}

fn main() -> Result<(), Error> {
    orrery_nn::alloc::tune();
    let flags = orrery_nn::bench_flags::Flags::from_env();
    let config = model_config(&flags)?;
    let [t, h, w] = flags.dims3("--latent", "2,16,16")?;
    let text: usize = flags.get("--text", "16").parse()?;
    let batch: usize = flags.get("--batch", "1").parse()?;
    let runs: usize = flags.get("--runs", "3").parse()?;
    let lora_rank: usize = flags.get("--lora", "0").parse()?;
    let bf16_base = flags.has("--bf16-base");
    let checkpointing = flags.has("--checkpointing");
    let dev = Device::Cpu;

    let vars = SeededVarMap::new(0);
    let model = if lora_rank > 0 {
        // A frozen base (plain tensors, no variables) with trainable float32 adapters.
        let dtype = if bf16_base { DType::BF16 } else { DType::F32 };
        let base = RandomWeights::new(0, 0.02).var_builder(dtype, &dev);
        let mut model = CosmosDit::new(base, &config)?;
        let shape = LoraShape {
            rank: lora_rank,
            alpha: lora_rank as f64,
            ..LoraShape::default()
        };
        model.attach_adapters(vars.var_builder(&dev), &shape)?;
        model
    } else if bf16_base {
        return Err("--bf16-base is for a frozen base: give --lora RANK".into());
    } else {
        CosmosDit::new(vars.var_builder(&dev), &config)?
    };
    let mut optim = AdamW::new(OptimConfig::default(), vars.named_vars())?;
    let trainable: Vec<Var> = optim.vars.iter().map(|(_, v)| v.clone()).collect();

    // x (B, C, T, H, W); the target has the output's shape.
    let inputs = BenchInputs::new(&config, batch, [t, h, w], text, &dev)?;
    let input = inputs.input();
    let target = Tensor::randn(0f32, 1., (batch, config.out_channels, t, h, w), &dev)?;
    let loss_of = |v: &Tensor| (v - &target)?.sqr()?.mean_all();

    let rss_built = status_mib("VmRSS:")?;
    reset_peak()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..=runs {
        let start = Instant::now();
        let grads: GradStore = if checkpointing {
            let (_, grads) = model.loss_and_gradients_checkpointed(&input, &trainable, |v| {
                loss_of(v).map_err(orrery_dit::DitError::from)
            })?;
            grads
        } else {
            loss_of(&model.forward(&input)?)?.backward()?
        };
        optim.step(&grads, 1000)?;
        drop(grads);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let peak = status_mib("VmHWM:")?;
    times.remove(0);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(runs / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{{\"lora_rank\": {lora_rank}, \"bf16_base\": {bf16_base}, \"checkpointing\": {checkpointing}, \
         \"trainable\": {}, \"rss_built_mib\": {rss_built:.0}, \"peak_rss_mib\": {peak:.0}, \
         \"runs_ms\": {times:?}, \"median_ms\": {median:.1}}}",
        vars.parameter_count()
    );
    Ok(())
}
