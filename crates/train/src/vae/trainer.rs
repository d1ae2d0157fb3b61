//! Training a small Wan-architecture VAE on physics worlds: L1 or squared-error reconstruction of random crops, a
//! small KL term on the posterior, and an optional L1 loss on pixel differences for sharp edges. The exported
//! folder is a diffusers-style VAE (`config.json` with the measured latent mean and std, EMA weights in official
//! names).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::SeededVarMap;
use orrery_vae::{Chunking, VaeConfig, WanVae};

use crate::error::{Result, TrainError};
use crate::surgery::widen::widen_decoder_from;
use crate::trainer::config::RunConfig;
use crate::trainer::data::clip_tensor;
use crate::trainer::random::{index, normal};
use crate::trainer::run::Run;
use crate::trainer::session::{init_vars_mapped, write_file, LossPoint, Session};
use crate::vae::config::VaeTrainConfig;
use crate::vae::foreground::foreground_weights;
use crate::vae::loss::{channel_std, edge_l1, reconstruction_error};
use crate::vae::predicted::Predictor;

/// A VAE training run.
pub struct VaeTrainer {
    pub config: VaeTrainConfig,
    pub session: Session,
    pub vae: WanVae,
    /// The world model whose predictions the decoder learns to decode (`predicted_latents`).
    predictor: Option<Predictor>,
    device: Device,
}

impl VaeTrainer {
    pub fn new(config: VaeTrainConfig) -> Result<Self> {
        let device = Device::Cpu;
        let vars = SeededVarMap::new(config.run.seed);
        let source = config
            .init_from
            .as_ref()
            .map(|dir| orrery_vae::VaeModelPath::open(dir))
            .transpose()?;
        let mut vae_config = config.model.config();
        // A frozen encoder keeps its latent space: (de)normalise as its source does.
        if let (Some(source), true) = (&source, config.freeze_encoder) {
            vae_config.latents_mean = source.config.latents_mean.clone();
            vae_config.latents_std = source.config.latents_std.clone();
        }
        let vae = WanVae::new(vars.var_builder(&device), &vae_config)?;
        if let Some(source) = &source {
            // A VAE with fewer temporal resampling stages than its source (less temporal compression) starts
            // from all of its weights but the temporal convolutions of the stages that became spatial-only. A
            // wider decoder than the source's starts as the source's decoder widened (computing the same), a
            // narrower one from random weights.
            let (from, to) = (source.config.decoder_base_dim, vae_config.decoder_base_dim);
            let other_decoder = |name: &str| from != to && name.starts_with("decoder.");
            init_vars_mapped(
                &vars,
                &source.weights,
                "",
                |name| (!other_decoder(name)).then(|| name.to_owned()),
                |name| name.contains(".time_conv.") || other_decoder(name),
            )?;
            if to > from {
                widen_decoder_from(&vars, &source.weights)?;
            }
        }
        let predictor = config
            .predicted_latents
            .as_ref()
            .map(|p| Predictor::open(p, vae_config.z_dim))
            .transpose()?;
        let frozen = config.freeze_encoder;
        let session = Session::training_only(
            &config.run.out_dir,
            vars,
            config.optim.clone(),
            config.run.seed,
            config.run.steps,
            |name| !(frozen && is_encoder_weight(name)),
        )?;
        Ok(Self {
            config,
            session,
            vae,
            predictor,
            device,
        })
    }

    /// A training batch (B, 3, crop, H, W) drawn with the run's generator, and the clips' captions.
    fn batch(&mut self) -> Result<(Tensor, Vec<String>)> {
        let c = &self.config;
        let rng = &mut self.session.rng;
        let mut clips = Vec::with_capacity(c.run.batch_size);
        let mut captions = Vec::with_capacity(c.run.batch_size);
        for _ in 0..c.run.batch_size {
            let i = index(rng, c.data.clips);
            let start = index(rng, c.data.frames - c.crop_frames + 1);
            let y = index(rng, (c.data.height - c.crop_size) as usize + 1);
            let x = index(rng, (c.data.width - c.crop_size) as usize + 1);
            let clip = c.data.clip(i).map_err(TrainError::Data)?;
            let t = clip_tensor(&clip, c.data.width, c.data.height, &self.device)?;
            captions.push(clip.truth.captions.medium.clone());
            let size = c.crop_size as usize;
            clips.push(
                t.narrow(1, start, c.crop_frames)?
                    .narrow(2, y, size)?
                    .narrow(3, x, size)?,
            );
        }
        Ok((Tensor::stack(&clips, 0)?, captions))
    }

    /// The loss of one batch of clips and their captions.
    fn loss(&mut self, video: &Tensor, captions: &[String]) -> Result<Tensor> {
        let (mu, logvar) = self.vae.encode_moments(video, Chunking::Whole)?;
        // A frozen encoder needs no backward pass.
        let (mu, logvar) = if self.config.freeze_encoder {
            (mu.detach(), logvar.detach())
        } else {
            (mu, logvar)
        };
        let logvar = logvar.clamp(-30f32, 20f32)?;
        let z = if let Some(predictor) = &mut self.predictor {
            let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
            let real = self.vae.normalize(&mu)?;
            let predicted = predictor.predict(&real, &captions, &mut self.session.rng)?;
            self.vae.denormalize(&predicted)?
        } else if self.config.loss.sample_posterior {
            let eps = normal(&mut self.session.rng, mu.dims(), &self.device)?;
            (&mu + (&logvar * 0.5)?.exp()?.mul(&eps)?)?
        } else {
            mu.clone()
        };
        let z = match self.config.loss.latent_noise {
            0.0 => z,
            scale => {
                let eps = normal(&mut self.session.rng, z.dims(), &self.device)?;
                (&z + eps.broadcast_mul(&(channel_std(&mu.detach())? * scale)?)?)?
            }
        };
        let recon = self.vae.decode(&z, Chunking::Whole)?;
        let c = &self.config.loss;
        let weights = (c.object_weight > 0.0)
            .then(|| {
                foreground_weights(video, c.object_weight as f32, c.object_max_fraction as f32)
            })
            .transpose()?;
        let reconstruction =
            reconstruction_error(&recon, video, c.reconstruction, weights.as_ref())?;
        let kl = (((mu.sqr()? + logvar.exp()?)? - 1.0)? - &logvar)?.mean_all()?;
        let mut loss = (&reconstruction + (kl * (0.5 * c.kl_weight))?)?;
        if c.edge_weight > 0.0 {
            loss = (loss + (edge_l1(&recon, video)? * c.edge_weight)?)?;
        }
        Ok(loss)
    }

    /// Per-channel mean and std of the posterior means of the first `stats_clips` training clips, whole.
    pub fn latent_statistics(&self, vae: &WanVae) -> Result<(Vec<f64>, Vec<f64>)> {
        let c = &self.config;
        let z = vae.config.z_dim;
        let (mut sum, mut sq, mut count) = (vec![0f64; z], vec![0f64; z], 0usize);
        // The longest prefix of a clip the VAE takes (1 + 4k frames).
        let frames = vae
            .config
            .pixel_frames(vae.config.latent_frames(c.data.frames));
        for i in 0..c.stats_clips {
            let clip = c.data.clip(i).map_err(TrainError::Data)?;
            let video = clip_tensor(&clip, c.data.width, c.data.height, &self.device)?
                .narrow(1, 0, frames)?
                .unsqueeze(0)?;
            let mu = vae.encode(&video, Chunking::Whole)?; // (1, z, T, h, w)
            let per_channel = mu.squeeze(0)?.flatten_from(1)?; // (z, N)
            let n = per_channel.dim(D::Minus1)?;
            let s = per_channel.sum(1)?.to_vec1::<f32>()?;
            let q = per_channel.sqr()?.sum(1)?.to_vec1::<f32>()?;
            for k in 0..z {
                sum[k] += s[k] as f64;
                sq[k] += q[k] as f64;
            }
            count += n;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / count as f64 - m * m).max(1e-8).sqrt())
            .collect();
        Ok((mean, std))
    }
}

impl Run for VaeTrainer {
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
        let (video, captions) = self.batch()?;
        let loss = self.loss(&video, &captions)?;
        self.session.update(&loss)
    }

    /// Writes `{out_dir}/final`: the EMA VAE as a diffusers-style folder with measured latent statistics (a
    /// frozen encoder keeps its weights and its source's statistics).
    fn export(&self) -> Result<PathBuf> {
        let mut config = self.config.model.config();
        let ema = self.session.export_tensors()?;
        if self.config.freeze_encoder {
            // The trainer's VAE already (de)normalises with the source's statistics.
            config.latents_mean = self.vae.config.latents_mean.clone();
            config.latents_std = self.vae.config.latents_std.clone();
        } else {
            let vb =
                VarBuilder::from_tensors(ema.iter().cloned().collect(), DType::F32, &self.device);
            let (mean, std) = self.latent_statistics(&WanVae::new(vb, &config)?)?;
            config.latents_mean = mean;
            config.latents_std = std;
        }
        let dir = self.config.run.out_dir.join("final");
        export_vae(&dir, &config, ema)?;
        Ok(dir)
    }
}

/// Whether a VAE weight belongs to the encoder side (`encoder.*` and the `conv1` moments projection).
fn is_encoder_weight(name: &str) -> bool {
    name.starts_with("encoder.") || name.starts_with("conv1.")
}

/// Writes a VAE folder: `config.json` and `diffusion_pytorch_model.safetensors` (official names).
pub fn export_vae(dir: &Path, config: &VaeConfig, tensors: Vec<(String, Tensor)>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    save_tensors(&dir.join("diffusion_pytorch_model.safetensors"), tensors)?;
    write_file(
        &dir.join("config.json"),
        config.to_diffusers_json().as_bytes(),
    )
}
