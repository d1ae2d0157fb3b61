//! DMD2 distillation in TrigFlow form, as the released 4-step Cosmos-Predict2.5 model was trained (posttraining
//! spec section 2.1).
//!
//! Student and critic (the "fake score") start as the teacher's DiT; the teacher stays frozen. Each iteration
//! draws clips (their captions and conditioning frames: Text2World, Image2World or Video2World per sample), a
//! number of student steps n in 1..=4 and the critic's time t_D per sample, then:
//! - **backward simulation**: from noise e, the student predicts x0 at the first n sample times, re-noised to
//!   the next with the same e; its last prediction is G (with gradients only on the student's last call, and
//!   only in a student iteration);
//! - G re-noised to t_D with fresh noise: `x_D = cos t_D G + sin t_D e_D`;
//! - **student iteration** (every `student_update_freq`-th, starting with the first): the distribution-matching
//!   loss pulls G along (critic(x_D) - guided teacher(x_D)) / w ([`super::loss::dmd_loss`]);
//! - **critic iteration** (the others): the critic learns to denoise the student's samples
//!   ([`super::loss::critic_loss`]).
//! - with `dmd.regression_weight` > 0, the student iteration also regresses its one-step estimate on conditioned
//!   samples onto the teacher's from the same noise ([`super::loss::regression_loss`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use orrery_dit::{CosmosDit, DitConfig, DitModelDir};
use orrery_flow::trigflow::{distilled_times, draw_critic_time};
use orrery_nn::SeededVarMap;
use orrery_pipeline::conditioning::{batch_condition_mask, guide};
use orrery_pipeline::distilled::{per_sample, trigflow_x0, TrigCondition, DISTILLED_STEPS};
use orrery_pipeline::{BundleDefaults, SAMPLING_FILE};
use orrery_text::{Overflow, WordEncoder, WordEncoderConfig};
use orrery_vae::{VaeModelPath, WanVae};

use crate::distill::config::DistillConfig;
use crate::distill::loss::{critic_loss, dmd_loss, regression_loss};
use crate::dit::latents::LatentSet;
use crate::error::{Result, TrainError};
use crate::trainer::config::RunConfig;
use crate::trainer::random::{conditioning_frames, index, normal};
use crate::trainer::run::Run;
use crate::trainer::session::{init_vars_from, LossPoint, Session};

pub(crate) const STUDENT: &str = "student";
pub(crate) const CRITIC: &str = "critic";

/// A distillation run.
pub struct DistillTrainer {
    pub config: DistillConfig,
    pub session: Session,
    pub student: CosmosDit,
    pub critic: CosmosDit,
    pub teacher: CosmosDit,
    pub model: DitConfig,
    pub text: WordEncoder,
    pub vae: WanVae,
    pub vae_path: VaeModelPath,
    pub data: LatentSet,
    /// The teacher bundle's sampling defaults (its conditioning-frame timestep, sizes, rates).
    pub teacher_defaults: BundleDefaults,
    device: Device,
}

/// One iteration's draws, made in the same order in both kinds of iteration so a resumed run draws the same.
struct Batch {
    x0: Tensor,
    cond_frames: Vec<usize>,
    ids: Vec<Vec<u32>>,
    student_noise: Tensor,
    critic_noise: Tensor,
    critic_times: Vec<f64>,
    student_steps: usize,
}

/// The word encoder of an orrery bundle, frozen.
pub(crate) fn load_word_encoder(bundle: &Path, device: &Device) -> Result<WordEncoder> {
    let config_path = bundle.join("text_encoder/config.json");
    let text = std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
    let config: WordEncoderConfig = serde_json::from_str(&text).map_err(|e| {
        TrainError::Data(format!(
            "{}: {e} (distillation needs an orrery bundle with its word encoder)",
            config_path.display()
        ))
    })?;
    let weights = bundle.join("text_encoder/model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, device)
        .map_err(|e| TrainError::Data(format!("{}: {e}", weights.display())))?;
    Ok(WordEncoder::new(
        VarBuilder::from_tensors(tensors, DType::F32, device),
        &config,
    )?)
}

impl DistillTrainer {
    /// A run on the CPU.
    pub fn new(config: DistillConfig) -> Result<Self> {
        Self::on_device(config, Device::Cpu)
    }

    /// A run whose networks train on `device`; the VAE, the optimiser state and the EMA stay in host memory.
    pub fn on_device(config: DistillConfig, device: Device) -> Result<Self> {
        let bundle = &config.teacher;
        let teacher_dir = DitModelDir::open(&bundle.join("transformer"))?;
        let model = teacher_dir.config.clone();
        let teacher = teacher_dir.load(DType::F32, &device)?;
        let text = load_word_encoder(bundle, &device)?;
        let vae_path = VaeModelPath::open(&bundle.join("vae"))?;
        let vae = vae_path.load(DType::F32, &Device::Cpu)?;
        // The teacher is the bundle's `transformer/`, and it samples every mode.
        let teacher_defaults = BundleDefaults::read(&bundle.join(SAMPLING_FILE))?.one_transformer();
        let mut data = LatentSet::build(
            &config.data,
            &vae,
            &vae_path.weights,
            &config.run.out_dir,
            None,
        )?;
        data.latents = data.latents.to_device(&device)?;

        let vars = SeededVarMap::new(config.run.seed);
        let vb = vars.var_builder(&device);
        let student = CosmosDit::new(vb.pp(STUDENT), &model)?;
        let critic = CosmosDit::new(vb.pp(CRITIC), &model)?;
        for prefix in [STUDENT, CRITIC] {
            init_vars_from(&vars, &teacher_dir.weights, &format!("{prefix}."), |_| {
                false
            })?;
        }
        let freeze = config.dmd.freeze_text_projection;
        let trained = move |prefix: &'static str| {
            move |name: &str| {
                name.strip_prefix(prefix)
                    .and_then(|n| n.strip_prefix('.'))
                    .is_some_and(|n| !(freeze && n.starts_with("crossattn_proj.")))
            }
        };
        let steps = config.run.steps;
        let student_updates = config.student_updates(steps);
        let session = Session::training_only(
            &config.run.out_dir,
            vars,
            config.student_optim.clone(),
            config.run.seed,
            student_updates,
            trained(STUDENT),
        )?
        .with_secondary(
            config.critic_optim.clone(),
            steps - student_updates,
            trained(CRITIC),
        )?;
        Ok(Self {
            config,
            session,
            student,
            critic,
            teacher,
            model,
            text,
            vae,
            vae_path,
            data,
            teacher_defaults,
            device,
        })
    }

    /// Whether iteration `i` (0-based) updates the student (`is_student_phase`).
    pub fn is_student_iteration(&self, i: usize) -> bool {
        i.is_multiple_of(self.config.dmd.student_update_freq)
    }

    fn draw(&mut self) -> Result<Batch> {
        let d = &self.config.dmd;
        let rng = &mut self.session.rng;
        let n = self.data.latents.dim(0)?;
        let (mut x0, mut cond_frames, mut ids, mut critic_times) = (vec![], vec![], vec![], vec![]);
        for _ in 0..self.config.run.batch_size {
            let i = index(rng, n);
            let x = self.data.latents.get(i)?;
            let latent_frames = x.dim(1)?;
            x0.push(x);
            let u = rng.next_f64();
            cond_frames.push(conditioning_frames(&d.cond_probs, u).min(latent_frames - 1));
            let caption = &self.data.captions[i][index(rng, 3)];
            ids.push(self.text.config.tokenize(caption, Overflow::Truncate)?);
            critic_times.push(draw_critic_time(rng, d.timestep_shift));
        }
        let x0 = Tensor::stack(&x0, 0)?;
        let student_noise = normal(rng, x0.dims(), &self.device)?;
        let critic_noise = normal(rng, x0.dims(), &self.device)?;
        let student_steps = 1 + index(rng, d.student_steps);
        Ok(Batch {
            x0,
            cond_frames,
            ids,
            student_noise,
            critic_noise,
            critic_times,
            student_steps,
        })
    }

    /// The student's sample G after `steps` of its sample times from `noise`; gradients flow from the last call
    /// only, and only `with_grad`.
    fn backward_simulation(
        &self,
        noise: &Tensor,
        steps: usize,
        condition: &TrigCondition,
        with_grad: bool,
    ) -> Result<Tensor> {
        let times = &distilled_times()[..steps.clamp(1, DISTILLED_STEPS)];
        let b = noise.dim(0)?;
        let predict = |x: &Tensor, t: f64| trigflow_x0(&self.student, x, &vec![t; b], condition);
        let mut x = noise.clone();
        for pair in times.windows(2) {
            let next = pair[1];
            x = ((predict(&x, pair[0])?.detach() * next.cos())? + (noise * next.sin())?)?;
        }
        let last = predict(&x, times[times.len() - 1])?;
        Ok(if with_grad { last } else { last.detach() })
    }

    /// `cos t G + sin t e` with one time per sample.
    fn renoise(&self, g: &Tensor, noise: &Tensor, times: &[f64]) -> Result<Tensor> {
        let of_times = |f: fn(f64) -> f64| {
            let v: Vec<f64> = times.iter().map(|&t| f(t)).collect();
            per_sample(&v, g)
        };
        Ok(
            (g.broadcast_mul(&of_times(f64::cos)?)?
                + noise.broadcast_mul(&of_times(f64::sin)?)?)?,
        )
    }

    /// The loss of one iteration: the student's (DMD) or the critic's.
    fn loss(&self, batch: &Batch, student_iteration: bool) -> Result<Tensor> {
        let (b, _, t, h, w) = batch.x0.dims5()?;
        let mask = batch_condition_mask(&batch.cond_frames, t, h, w, &self.device)?;
        let ids: Vec<&[u32]> = batch.ids.iter().map(Vec::as_slice).collect();
        let text = self.text.embed_batch(&ids)?.detach();
        let pin_timestep = self.teacher_defaults.cond_timestep.is_some();
        let condition = TrigCondition {
            gt: &batch.x0,
            mask: &mask,
            text: &text,
            pin_timestep,
        };
        let g = self.backward_simulation(
            &batch.student_noise,
            batch.student_steps,
            &condition,
            student_iteration,
        )?;
        let times = &batch.critic_times;
        let x_d = self.renoise(&g.detach(), &batch.critic_noise, times)?;
        if !student_iteration {
            let fake = trigflow_x0(&self.critic, &x_d, times, &condition)?;
            let sines: Vec<f64> = times.iter().map(|t| t.sin()).collect();
            return Ok(critic_loss(&g, &fake, &sines)?);
        }
        let fake = trigflow_x0(&self.critic, &x_d, times, &condition)?.detach();
        let cond = trigflow_x0(&self.teacher, &x_d, times, &condition)?.detach();
        let guidance = self.config.dmd.teacher_guidance;
        let target = if guidance != 0.0 {
            // The teacher's unconditional prompt: the empty caption, whose embedding is zero.
            let empty: Vec<&[u32]> = vec![&[]; b];
            let uncond_text = self.text.embed_batch(&empty)?.detach();
            let uncondition = TrigCondition {
                text: &uncond_text,
                ..condition
            };
            let uncond = trigflow_x0(&self.teacher, &x_d, times, &uncondition)?.detach();
            guide(&cond, &uncond, guidance)?
        } else {
            cond
        };
        let dmd = dmd_loss(&g, &fake, &target)?;
        match self.one_step_regression(batch, &condition, &g)? {
            Some(regression) => Ok((dmd + regression)?),
            None => Ok(dmd),
        }
    }

    /// `dmd.regression_weight` times the distance of the student's one-step estimate to the teacher's on the
    /// conditioned samples, both from the batch's pure noise and unguided, as the teacher samples its one-step
    /// modes; `None` when the weight is zero or no sample is conditioned. `g` is the backward simulation's sample,
    /// which is the one-step estimate when it took one step.
    fn one_step_regression(
        &self,
        batch: &Batch,
        condition: &TrigCondition,
        g: &Tensor,
    ) -> Result<Option<Tensor>> {
        let weight = self.config.dmd.regression_weight;
        let weights: Vec<f64> = batch
            .cond_frames
            .iter()
            .map(|&n| if n > 0 { weight } else { 0.0 })
            .collect();
        if weights.iter().all(|&w| w == 0.0) {
            return Ok(None);
        }
        let noise = &batch.student_noise;
        let first = vec![distilled_times()[0]; noise.dim(0)?];
        let student = if batch.student_steps == 1 {
            g.clone()
        } else {
            trigflow_x0(&self.student, noise, &first, condition)?
        };
        let teacher = trigflow_x0(&self.teacher, noise, &first, condition)?.detach();
        Ok(Some(regression_loss(&student, &teacher, &weights)?))
    }

    /// The student's EMA weights (names without the prefix).
    pub fn student_weights(&self) -> Result<HashMap<String, Tensor>> {
        self.session.export_group(STUDENT)
    }

    /// The student's EMA network on the CPU beside the VAE.
    pub fn ema_student(&self) -> Result<CosmosDit> {
        let vb = VarBuilder::from_tensors(self.student_weights()?, DType::F32, &Device::Cpu);
        Ok(CosmosDit::new(vb, &self.model)?)
    }
}

impl Run for DistillTrainer {
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
        let student_iteration = self.is_student_iteration(self.session.step());
        let batch = self.draw()?;
        let loss = self.loss(&batch, student_iteration)?;
        if student_iteration {
            self.session.update(&loss)
        } else {
            self.session.update_secondary(&loss)
        }
    }

    fn write_samples(&self) -> Result<Option<PathBuf>> {
        super::export::write_samples(self).map(Some)
    }

    fn export(&self) -> Result<PathBuf> {
        let dir = self.config.run.out_dir.join("final");
        super::export::export_bundle(self, &dir)?;
        Ok(dir)
    }
}
