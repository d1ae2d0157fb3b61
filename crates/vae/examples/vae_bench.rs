//! Times VAE encode and decode with seeded random weights: the side-by-side comparison with PyTorch
//! (`tools/bench/vae.py`) and the full-size memory check (run under `/usr/bin/time -v`).
//!
//! ```sh
//! cargo run --release -p orrery-vae --example vae_bench -- --config wan|CONFIG.json --frames 17 \
//!     --size 64x64 [--mode encode|decode|both] [--tile N] [--runs R] [--dtype f32|bf16] [--decode-chunk N|whole]
//! ```
//! Prints one JSON line with every run's milliseconds per mode.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use orrery_nn::init::RandomWeights;
use orrery_vae::tiling::Tiling;
use orrery_vae::{Chunking, VaeConfig, WanVae};

#[global_allocator]
static ALLOCATOR: orrery_nn::alloc::Allocator = orrery_nn::alloc::Allocator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    orrery_nn::alloc::tune();
    let flags = orrery_nn::bench_flags::Flags::from_env();
    let arg = |flag: &str, default: &str| flags.get(flag, default);
    let config = match arg("--config", "wan").as_str() {
        "wan" => VaeConfig::wan2_1(),
        path => VaeConfig::from_diffusers_file(std::path::Path::new(path))?,
    };
    let dtype = if arg("--dtype", "f32") == "bf16" {
        DType::BF16
    } else {
        DType::F32
    };
    let frames: usize = arg("--frames", "17").parse()?;
    let size = arg("--size", "64x64");
    let (w, h) = size.split_once('x').ok_or("--size WxH")?;
    let (w, h): (usize, usize) = (w.parse()?, h.parse()?);
    let runs: usize = arg("--runs", "3").parse()?;
    let mode = arg("--mode", "both");
    let tile: Option<usize> = flags
        .has("--tile")
        .then(|| arg("--tile", "32").parse())
        .transpose()?;
    // Latent frames per decoder call: 1 (the pipeline's stream) or the whole clip at once.
    let decode_chunking = match arg("--decode-chunk", "1").as_str() {
        "whole" => Chunking::Whole,
        n => Chunking::Stream(n.parse()?),
    };
    let dev = Device::Cpu;
    let vae = WanVae::new(
        RandomWeights::new(0, 0.02).var_builder(dtype, &dev),
        &config,
    )?;
    let s = config.spatial_factor();
    let video = Tensor::rand(-1f32, 1., (1, 3, frames, h, w), &dev)?;
    let latent = Tensor::randn(
        0f32,
        1.,
        (1, config.z_dim, config.latent_frames(frames), h / s, w / s),
        &dev,
    )?;
    let mut encode_ms = Vec::new();
    let mut decode_ms = Vec::new();
    for _ in 0..runs {
        if mode != "decode" {
            let start = Instant::now();
            vae.encode(&video, Chunking::Stream(4))?;
            encode_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        if mode != "encode" {
            let start = Instant::now();
            match tile {
                Some(t) => vae.decode_tiled(
                    &latent,
                    Tiling {
                        tile: t,
                        overlap: (t / 4).max(1),
                    },
                    decode_chunking,
                )?,
                None => vae.decode(&latent, decode_chunking)?,
            };
            decode_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!("{{\"encode_ms\": {encode_ms:?}, \"decode_ms\": {decode_ms:?}}}");
    Ok(())
}
