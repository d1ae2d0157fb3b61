//! Flow-matching training of the Cosmos DiT with the small word encoder, on VAE latents of physics worlds.
//!
//! Each step (spec sections 3.1 and 4): a batch of normalised clip latents x0; per sample a sigma from the
//! shifted logit-normal table, noise e, x_sigma = (1 - sigma) x0 + sigma e; 0, 1 or 2 conditioning latent frames
//! (probabilities `cond_probs`) substituted by their clean latents and flagged in the mask channel, with their
//! own timestep; the caption embedded by the word encoder or, with `caption_dropout`, the zero embedding; the
//! velocity target e - x0 with the conditioning frames' prediction replaced by the exact velocity (as the
//! reference's `denoise` does), uniform loss weight (or, with `object_weight`, more on the latent cells that hold
//! an object). With `image_batch_prob` a step trains on first frames only.
//!
//! From a released-format bundle (Reason1 text encoder) the captions' embeddings come from the frozen Reason1
//! through the run's prompt cache ([`crate::dit::released`]) instead of the word encoder.
//!
//! An action-conditioned model (`model.action`, posttraining-spec §5) trains on clips that record their actions
//! (the gripper family) with the official conditioning: the start frame as the one conditioning latent frame, the
//! caption dropped with `caption_dropout`, the actions never dropped. Each example's actions are its clip's
//! `frames - 1` actions, kept in the latent cache as [`LatentSet::actions`], scaled as `orrery policy eval --model`
//! scales them and grouped as the network groups them: the VAE's temporal compression per latent frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use orrery_dit::{
    load_dit, save_lora_weights, ActionConfig, CosmosDit, DitConfig, DitInput, LORA_WEIGHTS_FILE,
};
use orrery_flow::path::{noisy_per_sample, velocity_target};
use orrery_flow::timesteps::SigmaSampler;
use orrery_media::RgbImage;
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::SeededVarMap;
use orrery_pipeline::conditioning::{batch_condition_mask, replace_frames, replace_velocity};
use orrery_pipeline::{
    ActionSequence, BundleDefaults, Engine, Generator, Mode, SamplerKind, SamplingSettings,
    ScheduleKind, SAMPLING_FILE,
};
use orrery_text::{Overflow, WordEncoder, WordEncoderConfig};
use orrery_vae::{VaeModelPath, WanVae};

use crate::dit::config::DitTrainConfig;
use crate::dit::init::{bundle_dit_weights, bundle_text_config, init_from_bundle};
use crate::dit::latents::LatentSet;
use crate::dit::lora::{adapter_layers, frozen_builder, write_fused_base, LORA_PREFIX};
use crate::dit::released::{
    init_dit_from, open_released, resolve_from_bundle, write_released_parts, Reason1Captions,
};
use crate::error::{Result, TrainError};
use crate::trainer::bundle_files::write_transformer;
use crate::trainer::config::RunConfig;
use crate::trainer::data::{sample_action_clips, sample_clips};
use crate::trainer::random::{conditioning_frames, index, normal};
use crate::trainer::run::Run;
use crate::trainer::samples::{
    sample_options, video_and_text_samples, write_sample_grid, PromptEmbedder,
};
use crate::trainer::session::{write_file, LossPoint, Session};

/// What turns the training captions into the embeddings the DiT reads.
pub enum CaptionEncoder {
    /// orrery's word encoder: trained with the DiT (frozen in a LoRA run).
    Words(WordEncoder),
    /// A released bundle's Reason1, frozen, read through the run's prompt cache.
    Reason1(Box<Reason1Captions>),
}

impl CaptionEncoder {
    /// The word encoder, unless the run's captions are embedded by Reason1.
    pub fn words(&self) -> Option<&WordEncoder> {
        match self {
            Self::Words(w) => Some(w),
            Self::Reason1(_) => None,
        }
    }

    /// The frozen Reason1 of a run from a released-format bundle.
    pub fn reason1(&self) -> Option<&Reason1Captions> {
        match self {
            Self::Words(_) => None,
            Self::Reason1(r) => Some(r),
        }
    }
}

/// A DiT training run.
pub struct DitTrainer {
    /// The resolved configuration: with a released-format `init_from`, `model` and `vae` are the bundle's.
    pub config: DitTrainConfig,
    pub session: Session,
    pub dit: CosmosDit,
    pub text: CaptionEncoder,
    pub vae: WanVae,
    pub vae_path: VaeModelPath,
    pub data: LatentSet,
    /// The modules carrying trained adapters (official names), empty unless `config.lora`.
    pub lora_modules: Vec<String>,
    sigmas: SigmaSampler,
    device: Device,
}

/// One step's inputs, drawn with the run's generator.
struct Batch {
    x0: Tensor,
    noise: Tensor,
    sigmas: Vec<f64>,
    cond_frames: Vec<usize>,
    /// Each sample's caption, `None` where it is dropped.
    texts: Vec<Option<String>>,
    /// An action-conditioned model's actions, (B, frames - 1, A): never dropped.
    actions: Option<Tensor>,
    /// With `flow.object_weight`, each latent cell's loss weight, (B, 1, T, H, W).
    weights: Option<Tensor>,
}

/// What the DiT reads for one batch.
struct NetworkInputs {
    /// The noisy latent with the clean conditioning frames, (B, C, T, H, W).
    x: Tensor,
    /// Per-frame network timesteps, (B, T).
    timesteps: Tensor,
    /// The captions' embedding (zero for dropped ones), (B, N, C_text).
    text: Tensor,
    /// 1 on conditioning frames, (B, 1, T, H, W).
    mask: Tensor,
}

impl NetworkInputs {
    /// The DiT's input for `batch` (its actions, for an action model).
    fn dit_input<'a>(&'a self, batch: &'a Batch) -> DitInput<'a> {
        DitInput {
            x: &self.x,
            timesteps: &self.timesteps,
            crossattn_emb: &self.text,
            condition_mask: &self.mask,
            padding_mask: None,
            action: batch.actions.as_ref(),
        }
    }
}

impl DitTrainer {
    /// A run on the CPU.
    pub fn new(config: DitTrainConfig) -> Result<Self> {
        Self::on_device(config, Device::Cpu)
    }

    /// A run whose DiT and word encoder train on `device`. The VAE (encoding the training clips once, decoding
    /// samples), the optimiser state and the EMA weights stay in host memory, so checkpoints and exports do not
    /// depend on where a run trained.
    pub fn on_device(mut config: DitTrainConfig, device: Device) -> Result<Self> {
        if config.lora.is_some() && config.init_from.is_none() {
            return Err(TrainError::Data(
                "lora needs init_from (the bundle whose DiT the adapters fine-tune)".into(),
            ));
        }
        let released = match &config.init_from {
            Some(path) => open_released(path)?,
            None => None,
        };
        if let Some(bundle) = &released {
            resolve_from_bundle(&mut config, bundle)?;
        }
        let model = config.model().map_err(TrainError::Data)?.clone();
        let host = Device::Cpu;
        let vae_dir = config.vae.clone().ok_or_else(|| {
            TrainError::Data("vae: the VAE whose latents the DiT learns is missing".into())
        })?;
        let vae_path = VaeModelPath::open(&vae_dir)?;
        if vae_path.config.z_dim != model.in_channels || vae_path.config.z_dim != model.out_channels
        {
            return Err(TrainError::Data(format!(
                "the VAE makes {} latent channels, the DiT is configured for {}",
                vae_path.config.z_dim, model.in_channels
            )));
        }
        if let Some(action) = model.action {
            check_action_grouping(&action, &vae_path, &vae_dir, config.data.frames)?;
        }
        let vae = vae_path.load(DType::F32, &host)?;
        let mut data = LatentSet::build(
            &config.data,
            &vae,
            &vae_path.weights,
            &config.run.out_dir,
            config.flow.object_fraction(),
        )?;
        data.latents = data.latents.to_device(&device)?;
        data.objects = data.objects.map(|o| o.to_device(&device)).transpose()?;
        if model.action.is_some() {
            let actions = data.actions.take().ok_or_else(|| {
                TrainError::Data(
                    "model.action: the training clips record no actions (only the gripper family does)".into(),
                )
            })?;
            data.actions = Some(actions.to_device(&device)?);
        } else {
            data.actions = None;
        }
        let captions = || data.captions.iter().flatten().map(String::as_str);
        // A released bundle's Reason1 embeds the captions it has not embedded before, and is freed, before the
        // DiT is loaded.
        let reason1 = match released {
            Some(bundle) => {
                let reason1 = Reason1Captions::open(bundle, &config.run.out_dir, captions())?;
                if reason1.width() != model.text_input_channels() {
                    return Err(TrainError::Data(format!(
                        "init_from {}: the text encoder makes embeddings of width {}, the DiT reads {}",
                        reason1.bundle.root.display(),
                        reason1.width(),
                        model.text_input_channels()
                    )));
                }
                Some(reason1)
            }
            None => None,
        };
        let vars = SeededVarMap::new(config.run.seed);
        let vb = vars.var_builder(&device);
        let dit_weights = match (&reason1, &config.init_from) {
            (Some(reason1), _) => Some(reason1.bundle.dit.weights.clone()),
            (None, Some(bundle)) => Some(bundle_dit_weights(bundle)),
            _ => None,
        };
        let mut dit = match (&config.lora, &dit_weights) {
            // A LoRA run's DiT is the bundle's, frozen, held once in the type it trains in: no variables, no
            // float32 copy beside a bfloat16 one.
            (Some(lora), Some(weights)) => load_dit(weights, &model, lora.base_dtype(), &device)?,
            _ => CosmosDit::new(vb.pp("dit"), &model)?,
        };
        let text = match reason1 {
            Some(reason1) => {
                if config.lora.is_none() {
                    init_dit_from(&vars, &reason1.bundle.dit.weights)?;
                }
                CaptionEncoder::Reason1(Box::new(reason1))
            }
            None => CaptionEncoder::Words(Self::word_encoder(&config, &vars, &device, captions)?),
        };
        let mut lora_modules = Vec::new();
        let (out_dir, seed, steps) = (&config.run.out_dir, config.run.seed, config.run.steps);
        let session = match &config.lora {
            Some(lora) => {
                lora_modules = dit.attach_adapters(vb.pp("lora"), &lora.shape())?;
                Session::training_only(out_dir, vars, config.optim.clone(), seed, steps, |n| {
                    n.starts_with(LORA_PREFIX)
                })?
            }
            None => Session::new(out_dir, vars, config.optim.clone(), seed, steps)?,
        };
        Ok(Self {
            sigmas: SigmaSampler::new(config.flow.shift, config.flow.high_sigma_prob),
            config,
            session,
            dit,
            text,
            vae,
            vae_path,
            data,
            lora_modules,
            device,
        })
    }

    /// The word encoder of a run without a released-format bundle: fresh, or its `init_from` bundle's (with the
    /// bundle's DiT set into `vars` too); frozen in a LoRA run.
    fn word_encoder<'a, I: Iterator<Item = &'a str>>(
        config: &DitTrainConfig,
        vars: &SeededVarMap,
        device: &Device,
        captions: impl Fn() -> I,
    ) -> Result<WordEncoder> {
        let t = config.text.as_ref().ok_or_else(|| {
            TrainError::Data(
                "text: the word encoder's shape is missing (only a bundle with a Reason1 text encoder goes \
                 without)"
                    .into(),
            )
        })?;
        // A fine-tune keeps the bundle's caption vocabulary (its words are what the DiT learned); words of the
        // new captions outside it read as unknown.
        let text_config = match &config.init_from {
            Some(bundle) => {
                let c = bundle_text_config(bundle, captions())?;
                if (c.width, c.layers, c.heads, c.max_tokens)
                    != (t.width, t.layers, t.heads, t.max_tokens)
                {
                    return Err(TrainError::Data(format!(
                        "{}: the bundle's word encoder is width {}, {} layers, {} heads, {} tokens; this run's text \
                         is {}, {}, {}, {}",
                        bundle.display(),
                        c.width,
                        c.layers,
                        c.heads,
                        c.max_tokens,
                        t.width,
                        t.layers,
                        t.heads,
                        t.max_tokens
                    )));
                }
                c
            }
            None => {
                WordEncoderConfig::from_texts(captions(), t.width, t.layers, t.heads, t.max_tokens)
            }
        };
        let text = WordEncoder::new(vars.var_builder(device).pp("text"), &text_config)?;
        if let Some(bundle) = &config.init_from {
            init_from_bundle(vars, bundle, &text_config, config)?;
        }
        if config.lora.is_some() {
            // The bundle's word encoder, frozen; the adapters are the only variables that train and are
            // checkpointed (a resumed run takes the base again from `init_from`).
            let text_vb = frozen_builder(vars, "text.", DType::F32, device);
            return Ok(WordEncoder::new(text_vb, &text_config)?);
        }
        Ok(text)
    }

    fn draw(&mut self) -> Result<Batch> {
        let f = &self.config.flow;
        let rng = &mut self.session.rng;
        let n = self.data.latents.dim(0)?;
        let images = rng.next_f64() < f.image_batch_prob;
        let (mut x0, mut sigmas, mut cond_frames, mut texts) = (vec![], vec![], vec![], vec![]);
        let (mut actions, mut objects) = (Vec::new(), Vec::new());
        for _ in 0..self.config.run.batch_size {
            let i = index(rng, n);
            if let Some(a) = &self.data.actions {
                actions.push(a.get(i)?);
            }
            let mut x = self.data.latents.get(i)?;
            let mut cells = self.data.objects.as_ref().map(|o| o.get(i)).transpose()?;
            if images {
                x = x.narrow(1, 0, 1)?;
                cells = cells.map(|c| c.narrow(1, 0, 1)).transpose()?;
            }
            objects.extend(cells);
            let latent_frames = x.dim(1)?;
            x0.push(x);
            sigmas.push(self.sigmas.sample(rng));
            let u = rng.next_f64();
            // At least one latent frame is left to predict, so an image's one frame never conditions.
            cond_frames.push(conditioning_frames(&f.cond_probs, u).min(latent_frames - 1));
            let caption = &self.data.captions[i][index(rng, 3)];
            texts.push((rng.next_f64() >= f.caption_dropout).then(|| caption.clone()));
        }
        let x0 = Tensor::stack(&x0, 0)?;
        let noise = normal(rng, x0.dims(), &self.device)?;
        let stacked = |parts: &[Tensor]| match parts.is_empty() {
            true => Ok::<_, candle_core::Error>(None),
            false => Ok(Some(Tensor::stack(parts, 0)?)),
        };
        let actions = stacked(&actions)?;
        let weights = stacked(&objects)?
            .map(|cells| cells.affine(f.object_weight, 1.0))
            .transpose()?;
        Ok(Batch {
            x0,
            noise,
            sigmas,
            cond_frames,
            texts,
            actions,
            weights,
        })
    }

    /// What the DiT reads for a batch.
    fn network_inputs(&self, batch: &Batch) -> Result<NetworkInputs> {
        let f = &self.config.flow;
        let (b, _, t, h, w) = batch.x0.dims5()?;
        let dev = &self.device;
        let sig = Tensor::from_vec(
            batch.sigmas.iter().map(|s| *s as f32).collect::<Vec<_>>(),
            (b, 1, 1, 1, 1),
            dev,
        )?;
        let x_sigma = noisy_per_sample(&batch.x0, &batch.noise, &sig)?;
        let mask = batch_condition_mask(&batch.cond_frames, t, h, w, dev)?;
        let x_in = replace_frames(&x_sigma, &batch.x0, &mask)?;
        let scale = 1000.0 * f.timestep_scale;
        let mut steps = Vec::with_capacity(b * t);
        for (s, &n) in batch.sigmas.iter().zip(&batch.cond_frames) {
            for frame in 0..t {
                steps.push(if frame < n && f.cond_timestep >= 0.0 {
                    (f.cond_timestep * f.timestep_scale) as f32
                } else {
                    (s * scale) as f32
                });
            }
        }
        let timesteps = Tensor::from_vec(steps, (b, t), dev)?;
        let captions: Vec<Option<&str>> = batch.texts.iter().map(Option::as_deref).collect();
        let text = match &self.text {
            CaptionEncoder::Words(words) => {
                // A dropped caption is the empty prompt, whose embedding is the zero embedding.
                let ids = captions
                    .iter()
                    .map(|c| {
                        c.map(|c| words.config.tokenize(c, Overflow::Truncate))
                            .transpose()
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                words.embed_batch(&ids)?
            }
            // Zeroed for a dropped caption, as the official conditioner and diffusers drop captions.
            CaptionEncoder::Reason1(reason1) => reason1.embed_batch(&captions, dev)?,
        };
        Ok(NetworkInputs {
            x: x_in,
            timesteps,
            text,
            mask,
        })
    }

    /// The flow-matching loss of the predicted velocity `v` (B, C, T, H, W): the mean squared error, weighted by
    /// the batch's cell weights where it has them.
    fn loss_of_velocity(batch: &Batch, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let v = replace_velocity(v, &batch.noise, &batch.x0, mask)?;
        let target = velocity_target(&batch.x0, &batch.noise)?;
        let squared = (v - target)?.sqr()?;
        Ok(match &batch.weights {
            None => squared.mean_all()?,
            Some(w) => squared
                .broadcast_mul(w)?
                .mean_all()?
                .broadcast_div(&w.mean_all()?)?,
        })
    }

    /// One optimiser step on a batch: backpropagation through the whole graph, or block by block with activation
    /// checkpointing.
    fn update(&mut self, batch: &Batch) -> Result<LossPoint> {
        let inputs = self.network_inputs(batch)?;
        let input = inputs.dit_input(batch);
        if !self.config.activation_checkpointing {
            let v = self.dit.forward(&input)?;
            let loss = Self::loss_of_velocity(batch, &v, &inputs.mask)?;
            return self.session.update(&loss);
        }
        let trainable: Vec<Var> = self
            .session
            .optimizer
            .vars
            .iter()
            .map(|(_, v)| v.clone())
            .collect();
        let (loss, grads) = self
            .dit
            .loss_and_gradients_checkpointed(&input, &trainable, |v| {
                Self::loss_of_velocity(batch, v, &inputs.mask)
            })?;
        self.session.update_with_gradients(&loss, grads)
    }

    /// For tests and diagnostics: draws the next batch (advancing the run's generator, as a step would) and
    /// returns each trainable variable's name and gradient norm on it, without updating anything. A variable the
    /// loss does not reach has norm 0.
    pub fn gradient_norms(&mut self) -> Result<Vec<(String, f32)>> {
        let batch = self.draw()?;
        let inputs = self.network_inputs(&batch)?;
        let input = inputs.dit_input(&batch);
        let v = self.dit.forward(&input)?;
        let grads = Self::loss_of_velocity(&batch, &v, &inputs.mask)?.backward()?;
        let mut norms = Vec::new();
        for (name, var) in &self.session.optimizer.vars {
            let norm = match grads.get(var.as_tensor()) {
                Some(g) => g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?,
                None => 0.0,
            };
            norms.push((name.clone(), norm));
        }
        Ok(norms)
    }

    /// The EMA weights of the group `prefix` ("dit", "text" or "lora"), names without the prefix; a LoRA run's
    /// frozen word encoder as it is (its frozen DiT is no variable, so its "dit" group is empty).
    fn ema_group(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        self.session.export_group(prefix)
    }

    /// The DiT's configuration (the bundle's in a run from a released-format bundle).
    pub fn model(&self) -> &DitConfig {
        self.config
            .model
            .as_ref()
            .expect("the trainer's configuration is resolved")
    }

    /// The DiT weights the run started from: the `init_from` bundle's transformer, whatever its layout.
    pub fn base_weights(&self) -> Option<PathBuf> {
        match &self.text {
            CaptionEncoder::Reason1(r) => Some(r.bundle.dit.weights.clone()),
            CaptionEncoder::Words(_) => self.config.init_from.as_deref().map(bundle_dit_weights),
        }
    }

    /// The EMA networks, on the CPU beside the VAE: the DiT, and the word encoder unless the captions are
    /// embedded by a released bundle's Reason1 (frozen, not trained). A LoRA run's DiT is its frozen base as the
    /// run holds it (bfloat16 with `bf16_base`) with the EMA adapters beside the weights.
    pub fn ema_models(&self) -> Result<(CosmosDit, Option<WordEncoder>)> {
        let vb = |m| VarBuilder::from_tensors(m, DType::F32, &Device::Cpu);
        let dit = match (&self.config.lora, self.base_weights()) {
            (Some(lora), Some(weights)) => {
                let mut dit = if self.device.is_cpu() {
                    self.dit.clone()
                } else {
                    load_dit(&weights, self.model(), lora.base_dtype(), &Device::Cpu)?
                };
                dit.attach_adapters(vb(self.ema_group("lora")?), &lora.shape())?;
                dit
            }
            _ => CosmosDit::new(vb(self.ema_group("dit")?), self.model())?,
        };
        let words = match &self.text {
            CaptionEncoder::Words(words) => Some(WordEncoder::new(
                vb(self.ema_group("text")?),
                &words.config,
            )?),
            CaptionEncoder::Reason1(_) => None,
        };
        Ok((dit, words))
    }

    /// (module, A, B) of the EMA adapters of a LoRA run (none otherwise).
    pub fn ema_adapters(&self) -> Result<Vec<(String, Tensor, Tensor)>> {
        adapter_layers(&self.ema_group("lora")?, &self.lora_modules)
    }

    pub fn sampling_settings(&self, seed: u64) -> SamplingSettings {
        let f = &self.config.flow;
        SamplingSettings {
            sampler: SamplerKind::UniPc,
            steps: self.config.sample_steps,
            schedule: ScheduleKind::Shift(f.shift),
            guidance: self.config.sample_guidance,
            cond_timestep: (f.cond_timestep >= 0.0).then_some(f.cond_timestep),
            timestep_scale: f.timestep_scale,
            seed,
            noise: orrery_flow::noise::NoiseKind::Fast,
            conditional_frames: Some(self.video2world_frames()),
            keep_observed: None,
        }
    }

    /// The sampling defaults of the exported bundle: a fine-tune keeps its `init_from` bundle's (per-mode steps and
    /// guidance, keeping observed pixels), with this run's frames, size and frame rate; a run from scratch takes
    /// [`Self::bundle_defaults`].
    pub fn export_defaults(&self) -> Result<BundleDefaults> {
        let own = self.bundle_defaults();
        let inherited = match (&self.text, &self.config.init_from) {
            (CaptionEncoder::Reason1(reason1), _) => reason1.bundle.defaults.one_transformer(),
            (_, Some(bundle)) => {
                BundleDefaults::read(&bundle.join(SAMPLING_FILE))?.one_transformer()
            }
            (_, None) => return Ok(own),
        };
        Ok(BundleDefaults {
            frames: own.frames,
            width: own.width,
            height: own.height,
            fps: own.fps,
            ..inherited
        })
    }

    /// The sampling defaults of a run from scratch (and of the samples written during training).
    pub fn bundle_defaults(&self) -> BundleDefaults {
        let s = self.sampling_settings(0);
        let data = &self.config.data;
        let mut defaults = BundleDefaults {
            sampler: s.sampler,
            schedule: s.schedule,
            steps: s.steps,
            guidance: s.guidance,
            cond_timestep: s.cond_timestep,
            frames: data.frames,
            width: data.width as usize,
            height: data.height as usize,
            fps: data.fps as f64,
            per_mode: Default::default(),
            mode_transformers: Default::default(),
            keep_observed: None,
        };
        if self.video2world_frames() != Mode::Video2World.conditional_latent_frames() {
            defaults.per_mode[Mode::Video2World as usize].conditional_frames =
                Some(self.video2world_frames());
        }
        defaults
    }

    /// Video2World conditions on the most latent frames the model learns to continue (2 with the reference's
    /// `cond_probs`).
    pub fn video2world_frames(&self) -> usize {
        self.config.flow.cond_probs.len().saturating_sub(1).max(1)
    }
}

impl Run for DitTrainer {
    fn session(&self) -> &Session {
        &self.session
    }

    fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    fn run_config(&self) -> &RunConfig {
        &self.config.run
    }

    fn config_json(&self) -> String {
        serde_json::to_string_pretty(&self.config).expect("plain values")
    }

    fn train_step(&mut self) -> Result<LossPoint> {
        let batch = self.draw()?;
        self.update(&batch)
    }

    /// `samples/step-NNNNNNN.gif`: for a few held-out clips, the real clip beside Video2World and Text2World
    /// samples of the EMA model (an action model's: beside rollouts of the clip's actions). The samples run on the
    /// CPU, which for a released model's size takes hours: a run from a released-format bundle writes them only when
    /// `run.sample_every` asks for them.
    fn write_samples(&self) -> Result<Option<PathBuf>> {
        if self.text.reason1().is_some() && self.config.run.sample_every == 0 {
            return Ok(None);
        }
        let (dit, words) = self.ema_models()?;
        let text: &dyn PromptEmbedder = match (&words, &self.text) {
            (Some(words), _) => words,
            (None, CaptionEncoder::Reason1(reason1)) => reason1.as_ref(),
            (None, CaptionEncoder::Words(words)) => words,
        };
        // The generation engine as the exported bundle will run it, over the EMA networks in memory; a word
        // encoder's unconditional prompt is the empty one, Reason1's the engine's default negative prompt.
        let negative = words.is_some().then_some("");
        let options = sample_options();
        let engine = Engine::for_models(
            &self.config.run.out_dir,
            self.bundle_defaults(),
            negative,
            options,
        )?;
        let generator = engine.with_models(dit, self.vae.clone())?;
        let d = &self.config.data;
        // An action model's rows: held-out clips beside rollouts of their actions (it generates only with them).
        let rows = if self.model().action.is_some() {
            action_rollout_rows(&generator, text, d, 3)?
        } else {
            let mut rows = Vec::new();
            for (i, (real, caption)) in sample_clips(d, 3)?.into_iter().enumerate() {
                let mut row = vec![real.clone()];
                row.extend(video_and_text_samples(
                    &generator, text, &real, &caption, i as u64,
                )?);
                rows.push(row);
            }
            rows
        };
        let size = (d.width as usize, d.height as usize);
        let path = write_sample_grid(
            &self.config.run.out_dir,
            self.session.step(),
            &rows,
            size,
            d.fps as f64,
        )?;
        Ok(Some(path))
    }

    /// Writes `{out_dir}/final`: a model bundle (`transformer/`, `vae/`, `text_encoder/`,
    /// `orrery_sampling.json`) of the EMA weights, and the training config beside it. A LoRA run's transformer
    /// has the EMA adapters fused in, and `pytorch_lora_weights.safetensors` beside the bundle holds them for
    /// the base bundle (`init_from`).
    fn export(&self) -> Result<PathBuf> {
        let dir = self.config.run.out_dir.join("final");
        export_bundle(self, &dir)?;
        Ok(dir)
    }
}

/// An action-conditioned DiT groups `temporal_compression_ratio` actions per latent frame, and a latent frame of
/// the VAE covers its temporal compression in frames: the two must be equal, and a training clip of `frames`
/// frames must be whole latent frames (`1 + ratio (T - 1)`) so that its `frames - 1` actions are exactly what the
/// network takes (and what a rollout feeds it per chunk).
fn check_action_grouping(
    action: &ActionConfig,
    vae: &VaeModelPath,
    vae_dir: &Path,
    frames: usize,
) -> Result<()> {
    let compression = vae.config.temporal_factor();
    let ratio = action.temporal_compression_ratio;
    if ratio != compression {
        return Err(TrainError::Data(format!(
            "model.action.temporal_compression_ratio is {ratio}, but the VAE {} compresses time by {compression}: \
             each latent frame covers {compression} frames, so it takes {compression} actions; set \
             temporal_compression_ratio to {compression}",
            vae_dir.display()
        )));
    }
    if frames < 2 || !(frames - 1).is_multiple_of(ratio) {
        return Err(TrainError::Data(format!(
            "data.frames is {frames}; an action-conditioned model with {ratio} actions per latent frame trains on \
             clips of 1 + {ratio} k frames (k >= 1), each with one action per frame after the first"
        )));
    }
    Ok(())
}

/// For each of `n` held-out clips that record actions, the real clip beside the model's rollout of the clip's
/// actions from its first frame ([`Generator::rollout`], as `orrery generate --actions` and `orrery policy eval
/// --model` run the model).
fn action_rollout_rows(
    generator: &Generator,
    text: &dyn PromptEmbedder,
    data: &crate::trainer::data::DataConfig,
    n: usize,
) -> Result<Vec<Vec<Vec<RgbImage>>>> {
    let negative = text.embed_prompt(generator.engine().negative_prompt())?;
    let mut rows = Vec::new();
    for (i, clip) in sample_action_clips(data, n)?.into_iter().enumerate() {
        let (real, actions) = (clip.frames, clip.actions);
        let actions = ActionSequence::from_rows(&actions).map_err(TrainError::Data)?;
        let prompt = text.embed_prompt(&clip.caption)?;
        let mut frames = Vec::with_capacity(real.len());
        generator.rollout(
            &real[0],
            &actions,
            &prompt,
            Some(&negative),
            i as u64,
            || {},
            |f| {
                frames.push(f.clone());
                Ok(())
            },
        )?;
        rows.push(vec![real, frames]);
    }
    Ok(rows)
}

fn export_bundle(trainer: &DitTrainer, dir: &Path) -> Result<()> {
    let c = &trainer.config;
    let sub = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).map_err(TrainError::io(&p))?;
        Ok(p)
    };
    let sorted = |m: HashMap<String, Tensor>| {
        let mut v: Vec<(String, Tensor)> = m.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    match (&c.lora, trainer.base_weights()) {
        (Some(lora), Some(base)) => {
            let shape = lora.shape();
            let layers = trainer.ema_adapters()?;
            let transformer = sub("transformer")?;
            save_lora_weights(&dir.join(LORA_WEIGHTS_FILE), &layers, &shape)?;
            write_fused_base(
                &base,
                &layers,
                shape.scaling(),
                &transformer.join("diffusion_pytorch_model.safetensors"),
            )?;
            write_file(
                &transformer.join("config.json"),
                trainer.model().to_diffusers_json().as_bytes(),
            )?;
        }
        _ => write_transformer(dir, trainer.ema_group("dit")?, trainer.model())?,
    }
    let words = match &trainer.text {
        CaptionEncoder::Words(words) => words,
        CaptionEncoder::Reason1(reason1) => {
            // The frozen text encoder and the VAE as the bundle has them.
            write_released_parts(&reason1.bundle, dir)?;
            return write_bundle_tail(trainer, dir);
        }
    };
    let text = sub("text_encoder")?;
    save_tensors(
        &text.join("model.safetensors"),
        sorted(trainer.ema_group("text")?),
    )?;
    write_file(
        &text.join("config.json"),
        serde_json::to_string_pretty(&words.config)
            .expect("plain values")
            .as_bytes(),
    )?;
    let vae = sub("vae")?;
    let vae_config = &trainer.vae_path.config;
    let weights = std::fs::read(&trainer.vae_path.weights)
        .map_err(TrainError::io(&trainer.vae_path.weights))?;
    write_file(&vae.join("diffusion_pytorch_model.safetensors"), &weights)?;
    write_file(
        &vae.join("config.json"),
        vae_config.to_diffusers_json().as_bytes(),
    )?;
    write_bundle_tail(trainer, dir)
}

/// The sampling defaults and the run's configuration beside an exported bundle.
fn write_bundle_tail(trainer: &DitTrainer, dir: &Path) -> Result<()> {
    write_file(
        &dir.join(SAMPLING_FILE),
        trainer.export_defaults()?.to_json().as_bytes(),
    )?;
    write_file(
        &dir.join("train_config.json"),
        trainer.config_json().as_bytes(),
    )
}
