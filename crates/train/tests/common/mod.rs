//! Tiny run configurations and trained models that several test files start from.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use orrery_train::{DitTrainConfig, DitTrainer, LossPoint, Run, VaeTrainConfig, VaeTrainer};
use serde_json::json;

pub fn vae_config(out: &Path) -> VaeTrainConfig {
    serde_json::from_value(json!({
        "run": {"out_dir": out, "seed": 1, "steps": 3, "batch_size": 2, "checkpoint_every": 2,
                "keep_checkpoints": 2, "sample_every": 0},
        "data": {"clips": 6, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "seed": 0},
        "optim": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.01,
                  "warmup_steps": 1, "decay": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0, "ema_decay": 0.9},
        "model": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 2], "num_res_blocks": 1,
                  "temporal_downsample": [true, true]},
        "loss": {"reconstruction": "mse", "kl_weight": 1e-4, "edge_weight": 0.5, "object_weight": 4.0,
                 "object_max_fraction": 0.05},
        "crop_frames": 5, "crop_size": 16, "stats_clips": 2
    }))
    .unwrap()
}

pub fn dit_config(out: &Path, vae: &Path) -> DitTrainConfig {
    serde_json::from_value(json!({
        "run": {"out_dir": out, "seed": 2, "steps": 4, "batch_size": 3, "checkpoint_every": 2,
                "keep_checkpoints": 1, "sample_every": 0},
        "data": {"clips": 6, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "seed": 0},
        "optim": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.01,
                  "warmup_steps": 1, "decay": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0, "ema_decay": 0.9},
        "vae": vae,
        "model": {"in_channels": 4, "out_channels": 4, "model_channels": 24, "num_blocks": 1, "num_heads": 2,
                  "mlp_ratio": 2.0, "patch_spatial": 2, "patch_temporal": 1, "adaln_lora_dim": 8,
                  "rope_extrapolation": [1.0, 1.0, 1.0], "max_size": [8, 8, 8], "crossattn_emb_channels": 24,
                  "crossattn_proj_in_channels": 16, "concat_padding_mask": true},
        "text": {"width": 16, "layers": 1, "heads": 2, "max_tokens": 96},
        "flow": {"shift": 1.0, "high_sigma_prob": 0.0, "caption_dropout": 0.2, "cond_probs": [0.5, 0.25, 0.25],
                 "cond_timestep": 0.1, "timestep_scale": 0.001, "image_batch_prob": 0.3},
        "sample_steps": 3, "sample_guidance": 1.5
    }))
    .unwrap()
}

/// A VAE trained one step in `out`, exported; returns its folder.
pub fn trained_vae(out: &Path) -> std::path::PathBuf {
    let mut vae = VaeTrainer::new(vae_config(out)).unwrap();
    vae.train(Some(1), |_| {}).unwrap();
    vae.export().unwrap()
}

/// A copy of variable `name`'s value now (a variable's tensor changes in place as it trains).
pub fn var_copy(vars: &orrery_nn::SeededVarMap, name: &str) -> Tensor {
    vars.named_vars()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
        .1
        .as_tensor()
        .copy()
        .unwrap()
}

pub fn losses(h: &[LossPoint]) -> Vec<(usize, u32)> {
    h.iter().map(|p| (p.step, p.loss.to_bits())).collect()
}

/// A VAE trained one step and a DiT trained two steps on its latents, exported under `root`: (VAE folder, DiT
/// trainer, DiT bundle folder).
pub fn trained_dit(root: &Path) -> (std::path::PathBuf, DitTrainer, std::path::PathBuf) {
    let vae_dir = trained_vae(&root.join("vae"));
    let mut base = DitTrainer::new(dit_config(&root.join("dit"), &vae_dir)).unwrap();
    base.train(Some(2), |_| {}).unwrap();
    let bundle = base.export().unwrap();
    (vae_dir, base, bundle)
}

/// The velocity of `dit` on a fixed input of the test model's shape.
pub fn velocity_of(dit: &orrery_dit::CosmosDit) -> Tensor {
    velocity_on(dit, 16, None)
}

/// The velocity of `dit` on a fixed input (1, 4, 3, 4, 4) with `text_width`-wide text (5 tokens) and `action`,
/// if given.
pub fn velocity_on(
    dit: &orrery_dit::CosmosDit,
    text_width: usize,
    action: Option<&Tensor>,
) -> Tensor {
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, 192., &dev)
        .unwrap()
        .reshape((1, 4, 3, 4, 4))
        .unwrap()
        .sin()
        .unwrap();
    let text = Tensor::arange(0f32, 5. * text_width as f32, &dev)
        .unwrap()
        .reshape((1, 5, text_width))
        .unwrap()
        .affine(16.0 / text_width as f64, 0.0)
        .unwrap()
        .cos()
        .unwrap();
    let timesteps = Tensor::new(&[[0.2f32, 0.5, 0.9]], &dev).unwrap();
    let mask = Tensor::zeros((1, 1, 3, 4, 4), DType::F32, &dev).unwrap();
    dit.forward(&orrery_dit::DitInput {
        x: &x,
        timesteps: &timesteps,
        crossattn_emb: &text,
        condition_mask: &mask,
        padding_mask: None,
        action,
    })
    .unwrap()
}

/// The networks a LoRA run's export gives: the base bundle's DiT with the exported adapter at scale 1, and the
/// exported fused bundle's DiT.
pub fn exported_lora_networks(
    out: &Path,
    base_weights: &Path,
    model: &orrery_dit::DitConfig,
) -> (orrery_dit::CosmosDit, orrery_dit::CosmosDit) {
    let adapter =
        orrery_dit::LoraAdapter::open(&out.join(orrery_dit::LORA_WEIGHTS_FILE), None).unwrap();
    let on_base = orrery_dit::load_dit_with_loras(
        base_weights,
        model,
        &[(adapter, 1.0)],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let fused = orrery_pipeline::ModelBundle::open(out)
        .unwrap()
        .dit
        .load(DType::F32, &Device::Cpu)
        .unwrap();
    (on_base, fused)
}

/// The first clip of the bundle at `dir` from `input`, through the generation engine (seed 0, float32).
pub fn generate(dir: &Path, input: &orrery_pipeline::WorldInput) -> Vec<orrery_media::RgbImage> {
    let options = orrery_pipeline::GenerationOptions {
        weights: Some(orrery_pipeline::WeightType::F32),
        ..orrery_pipeline::GenerationOptions::default()
    };
    let engine = orrery_pipeline::Engine::open(dir, options).unwrap();
    let prompts = engine.prompts(&["a red ball"], true, None).unwrap();
    engine
        .load()
        .unwrap()
        .generate(
            input,
            &prompts.prompts[0],
            prompts.negative.as_ref(),
            0,
            || {},
        )
        .unwrap()
        .frames
}
