//! The full-size Reason1 (Qwen2.5-VL-7B) decoder with seeded random weights: build time, the time of one
//! 512-token Cosmos embedding, to be run under `/usr/bin/time -v` for the peak memory.
//!
//! ```sh
//! cargo run --release -p orrery-text --example reason1_random -- [f32|bf16] [tokens]
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use orrery_nn::init::RandomWeights;
use orrery_text::cosmos_embed::cosmos_embedding;
use orrery_text::qwen::QwenModel;
use orrery_text::QwenConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = match args.first().map(String::as_str) {
        Some("f32") => DType::F32,
        _ => DType::BF16,
    };
    let tokens: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let config = QwenConfig::reason1_7b();
    let start = Instant::now();
    let model = QwenModel::new(
        RandomWeights::new(0, 0.02).var_builder(dtype, &Device::Cpu),
        &config,
    )?;
    let build_s = start.elapsed().as_secs_f64();
    let ids: Vec<u32> = (0..tokens as u32).map(|i| (i * 7919) % 151_643).collect();
    let ids = Tensor::from_vec(ids, (1, tokens), &Device::Cpu)?;
    let start = Instant::now();
    let embeds = cosmos_embedding(&model.hidden_states(&ids)?)?;
    let embed_s = start.elapsed().as_secs_f64();
    println!(
        "{{\"dtype\": \"{dtype:?}\", \"tokens\": {tokens}, \"build_s\": {build_s:.1}, \"embed_s\": {embed_s:.1}, \
         \"shape\": {:?}}}",
        embeds.dims()
    );
    Ok(())
}
