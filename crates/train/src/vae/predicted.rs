//! A world model's own predictions as decoder inputs: a frozen DiT samples the latents of training clips from
//! their first latent frames and caption, the way the pipeline will at generation time, so that a decoder
//! fine-tuned on them learns to turn the DiT's predictions (blurred where the future is uncertain) into the real
//! frames rather than only clean encoder latents.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use orrery_dit::CosmosDit;
use orrery_flow::noise::{FastRng, NoiseKind};
use orrery_pipeline::sample::{sample_latents, LatentCondition};
use orrery_pipeline::{
    Engine, GenerationOptions, Mode, SamplingOverrides, SamplingSettings, WeightType,
};

use crate::error::{Result, TrainError};
use crate::trainer::random::conditioning_frames;
use crate::vae::config::PredictedLatents;

/// The frozen DiT and text encoder of a bundle, with the sampling settings of the predictions (the generation
/// engine's for Video2World, with the run's steps and guidance, and its negative prompt).
pub struct Predictor {
    dit: CosmosDit,
    engine: Engine,
    negative: Tensor,
    settings: SamplingSettings,
    cond_probs: Vec<f64>,
    /// Caption embeddings (1, N, width) computed so far: the training captions repeat every epoch.
    embedded: HashMap<String, Tensor>,
}

impl Predictor {
    pub fn open(config: &PredictedLatents, z_dim: usize) -> Result<Self> {
        let options = GenerationOptions {
            sampling: SamplingOverrides {
                steps: Some(config.steps),
                guidance: Some(config.guidance),
                seed: 0,
                noise: NoiseKind::Fast,
                ..SamplingOverrides::default()
            },
            weights: Some(WeightType::F32),
            ..GenerationOptions::default()
        };
        let engine = Engine::open(&config.bundle, options)?;
        let dit = engine.on_disk()?.dit.load(DType::F32, &Device::Cpu)?;
        if dit.config.in_channels != z_dim || dit.config.out_channels != z_dim {
            return Err(TrainError::Config {
                path: config.bundle.clone(),
                detail: format!(
                    "its DiT works on {} latent channels, the VAE makes {z_dim}",
                    dit.config.in_channels
                ),
            });
        }
        let negative = engine
            .encode_prompts(&[engine.negative_prompt()], None)?
            .remove(0);
        let settings = engine.settings(Mode::Video2World);
        Ok(Self {
            dit,
            engine,
            negative,
            settings,
            cond_probs: config.cond_probs.clone(),
            embedded: HashMap::new(),
        })
    }

    /// Predicted normalised latents (B, C, T, h, w) of clips whose real normalised latents are `latents`: their
    /// first N latent frames (drawn with `cond_probs`, one count per batch) condition the sampler, which
    /// then returns them (up to its arithmetic); the rest is the DiT's prediction from noise drawn with `rng`.
    pub fn predict(
        &mut self,
        latents: &Tensor,
        captions: &[&str],
        rng: &mut FastRng,
    ) -> Result<Tensor> {
        let (b, c, t, h, w) = latents.dims5()?;
        let frames = conditioning_frames(&self.cond_probs, rng.next_f64()).min(t);
        let text = Tensor::cat(&self.embed(captions)?, 0)?;
        let negative = self.negative.repeat((b, 1, 1))?;
        let settings = SamplingSettings {
            seed: rng.next_u64(),
            ..self.settings.clone()
        };
        let condition = LatentCondition {
            action: None,
            gt: latents.clone(),
            frames,
        };
        let predicted = sample_latents(
            &self.dit,
            [b, c, t, h, w],
            &text,
            Some(&negative),
            &condition,
            &settings,
            |_, _| {},
        )?;
        Ok(predicted.detach())
    }

    /// The embeddings of `captions`, encoding (in one call) only those not seen before.
    fn embed(&mut self, captions: &[&str]) -> Result<Vec<Tensor>> {
        let mut new: Vec<&str> = captions
            .iter()
            .copied()
            .filter(|c| !self.embedded.contains_key(*c))
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() {
            let embeddings = self.engine.encode_prompts(&new, None)?;
            for (caption, e) in new.iter().zip(embeddings) {
                self.embedded.insert(caption.to_string(), e);
            }
        }
        Ok(captions.iter().map(|c| self.embedded[*c].clone()).collect())
    }
}
