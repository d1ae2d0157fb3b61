//! The RL-post-trained policy as a model bundle, and the sample GIFs and reward curves of an RL run.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use orrery_dit::{save_lora_weights, CosmosDit, LORA_WEIGHTS_FILE};
use orrery_pipeline::{BundleDefaults, Engine, Mode, ModeSampling, SamplerKind, SAMPLING_FILE};

use crate::dit::init::bundle_dit_weights;
use crate::dit::lora::{adapter_layers, write_fused_base};
use crate::error::{Result, TrainError};
use crate::rl::config::{ExportSampling, Grpo, RlConfig, SamplerChoice};
use crate::rl::trainer::{RlTrainer, POLICY};
use crate::trainer::bundle_files::{link_or_copy_folder, write_bundle_rest, write_transformer};
use crate::trainer::data::sample_clips;
use crate::trainer::samples::{sample_options, video_and_text_samples, write_sample_grid};
use crate::trainer::session::write_file;

/// The post-trained model's sampling defaults: the bundle's sizes, rates and conditioning, with the sampler it
/// was trained through (the churn sampler at the run's steps and guidance) in every mode. A Flow-GRPO run's
/// model keeps the bundle's own sampler (the SDE is a training device; its ODE is the bundle's UniPC), and so does
/// a run with `grpo.export_sampling` "bundle". A distilled run's model samples with the distilled sampler: a
/// distilled bundle keeps its per-mode steps, another takes the run's steps in every mode.
pub fn policy_defaults(bundle: &BundleDefaults, config: &RlConfig) -> BundleDefaults {
    let distilled = config.grpo.sampler == SamplerChoice::Distilled;
    if config.grpo.sampler == SamplerChoice::FlowGrpo
        || config.grpo.export_sampling == ExportSampling::Bundle
        || (distilled && bundle.sampler == SamplerKind::Distilled)
    {
        return bundle.clone();
    }
    let mut d = BundleDefaults {
        sampler: if distilled {
            SamplerKind::Distilled
        } else {
            SamplerKind::Churn
        },
        steps: config.grpo.sample_steps,
        guidance: config.grpo.guidance,
        ..bundle.clone()
    };
    for own in &mut d.per_mode {
        *own = ModeSampling {
            conditional_frames: own.conditional_frames,
            ..ModeSampling::default()
        };
    }
    d
}

/// `policy` (the exported defaults) with the modes the run never rolled out sampled as the source bundle
/// samples them, where the source gives them a DiT of their own (a distilled bundle's teacher): the policy was
/// not trained on them, so they keep that DiT and its sampling. Returns the defaults and the folders to copy.
pub fn keep_untrained_routes(
    source: &BundleDefaults,
    mut policy: BundleDefaults,
    grpo: &Grpo,
) -> (BundleDefaults, Vec<String>) {
    let mut folders = Vec::new();
    for mode in Mode::ALL {
        let Some(folder) = &source.mode_transformers[mode as usize] else {
            continue;
        };
        if grpo.rolls_out(mode) {
            continue;
        }
        policy.per_mode[mode as usize] = source.resolved_mode(mode);
        policy.mode_transformers[mode as usize] = Some(folder.clone());
        if !folders.contains(folder) {
            folders.push(folder.clone());
        }
    }
    (policy, folders)
}

/// (module, A, B) of a LoRA run's EMA adapters.
fn ema_adapters(trainer: &RlTrainer) -> Result<Vec<(String, Tensor, Tensor)>> {
    adapter_layers(
        &trainer.session.export_group("lora")?,
        &trainer.lora_modules,
    )
}

/// The policy's EMA network on the CPU: the EMA weights, or a LoRA run's frozen base with the EMA adapters.
pub fn ema_policy(trainer: &RlTrainer) -> Result<CosmosDit> {
    let vb = |m| VarBuilder::from_tensors(m, DType::F32, &Device::Cpu);
    Ok(match &trainer.config.lora {
        Some(lora) => {
            let mut dit = trainer.policy.clone();
            dit.attach_adapters(vb(trainer.session.export_group("lora")?), &lora.shape())?;
            dit
        }
        None => CosmosDit::new(vb(trainer.session.export_group(POLICY)?), &trainer.model)?,
    })
}

/// Writes `dir`: the policy's EMA DiT as `transformer/` (and a LoRA run's adapters as
/// `pytorch_lora_weights.safetensors` for the original bundle), the bundle's word encoder and VAE, the DiTs of
/// its own that the bundle gives a mode the run never rolled out ([`keep_untrained_routes`]), the policy's
/// sampling defaults, and the run's config.
pub fn export_bundle(trainer: &RlTrainer, dir: &Path) -> Result<()> {
    match &trainer.config.lora {
        Some(lora) => {
            let layers = ema_adapters(trainer)?;
            let transformer = dir.join("transformer");
            std::fs::create_dir_all(&transformer).map_err(TrainError::io(&transformer))?;
            save_lora_weights(&dir.join(LORA_WEIGHTS_FILE), &layers, &lora.shape())?;
            write_fused_base(
                &bundle_dit_weights(&trainer.config.init_from),
                &layers,
                lora.shape().scaling(),
                &transformer.join("diffusion_pytorch_model.safetensors"),
            )?;
            write_file(
                &transformer.join("config.json"),
                trainer.model.to_diffusers_json().as_bytes(),
            )?;
        }
        None => write_transformer(dir, trainer.session.export_group(POLICY)?, &trainer.model)?,
    }
    let source = &trainer.config.init_from;
    let (defaults, folders) = keep_untrained_routes(
        &BundleDefaults::read(&source.join(SAMPLING_FILE))?,
        policy_defaults(&trainer.defaults, &trainer.config),
        &trainer.config.grpo,
    );
    for folder in folders {
        link_or_copy_folder(&source.join(&folder), &dir.join(&folder))?;
    }
    write_bundle_rest(dir, source, &defaults, &trainer.config)?;
    trainer.rewards.write_plots(&trainer.config.run.out_dir)
}

/// `samples/step-NNNNNNN.gif` (for a few held-out clips: the real clip, the policy's Video2World and
/// Text2World with its own sampler) and the reward curves.
pub fn write_samples(trainer: &RlTrainer) -> Result<PathBuf> {
    let out_dir = &trainer.config.run.out_dir;
    trainer.rewards.write_plots(out_dir)?;
    let policy = Engine::for_models(
        out_dir,
        policy_defaults(&trainer.defaults, &trainer.config),
        Some(""),
        sample_options(),
    )?
    .with_models(ema_policy(trainer)?, trainer.vae.clone())?;
    let d = &trainer.config.data;
    let mut rows = Vec::new();
    for (i, (real, caption)) in sample_clips(d, 3)?.into_iter().enumerate() {
        let mut row = vec![real.clone()];
        row.extend(video_and_text_samples(
            &policy,
            &trainer.text,
            &real,
            &caption,
            i as u64,
        )?);
        rows.push(row);
    }
    let size = (d.width as usize, d.height as usize);
    write_sample_grid(out_dir, trainer.session.step(), &rows, size, d.fps as f64)
}
